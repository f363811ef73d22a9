"""The trait definition base classes shared by every trait type.

A trait is a frozen, slotted, keyword-only dataclass. The shared fields (``event``, ``conditions``,
``match``, ``window``) select the *counting events*; each type then declares

* its SQL: partial aggregates over the one-pass relation of :mod:`traits.plan` and a final
  expression over them (``sql_aggregates`` / ``sql_final``);
* a mergeable state, Chronon-style, over a Polars frame of counting events
  (``prepare`` -> state, ``merge(a, b)`` -> state, ``finalize(state)`` -> values), used by
  explanations and by incremental computation; and
* how its counting events combine, in words, for ``profiles explain``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import polars as pl

from engine.config import definition_hash
from engine.store import DerivedColumn
from traits.conditions import Condition
from traits.values import VALUE_TYPES, kind_column
from traits.windows import AllTime, Window

#: Polars dtype of each value type (timestamps are UTC microseconds, as in the store).
POLARS_TYPES: dict[str, pl.DataType] = {
    "text": pl.String(),
    "number": pl.Float64(),
    "boolean": pl.Boolean(),
    "datetime": pl.Datetime("us", "UTC"),
}
#: The columns of a frame of counting events given to ``prepare``.
EVENT_COLUMNS = ("profile_id", "timestamp", "message_id", "value")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trait:
    """A computed trait: which events count (shared) and how they reduce (per type).

    Parameters
    ----------
    name
        The column name, ``[a-z][a-z0-9_]*``.
    event
        The event name that counts (``Page Viewed`` / ``Screen Viewed`` for pages and screens).
    description
        Free text; not part of the semantic hash.
    conditions
        Filters applied before the reduction.
    match
        ``all`` or ``any``: how the conditions combine.
    window
        The time window (default: all time up to ``as_of``).
    """

    type: ClassVar[str] = ""
    #: Whether the type reads a property (``event_counter`` does not).
    takes_property: ClassVar[bool] = False
    #: Type-specific keys of the definition, beyond the shared ones.
    own_keys: ClassVar[tuple[str, ...]] = ()
    #: Whether the type's value is a property-independent count of events.
    summary: ClassVar[str] = ""
    name: str
    event: str
    description: str = ""
    conditions: tuple[Condition, ...] = ()
    match: str = "all"
    window: Window = AllTime()

    # -- identity --------------------------------------------------------------------------
    def semantic(self) -> dict[str, Any]:
        """Every field that changes values (not the description)."""
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "description":
                continue
            if f.name == "conditions":
                value = [c.semantic() for c in value]
            elif f.name == "window":
                value = value.semantic()
            out[f.name] = value
        return out

    @property
    def semantic_hash(self) -> str:
        """Decides whether stored state must be rebuilt; editing ``description`` does not."""
        return definition_hash(self.semantic())

    @property
    def output_sql_type(self) -> str:
        raise NotImplementedError

    @property
    def output_polars_type(self) -> pl.DataType:
        raise NotImplementedError

    # -- what it reads ---------------------------------------------------------------------
    def derived_columns(self) -> list[DerivedColumn]:
        """Every typed ``events`` column the trait reads (conditions, value, kind)."""
        cols: list[DerivedColumn] = []
        for c in self.conditions:
            cols.extend(c.derived_columns())
        return cols

    def value_column(self) -> DerivedColumn | None:
        return None

    def kind_column(self) -> DerivedColumn | None:
        return None

    # -- SQL -------------------------------------------------------------------------------
    def sql_aggregates(self, flag: str, value: str | None, *, state: bool = False) -> dict[str, str]:
        """Partial aggregates (suffix -> SQL) over rows where ``flag`` marks counting events.

        ``state`` asks for forms that :meth:`sql_merge` can combine (stored for incremental
        compute); without it a type may use a cheaper one-shot form.
        """
        raise NotImplementedError

    def sql_final(self, part: Callable[[str], str], *, state: bool = False) -> str:
        """The value from the partial aggregates (``part(suffix)`` names one); NULL-safe."""
        raise NotImplementedError

    def sql_merge(self, suffix: str, a: str, b: str) -> str:
        """Two states' partial ``suffix`` combined (associative, commutative, NULL = no events)."""
        raise NotImplementedError

    def sql_picked(self, flag: str, value: str | None, at: str) -> dict[str, str] | None:
        """One-shot partials from the events at the instant ``at`` (the ``at`` partial of
        ``sql_aggregates(state=False)``: the instant of the event the type picks), or ``None``
        when the type does not pick one event. The suffixes and :meth:`sql_final` are those of
        ``state=False``.
        """
        return None

    def sql_ordered(self, flag: str, value: str | None, seq: str) -> dict[str, str] | None:
        """One-shot partials in one aggregate when the rows carry ``seq`` (a primitive key in the
        canonical order, unique per event), or ``None`` when the type has no such form. The
        suffixes and :meth:`sql_final` are those of ``state=False``.
        """
        return None

    def sql_counted_values(self, n: str, value: str) -> dict[str, str] | None:
        """One-shot partials from one row per (profile, distinct value) with ``n`` = how many
        counting events carry it (``n`` may be 0), or ``None`` when the type's value needs the
        events themselves. The suffixes and :meth:`sql_final` are those of ``state=False``.
        """
        return None

    def sql_delta(self, enter: str, leave: str) -> dict[str, str] | None:
        """Partial aggregates of the events ``enter`` minus those ``leave`` (sliding ``as_of``).

        ``None`` (the default) when the state is not reversible (a min, a list): a profile with
        a leaving event is then recomputed from its events; a reversible type returns aggregates
        that merge into the stored state like a new batch does.
        """
        return None

    # -- mergeable state -------------------------------------------------------------------
    def prepare(self, events: pl.DataFrame) -> pl.DataFrame:
        """State per profile from a frame of counting events (:data:`EVENT_COLUMNS`)."""
        raise NotImplementedError

    def merge(self, a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
        """Combine two states (associative and commutative)."""
        raise NotImplementedError

    def finalize(self, state: pl.DataFrame) -> pl.DataFrame:
        """``profile_id, value`` for the profiles in ``state``; others get :meth:`empty_value`."""
        raise NotImplementedError

    def empty_value(self) -> Any:
        """The value of a profile with no counting events."""
        return None

    def combine(self, counted: pl.DataFrame) -> list[str]:
        """How the counted events of one profile combine into the value, in words."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueTrait(Trait):
    """A trait that reads ``property`` converted to ``value_type`` from each counting event."""

    takes_property: ClassVar[bool] = True

    property: str
    value_type: str = "text"

    def derived_columns(self) -> list[DerivedColumn]:
        return Trait.derived_columns(self) + [kind_column(self.property), self.value_column()]

    def value_column(self) -> DerivedColumn:
        return VALUE_TYPES[self.value_type].column(self.property)

    def kind_column(self) -> DerivedColumn:
        return kind_column(self.property)

    @property
    def value_polars_type(self) -> pl.DataType:
        return POLARS_TYPES[self.value_type]

    @property
    def output_sql_type(self) -> str:
        return VALUE_TYPES[self.value_type].sql_type

    @property
    def output_polars_type(self) -> pl.DataType:
        return POLARS_TYPES[self.value_type]


def concat_sql(a: str, b: str) -> str:
    """Two partial lists concatenated; NULL (no events) is the identity."""
    return f"(CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} ELSE list_concat({a}, {b}) END)"


def with_values(events: pl.DataFrame) -> pl.DataFrame:
    """The counting events that have a value (value-reading types skip the others)."""
    return events.filter(pl.col("value").is_not_null())


def canonical(events: pl.DataFrame) -> pl.DataFrame:
    """Events in the canonical order ``(timestamp, message_id)``."""
    return events.sort(["timestamp", "message_id"])


def fmt(value: Any) -> str:
    """A value as ``profiles explain`` prints it."""
    if value is None:
        return "null"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return str(value)
