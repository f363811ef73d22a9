"""Time windows: which event times count, relative to ``as_of``, exact to the microsecond.

Each window kind is a frozen dataclass in a registry keyed by its (only) key in the definition.
Bounds are computed in Python from ``as_of`` and emitted as TIMESTAMPTZ literals, so the SQL
compares a plain column with constants (no per-row interval arithmetic). ``timestamp <= as_of``
is applied to every trait by the plan; a window only adds its own bounds. The session window
depends on the profile's own events and is planned separately (see :mod:`traits.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from engine import iso8601
from engine.errors import ConfigError
from traits.conditions import _Invalid, to_instant
from traits.values import instant_before, ts_literal


def _int_at_least(v: object, low: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise _Invalid(f"must be an integer >= {low}")
    return v


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _after(low: datetime | None, ts: str) -> str:
    return "true" if low is None else f"{ts} > {ts_literal(low)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A time window; the default (``AllTime``) keeps every event up to ``as_of``."""

    key: ClassVar[str] = "all_time"
    is_session: ClassVar[bool] = False

    def sql(self, ts: str, as_of: datetime) -> str:
        """A predicate on the event time column ``ts`` (``timestamp <= as_of`` is implied)."""
        return "true"

    def bounds(self, as_of: datetime) -> tuple[datetime | None, datetime | None]:
        """``(low, high)``: the window is ``low < t <= high`` (None: unbounded), besides ``t <= as_of``.

        Incremental compute reads the edges that move with ``as_of`` from here.
        """
        return None, None

    def describe(self) -> str:
        return "all time"

    def semantic(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class AllTime(Window):
    key: ClassVar[str] = "all_time"

    @classmethod
    def parse(cls, v: object) -> AllTime:
        if v is not True:
            raise _Invalid("must be true (omit 'window' for all time)")
        return cls()


@dataclass(frozen=True, slots=True, kw_only=True)
class WithinDays(Window):
    key: ClassVar[str] = "within_days"
    days: int

    @classmethod
    def parse(cls, v: object) -> WithinDays:
        return cls(days=_int_at_least(v, 1))

    def sql(self, ts: str, as_of: datetime) -> str:
        return _after(self.bounds(as_of)[0], ts)

    def bounds(self, as_of: datetime) -> tuple[datetime | None, datetime | None]:
        return instant_before(as_of, days=self.days), None

    def describe(self) -> str:
        return f"within the last {self.days} days"

    def semantic(self) -> dict[str, Any]:
        return {"within_days": self.days}


@dataclass(frozen=True, slots=True, kw_only=True)
class WithinHours(Window):
    key: ClassVar[str] = "within_hours"
    hours: int

    @classmethod
    def parse(cls, v: object) -> WithinHours:
        return cls(hours=_int_at_least(v, 1))

    def sql(self, ts: str, as_of: datetime) -> str:
        return _after(self.bounds(as_of)[0], ts)

    def bounds(self, as_of: datetime) -> tuple[datetime | None, datetime | None]:
        return instant_before(as_of, hours=self.hours), None

    def describe(self) -> str:
        return f"within the last {self.hours} hours"

    def semantic(self) -> dict[str, Any]:
        return {"within_hours": self.hours}


@dataclass(frozen=True, slots=True, kw_only=True)
class BetweenDaysAgo(Window):
    key: ClassVar[str] = "between_days_ago"
    start_days: int
    end_days: int

    @classmethod
    def parse(cls, v: object) -> BetweenDaysAgo:
        if not isinstance(v, list) or len(v) != 2:
            raise _Invalid("must be [A, B], two integers with 0 <= A < B")
        a, b = _int_at_least(v[0], 0), _int_at_least(v[1], 0)
        if a >= b:
            raise _Invalid(f"must be [A, B] with A < B (got [{a}, {b}])")
        return cls(start_days=a, end_days=b)

    def sql(self, ts: str, as_of: datetime) -> str:
        low, high = self.bounds(as_of)
        return f"({_after(low, ts)} AND {ts} <= {ts_literal(high)})"

    def bounds(self, as_of: datetime) -> tuple[datetime | None, datetime | None]:
        # a window ending before year 1 is empty: its end clamps to the first instant
        return instant_before(as_of, days=self.end_days), instant_before(as_of, days=self.start_days) or _EARLIEST

    def describe(self) -> str:
        return f"between {self.start_days} and {self.end_days} days ago"

    def semantic(self) -> dict[str, Any]:
        return {"between_days_ago": [self.start_days, self.end_days]}


def _bound(v: object, *, end: bool) -> datetime:
    """A window end: a bare date (string or TOML date) means that whole UTC day."""
    bare = (isinstance(v, date) and not isinstance(v, datetime)) or (
        isinstance(v, str) and len(v.strip(iso8601.WHITESPACE)) == len("YYYY-MM-DD")
    )
    instant = to_instant(v)
    if end and bare:
        return _LATEST if instant.date() == _LATEST.date() else instant + timedelta(days=1, microseconds=-1)
    return instant


@dataclass(frozen=True, slots=True, kw_only=True)
class Between(Window):
    key: ClassVar[str] = "between"
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, v: object) -> Between:
        if not isinstance(v, list) or len(v) != 2:
            raise _Invalid('must be ["start", "end"], two ISO dates or date-times')
        start, end = _bound(v[0], end=False), _bound(v[1], end=True)
        if start > end:
            raise _Invalid("the start must not be after the end")
        return cls(start=start, end=end)

    def sql(self, ts: str, as_of: datetime) -> str:
        return f"({ts} >= {ts_literal(self.start)} AND {ts} <= {ts_literal(self.end)})"

    def bounds(self, as_of: datetime) -> tuple[datetime | None, datetime | None]:
        return instant_before(self.start, microseconds=1), self.end

    def describe(self) -> str:
        return f"between {self.start.isoformat()} and {self.end.isoformat()} (inclusive)"

    def semantic(self) -> dict[str, Any]:
        return {"between": [self.start.isoformat(), self.end.isoformat()]}


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionMinutes(Window):
    """The profile's latest session of the trait's events; gaps of ``minutes`` or more split."""

    key: ClassVar[str] = "session_minutes"
    is_session: ClassVar[bool] = True
    minutes: int

    @classmethod
    def parse(cls, v: object) -> SessionMinutes:
        return cls(minutes=_int_at_least(v, 1))

    @property
    def micros(self) -> int:
        return self.minutes * 60_000_000

    def describe(self) -> str:
        return f"the latest session (gaps under {self.minutes} minutes, expired {self.minutes} minutes after its last event)"

    def semantic(self) -> dict[str, Any]:
        return {"session_minutes": self.minutes}


#: The registry of window kinds, by their key in ``window = { ... }``.
WINDOWS: dict[str, type[Window]] = {
    w.key: w for w in (AllTime, WithinDays, WithinHours, BetweenDaysAgo, Between, SessionMinutes)
}


def parse_window(raw: object, *, path: object, section: str) -> Window:
    """Validate ``window = { <kind> = ... }`` (exactly one key); absent means all time."""
    if raw is None:
        return AllTime()
    valid = ", ".join(sorted(WINDOWS))
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"must be a table with exactly one of: {valid}", path=path, section=section, key="window")
    (kind, value), = raw.items()
    cls = WINDOWS.get(kind)
    if cls is None:
        raise ConfigError(f"unknown window {kind!r} (valid: {valid})", path=path, section=section, key=f"window.{kind}")
    try:
        return cls.parse(value)
    except _Invalid as exc:
        raise ConfigError(str(exc), path=path, section=section, key=f"window.{kind}") from None
