"""The registry of trait types and the parser of ``[[traits]]`` tables.

``type`` strings map to classes here, and nowhere else; an unknown type is a configuration error
listing the valid ones. Every problem names the file, the trait and the key, and nothing is
computed from a file with any invalid definition.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from traits.aggregation import FUNCTIONS, Aggregation
from traits.base import Trait
from traits.conditions import parse_condition
from traits.event_counter import EventCounter
from traits.first_last import First, Last
from traits.most_frequent import MostFrequent
from traits.unique_list import UniqueList, UniqueListCount
from traits.values import VALUE_TYPES, path_problem
from traits.windows import parse_window

#: Trait type name -> class.
TRAIT_TYPES: dict[str, type[Trait]] = {
    cls.type: cls
    for cls in (EventCounter, Aggregation, MostFrequent, First, Last, UniqueList, UniqueListCount)
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {"profile_id", "identifiers"}
_SHARED_KEYS = ("name", "type", "event", "description", "conditions", "match", "window")
_VALUE_KEYS = ("property", "value_type")


class _Bad(Exception):
    pass


def _positive_int(v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise _Bad("must be an integer >= 1")
    return v


def _function(v: object) -> str:
    if v not in FUNCTIONS:
        raise _Bad(f"must be one of {', '.join(FUNCTIONS)}")
    return str(v)


#: Validators of the type-specific keys (key -> value -> normalised value).
OWN_KEY_VALIDATORS: dict[str, Callable[[object], Any]] = {
    "function": _function,
    "min_frequency": _positive_int,
    "max_items": _positive_int,
}
#: Type-specific keys that must be given.
REQUIRED_OWN_KEYS = {"function"}


def valid_keys(cls: type[Trait]) -> tuple[str, ...]:
    """The keys a definition of this type may use."""
    return _SHARED_KEYS + (_VALUE_KEYS if cls.takes_property else ()) + cls.own_keys


def parse_trait(raw: object, *, path: str | Path | None, index: int) -> Trait:
    """Validate one ``[[traits]]`` table into its frozen definition."""
    section = f"traits[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError("each [[traits]] entry must be a table", path=path, section=section)
    name = raw.get("name")
    if isinstance(name, str) and name:
        section = f"traits[{name}]"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            "'name' is required: lowercase letters, digits and _, starting with a letter "
            "(it becomes a column name)",
            path=path, section=section, key="name",
        )
    if name in _RESERVED:
        raise ConfigError(f"the name {name!r} is reserved (an output column)", path=path, section=section, key="name")
    kind = raw.get("type")
    if kind is None:
        raise ConfigError(f"'type' is required (valid: {', '.join(TRAIT_TYPES)})", path=path, section=section, key="type")
    cls = TRAIT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(
            f"unknown trait type {kind!r} (valid: {', '.join(TRAIT_TYPES)})",
            path=path, section=section, key="type",
        )
    allowed = valid_keys(cls)
    for key in raw:
        if key in allowed:
            continue
        if key in _VALUE_KEYS:
            raise ConfigError(f"{kind} reads no property; remove '{key}'", path=path, section=section, key=key)
        raise ConfigError(
            f"unknown key for type {kind} (valid: {', '.join(sorted(allowed))})",
            path=path, section=section, key=key,
        )
    event = raw.get("event")
    if not isinstance(event, str) or not event:
        raise ConfigError("'event' is required: the event name (a non-empty string)", path=path, section=section, key="event")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("must be a string", path=path, section=section, key="description")
    match = raw.get("match", "all")
    if match not in ("all", "any"):
        raise ConfigError('must be "all" or "any"', path=path, section=section, key="match")
    conditions = raw.get("conditions", [])
    if not isinstance(conditions, list):
        raise ConfigError("must be an array of { property, operator, value } tables", path=path, section=section, key="conditions")
    fields: dict[str, Any] = {
        "name": name,
        "event": event,
        "description": description,
        "match": match,
        "conditions": tuple(
            parse_condition(c, path=path, section=section, index=i) for i, c in enumerate(conditions)
        ),
        "window": parse_window(raw.get("window"), path=path, section=section),
    }
    if cls.takes_property:
        prop = raw.get("property")
        problem = path_problem(prop)
        if problem:
            raise ConfigError(f"'property' {problem}", path=path, section=section, key="property")
        fields["property"] = prop
        default_type = "number" if cls is Aggregation else "text"
        value_type = raw.get("value_type", default_type)
        if value_type not in VALUE_TYPES:
            raise ConfigError(
                f"unknown value type {value_type!r} (valid: {', '.join(VALUE_TYPES)})",
                path=path, section=section, key="value_type",
            )
        if cls is Aggregation and value_type != "number":
            raise ConfigError("aggregation reads numbers: value_type must be \"number\"", path=path, section=section, key="value_type")
        fields["value_type"] = value_type
    for key in cls.own_keys:
        if key not in raw:
            if key in REQUIRED_OWN_KEYS:
                raise ConfigError(
                    f"'{key}' is required for type {kind}", path=path, section=section, key=key
                )
            continue
        try:
            fields[key] = OWN_KEY_VALIDATORS[key](raw[key])
        except _Bad as exc:
            raise ConfigError(str(exc), path=path, section=section, key=key) from None
    return cls(**fields)


def parse_traits(tables: list[dict[str, Any]], *, path: str | Path | None = None) -> tuple[Trait, ...]:
    """Validate every ``[[traits]]`` table; names must be unique."""
    if not isinstance(tables, list):
        raise ConfigError("use [[traits]] (an array of tables)", path=path, section="traits")
    traits = tuple(parse_trait(raw, path=path, index=i) for i, raw in enumerate(tables))
    seen: set[str] = set()
    for t in traits:
        if t.name in seen:
            raise ConfigError(f"the trait name {t.name!r} is used twice", path=path, section=f"traits[{t.name}]", key="name")
        seen.add(t.name)
    return traits


def type_table() -> list[dict[str, str]]:
    """The documentation table of trait types, generated from the registry."""
    return [
        {
            "type": name,
            "keys": ", ".join(k for k in valid_keys(cls) if k not in _SHARED_KEYS) or "-",
            "value": cls.summary,
        }
        for name, cls in TRAIT_TYPES.items()
    ]
