"""Prediction conditions in SQL follow traits.md § Conditions (absent/null is false except not_exists)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pytest

from predictions.conditions import parse_conditions

AS_OF = datetime(2025, 3, 1, tzinfo=UTC)
ROWS = [
    {"direction": "Inbound", "duration": 120, "vip": True, "at": "2025-02-27T00:00:00Z"},
    {"direction": "Outbound", "duration": "95.5", "vip": "false"},
    {"direction": None, "duration": "n/a"},
    {},
]


def holds(cond: dict, match: str = "all") -> list[bool]:
    from predictions.conditions import conditions_sql

    sql = conditions_sql(parse_conditions([cond], path=None, section="t"), match=match, as_of=AS_OF)
    con = duckdb.connect()
    values = ", ".join(f"({i}, '{json.dumps(r)}'::JSON)" for i, r in enumerate(ROWS))
    return [r[0] for r in con.execute(f"SELECT {sql} FROM (VALUES {values}) t(i, properties) ORDER BY i").fetchall()]


@pytest.mark.parametrize(("cond", "want"), [
    ({"property": "direction", "operator": "equals", "value": "Inbound"}, [True, False, False, False]),
    ({"property": "direction", "operator": "not_equals", "value": "Inbound"}, [False, True, False, False]),
    ({"property": "duration", "operator": "equals", "value": 95.5}, [False, True, False, False]),
    ({"property": "duration", "operator": "greater_than", "value": 100}, [True, False, False, False]),
    ({"property": "duration", "operator": "between", "value": [90, 130]}, [True, True, False, False]),
    ({"property": "direction", "operator": "exists"}, [True, True, False, False]),
    ({"property": "direction", "operator": "not_exists"}, [False, False, True, True]),
    ({"property": "vip", "operator": "is_false"}, [False, True, False, False]),
    ({"property": "direction", "operator": "equals_one_of", "value": ["Inbound", "Outbound"]}, [True, True, False, False]),
    ({"property": "direction", "operator": "starts_with", "value": "Out"}, [False, True, False, False]),
    ({"property": "at", "operator": "within_last_days", "value": 7}, [True, False, False, False]),
])
def test_operator_semantics(cond, want):
    assert holds(cond) == want
