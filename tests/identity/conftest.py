from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.identity.helpers")

from engine.identity.resolve import resolve
from engine.identity.rules import IdentityRules, parse_identity
from engine.store import Store
from tests.identity.helpers import assert_same, engine_result, load
from tests.identity.oracle import OracleResult, oracle_resolve

#: The rules of identity.md's worked examples.
EXAMPLE_RULES = parse_identity(
    {
        "identifiers": [
            {"type": "user_id", "limit": 1},
            {"type": "email", "limit": 5},
            {"type": "anonymous_id", "limit": 5},
        ]
    }
)


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(None)
    yield s
    s.close()


def run(events: list[dict[str, Any]], rules: IdentityRules = EXAMPLE_RULES) -> OracleResult:
    """Resolve ``events`` in a fresh store, check it equals the oracle, return the result."""
    with Store.open(None) as s:
        load(s, events)
        resolve(s, rules)
        got = engine_result(s)
    assert_same(got, oracle_resolve(events, rules))
    return got


@pytest.fixture
def resolved() -> Callable[..., OracleResult]:
    return run
