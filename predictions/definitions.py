"""``[[predictions]]`` tables -> frozen prediction definitions (``predictions.md``).

One frozen class per prediction type, chosen through :data:`PREDICTION_TYPES` (no if/elif over
type strings); each class declares whether it is a classification (churn, goal) or a regression
(ltv) and which keys it takes, so an unknown or misplaced key is an error naming file, prediction
and key, and nothing is trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from engine.errors import ConfigError
from traits.conditions import Condition, parse_condition
from traits.values import path_problem

MIN_HORIZON_DAYS = 7
MAX_HORIZON_DAYS = 365
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_COMMON_KEYS = frozenset({"name", "type", "event", "horizon_days", "conditions", "match", "description"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """What every prediction has: a name, the counting event (event + conditions) and a horizon.

    Parameters
    ----------
    name
        Unique; ``[a-z][a-z0-9_]*``; the score column.
    event
        The track event name whose occurrences count (exact, case-sensitive).
    horizon_days
        The target window H: the prediction is about ``(as_of, as_of + H]``.
    conditions
        Filters on the event's properties (``traits.md`` § Conditions).
    match
        ``all`` or ``any`` of the conditions.
    description
        Free text for reports; not semantic.
    """

    type: ClassVar[str]
    task: ClassVar[str]
    extra_keys: ClassVar[frozenset[str]] = frozenset()

    name: str
    event: str
    horizon_days: int
    conditions: tuple[Condition, ...] = ()
    match: str = "all"
    description: str | None = None

    @property
    def property(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChurnPrediction(Prediction):
    """P(no counting event in ``(as_of, as_of + H]``); eligible: a counting event in ``(as_of - H, as_of]``."""

    type: ClassVar[str] = "churn"
    task: ClassVar[str] = "classification"


@dataclass(frozen=True, slots=True, kw_only=True)
class GoalPrediction(Prediction):
    """P(a counting event in ``(as_of, as_of + H]``); eligible: any event up to ``as_of``."""

    type: ClassVar[str] = "goal"
    task: ClassVar[str] = "classification"


@dataclass(frozen=True, slots=True, kw_only=True)
class LTVPrediction(Prediction):
    """Expected total of ``property`` over counting events in ``(as_of, as_of + H]``; eligible: 2+ purchases."""

    type: ClassVar[str] = "ltv"
    task: ClassVar[str] = "regression"
    extra_keys: ClassVar[frozenset[str]] = frozenset({"property"})

    amount_property: str

    @property
    def property(self) -> str:
        return self.amount_property


#: ``type`` string -> definition class.
PREDICTION_TYPES: dict[str, type[Prediction]] = {
    cls.type: cls for cls in (ChurnPrediction, LTVPrediction, GoalPrediction)
}


def _conditions(raw: Any, *, path: str | Path | None, section: str) -> tuple[Condition, ...]:
    """The shared condition objects of the traits engine (``traits.md`` § Conditions)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("must be an array of { property, operator, value } tables", path=path,
                          section=section, key="conditions")
    return tuple(parse_condition(c, path=path, section=section, index=i) for i, c in enumerate(raw))


def parse_prediction(table: Any, *, path: str | Path | None, index: int) -> Prediction:
    """One ``[[predictions]]`` table; ``ConfigError`` naming file, prediction and key."""
    if not isinstance(table, dict):
        raise ConfigError("each [[predictions]] entry must be a table", path=path,
                          section=f"predictions[{index}]")
    name = table.get("name")
    section = f"predictions[{name}]" if isinstance(name, str) and name else f"predictions[{index}]"

    def fail(reason: str, key: str | None = None) -> ConfigError:
        return ConfigError(reason, path=path, section=section, key=key)

    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail("must be a string matching [a-z][a-z0-9_]* (it becomes a column name)", "name")
    kind = table.get("type")
    if kind not in PREDICTION_TYPES:
        raise fail(f"unknown prediction type {kind!r} (valid: {', '.join(sorted(PREDICTION_TYPES))})", "type")
    cls = PREDICTION_TYPES[kind]
    valid = _COMMON_KEYS | cls.extra_keys
    unknown = sorted(set(table) - valid)
    if unknown:
        raise fail(f"unknown key for type {kind!r} (valid: {', '.join(sorted(valid))})", unknown[0])
    event = table.get("event")
    if not isinstance(event, str) or not event:
        raise fail("required: the name of the track event that counts (a non-empty string)", "event")
    horizon = table.get("horizon_days")
    if horizon is None:
        raise fail(f"required: the target window in days, {MIN_HORIZON_DAYS} to {MAX_HORIZON_DAYS}", "horizon_days")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not MIN_HORIZON_DAYS <= horizon <= MAX_HORIZON_DAYS:
        raise fail(f"must be an integer from {MIN_HORIZON_DAYS} to {MAX_HORIZON_DAYS} days, got {horizon!r}",
                   "horizon_days")
    match = table.get("match", "all")
    if match not in ("all", "any"):
        raise fail("must be 'all' or 'any'", "match")
    description = table.get("description")
    if description is not None and not isinstance(description, str):
        raise fail("must be a string", "description")
    fields: dict[str, Any] = dict(
        name=name,
        event=event,
        horizon_days=horizon,
        conditions=_conditions(table.get("conditions"), path=path, section=section),
        match=match,
        description=description,
    )
    if "property" in cls.extra_keys:
        prop = table.get("property")
        if prop is None:
            raise fail("required for ltv: the event property holding the amount (e.g. 'revenue')", "property")
        problem = path_problem(prop)
        if problem:
            raise fail(f"'property' {problem}", "property")
        fields["amount_property"] = prop
    return cls(**fields)


def parse_predictions(tables: list[dict], *, path: str | Path | None) -> tuple[Prediction, ...]:
    """Every ``[[predictions]]`` table, in file order; names must be unique."""
    out = tuple(parse_prediction(t, path=path, index=i) for i, t in enumerate(tables or []))
    seen: set[str] = set()
    for p in out:
        if p.name in seen:
            raise ConfigError("the name is used twice; prediction names must be unique", path=path,
                              section=f"predictions[{p.name}]", key="name")
        seen.add(p.name)
    return out
