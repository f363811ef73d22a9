"""``[identity]`` of ``profiles.toml`` -> frozen :class:`IdentityRules`, validated once.

The rules decide which identifiers exist (types, where they are read), how much each profile may
hold of each type (limit within a period) and which value wins when an event would break a limit
(priority: the order of the list). Defaults follow Segment Unify's; see ``docs/identity.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from engine.errors import ConfigError

#: Period name -> length; ``None`` means "ever" (every value counts).
PERIODS: dict[str, timedelta | None] = {
    "ever": None,
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=30),
    "annually": timedelta(days=365),
}

#: Default identifier types and the message fields they are read from (``identity.md``).
DEFAULT_TYPES: tuple[str, ...] = (
    "user_id",
    "email",
    "anonymous_id",
    "phone",
    "android.id",
    "ios.id",
    "android.idfa",
    "ios.idfa",
    "android.push_token",
    "ios.push_token",
    "ga_client_id",
)

#: Built-in blocked values, compared case-insensitively with the normalised value.
BUILTIN_BLOCKED: frozenset[str] = frozenset(
    {"null", "undefined", "anonymous", "-1", "unknown", "none", "n/a"}
)
#: Values made only of ``0`` and ``-`` are blocked too (``0``, ``000-000``, ``--``).
BUILTIN_BLOCKED_PATTERN = r"[0\-]+"


_TYPE = re.compile(r"^[a-z][a-z0-9_.\-]*$")
_PATH = re.compile(r"^[A-Za-z0-9_$@\- ]+(\.[A-Za-z0-9_$@\- ]+)+$")
_IDENTIFIER_KEYS = {"type", "limit", "period", "sources"}
_IDENTITY_KEYS = {"identifiers", "blocked_values", "blocked_patterns"}


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifierRule:
    """One identifier type: its limit per profile, the period the limit counts over, extra sources.

    Parameters
    ----------
    type
        Lower-case type name (``email``, ``crm_id``).
    priority
        1 = highest; the position in ``identifiers``.
    limit
        How many values of this type one profile may hold (gained within ``period``).
    period
        ``ever``, ``daily``, ``weekly``, ``monthly`` or ``annually``.
    sources
        Extra dotted paths read for this type, e.g. ``traits.crm_id`` or ``properties.crm_id``
        (the default types also keep their built-in places).
    """

    type: str
    priority: int
    limit: int
    period: str = "ever"
    sources: tuple[str, ...] = ()

    @property
    def period_micros(self) -> int | None:
        """The period in microseconds, ``None`` for ``ever``."""
        span = PERIODS[self.period]
        return None if span is None else span // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityRules:
    """The identity rules of a project: identifier types in priority order, blocked values."""

    identifiers: tuple[IdentifierRule, ...]
    blocked_values: tuple[str, ...] = ()
    blocked_patterns: tuple[str, ...] = ()
    _by_type: dict[str, IdentifierRule] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_type", {r.type: r for r in self.identifiers})

    @property
    def types(self) -> tuple[str, ...]:
        """Identifier types, highest priority first."""
        return tuple(r.type for r in self.identifiers)

    def rule(self, type_: str) -> IdentifierRule | None:
        """The rule of ``type_``, ``None`` if the type is not used (its values are ignored)."""
        return self._by_type.get(type_)

    def semantic(self) -> dict[str, Any]:
        """The fields that change resolution, for a hash that says when to re-resolve."""
        return {
            "identifiers": [
                [r.type, r.priority, r.limit, r.period, list(r.sources)] for r in self.identifiers
            ],
            "blocked_values": list(self.blocked_values),
            "blocked_patterns": list(self.blocked_patterns),
        }


def default_rules() -> IdentityRules:
    """Unify's defaults: user_id 1 (ever), email 5, then the other default types A-Z, 5 each."""
    rest = sorted(t for t in DEFAULT_TYPES if t not in ("user_id", "email"))
    order = ["user_id", "email", *rest]
    return IdentityRules(
        identifiers=tuple(
            IdentifierRule(type=t, priority=i + 1, limit=1 if t == "user_id" else 5)
            for i, t in enumerate(order)
        )
    )


def parse_identity(table: dict[str, Any] | None, *, path: str | Path | None = None) -> IdentityRules:
    """Validate ``[identity]``; ``None`` (no table) gives :func:`default_rules`.

    Every problem raises :class:`ConfigError` naming the file, ``identity`` and the key.

    Examples
    --------
    >>> rules = parse_identity({"identifiers": [{"type": "user_id", "limit": 1},
    ...                                         {"type": "email", "limit": 2, "period": "weekly"}]})
    >>> [(r.type, r.priority, r.limit, r.period) for r in rules.identifiers]
    [('user_id', 1, 1, 'ever'), ('email', 2, 2, 'weekly')]
    """
    if table is None:
        return default_rules()
    if not isinstance(table, dict):
        raise ConfigError("[identity] must be a table", path=path, section="identity")
    unknown = sorted(set(table) - _IDENTITY_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key (valid: {', '.join(sorted(_IDENTITY_KEYS))})",
            path=path,
            section="identity",
            key=unknown[0],
        )
    if "identifiers" in table:
        identifiers = _parse_identifiers(table["identifiers"], path=path)
    else:
        identifiers = default_rules().identifiers
    blocked_values = _string_list(table.get("blocked_values", []), "blocked_values", path=path)
    blocked_patterns = _string_list(table.get("blocked_patterns", []), "blocked_patterns", path=path)
    for pattern in blocked_patterns:
        _check_pattern(pattern, path=path)
    return IdentityRules(
        identifiers=identifiers,
        blocked_values=tuple(blocked_values),
        blocked_patterns=tuple(blocked_patterns),
    )


def _parse_identifiers(items: Any, *, path: str | Path | None) -> tuple[IdentifierRule, ...]:
    if not isinstance(items, list) or not items:
        raise ConfigError(
            "must be a non-empty array of tables like { type = \"email\", limit = 5 }",
            path=path,
            section="identity",
            key="identifiers",
        )
    rules: list[IdentifierRule] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        section = f"identity.identifiers[{i}]"
        if not isinstance(item, dict):
            raise ConfigError("must be a table like { type = \"email\", limit = 5 }", path=path, section=section)
        bad = sorted(set(item) - _IDENTIFIER_KEYS)
        if bad:
            raise ConfigError(
                f"unknown key (valid: {', '.join(sorted(_IDENTIFIER_KEYS))})",
                path=path,
                section=section,
                key=bad[0],
            )
        type_ = item.get("type")
        if not isinstance(type_, str) or not _TYPE.match(type_):
            raise ConfigError(
                "must be a lower-case identifier type such as 'email' or 'crm_id' "
                "(letters, digits, '_', '.', '-')",
                path=path,
                section=section,
                key="type",
            )
        if type_ in seen:
            raise ConfigError(f"type {type_!r} is listed twice", path=path, section=section, key="type")
        seen.add(type_)
        limit = item.get("limit", 1 if type_ == "user_id" else 5)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError("must be a whole number >= 1", path=path, section=section, key="limit")
        period = item.get("period", "ever")
        if period not in PERIODS:
            raise ConfigError(
                f"unknown period {period!r} (valid: {', '.join(PERIODS)})",
                path=path,
                section=section,
                key="period",
            )
        sources = _string_list(item.get("sources", []), "sources", path=path, section=section)
        for source in sources:
            if not _PATH.match(source):
                raise ConfigError(
                    f"source {source!r} must be a dotted path such as 'traits.crm_id' or "
                    "'properties.account.crm_id'",
                    path=path,
                    section=section,
                    key="sources",
                )
        rules.append(
            IdentifierRule(type=type_, priority=i + 1, limit=limit, period=period, sources=tuple(sources))
        )
    return tuple(rules)


def _string_list(
    value: Any, key: str, *, path: str | Path | None, section: str = "identity"
) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be an array of strings", path=path, section=section, key=key)
    return list(value)


def _check_pattern(pattern: str, *, path: str | Path | None) -> None:
    """Patterns run in DuckDB (RE2) and in Python tests: reject what either cannot compile."""
    try:
        re.compile(pattern)
        with duckdb.connect() as con:
            con.execute("SELECT regexp_full_match('', ?)", [pattern]).fetchall()
    except (re.error, duckdb.Error) as exc:
        raise ConfigError(
            f"invalid regular expression {pattern!r}: {exc}".splitlines()[0],
            path=path,
            section="identity",
            key="blocked_patterns",
        ) from None
