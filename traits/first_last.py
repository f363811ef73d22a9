"""``first`` / ``last``: the value of the earliest / latest counting event that has one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl

from traits.base import ValueTrait, canonical, fmt, with_values


@dataclass(frozen=True, slots=True, kw_only=True)
class First(ValueTrait):
    """State ``(timestamp, message_id, value)``, merged by the canonical minimum."""

    type: ClassVar[str] = "first"
    summary: ClassVar[str] = "value of the earliest counting event with a value"
    _sql_fn: ClassVar[str] = "min"
    _pick: ClassVar[str] = "first"

    def sql_aggregates(self, flag: str, value: str | None, *, state: bool = False) -> dict[str, str]:
        where = f"FILTER (WHERE {flag} AND {value} IS NOT NULL)"
        if not state:
            # only the instant here: the value comes from the events at that instant
            # (sql_picked), cheaper than arg_max(v, timestamp), which copies the value at every
            # new maximum (every row of time-ordered events), and exact on ties
            return {"at": f"{self._sql_fn}(timestamp) {where}"}
        # min/max of one struct (t, m, v) is cheaper than arg_min(v, {t, m}) and is its own
        # state: (timestamp, message_id) is unique, so v never decides.
        return {"x": f"{self._sql_fn}({{'t': timestamp, 'm': message_id, 'v': {value}}}) {where}"}

    def sql_picked(self, flag: str, value: str | None, at: str) -> dict[str, str] | None:
        """Among the counting events with a value at the instant ``at``, the min/max message id's."""
        return {"x": f"arg_{self._sql_fn}({value}, message_id) FILTER (WHERE {flag} AND {value} IS NOT NULL "
                     f"AND timestamp = {at})"}

    def sql_ordered(self, flag: str, value: str | None, seq: str) -> dict[str, str] | None:
        """The value in one aggregate, given ``seq``: a primitive key in canonical order (unique per
        event), so ``arg_min/arg_max`` on it is exact on ties and costs what ``max(timestamp)`` does
        plus a copy of the value (no second pass over the events)."""
        return {"x": f"arg_{self._sql_fn}({value}, {seq}) FILTER (WHERE {flag} AND {value} IS NOT NULL)"}

    def sql_final(self, part: Callable[[str], str], *, state: bool = False) -> str:
        return f"{part('x')}.v" if state else part("x")

    def sql_merge(self, suffix: str, a: str, b: str) -> str:
        return f"{'least' if self._sql_fn == 'min' else 'greatest'}({a}, {b})"

    def _select(self, frame: pl.DataFrame) -> pl.DataFrame:
        cols = [getattr(pl.col(c), self._pick)() for c in ("timestamp", "message_id", "value")]
        return canonical(frame).group_by("profile_id", maintain_order=True).agg(cols)

    def prepare(self, events: pl.DataFrame) -> pl.DataFrame:
        return self._select(with_values(events).select("profile_id", "timestamp", "message_id", "value"))

    def merge(self, a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
        return self._select(pl.concat([a, b]))

    def finalize(self, state: pl.DataFrame) -> pl.DataFrame:
        return state.select("profile_id", "value")

    def combine(self, counted: pl.DataFrame) -> list[str]:
        state = self.prepare(counted)
        if state.is_empty():
            return ["no counting event has a value: null"]
        ts, mid, value = state.row(0)[1:]
        which = "earliest" if self._pick == "first" else "latest"
        return [f"the {which} counting event with a value (by timestamp, then message id) is {mid} at {fmt(ts)}: {fmt(value)}"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Last(First):
    """State ``(timestamp, message_id, value)``, merged by the canonical maximum."""

    type: ClassVar[str] = "last"
    summary: ClassVar[str] = "value of the latest counting event with a value"
    _sql_fn: ClassVar[str] = "max"
    _pick: ClassVar[str] = "last"
