"""What ``profiles show`` prints: one profile, read from the identity, trait and prediction tables."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.config import ProjectConfig
from engine.errors import NotFoundError
from engine.export import json_default, traits_as_of
from engine.identity.asof import drop_temps, is_latest, profile_as_of
from engine.store import Store, quote
from predictions.tasks import TASKS
from traits.base import Trait


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileView:
    """One profile: identifiers, profile traits, computed traits, predictions, recent events."""

    profile_id: str
    identifiers: pl.DataFrame
    profile_traits: dict[str, Any]
    traits: dict[str, Any]
    traits_as_of: datetime | None
    predictions: pl.DataFrame
    recent_events: pl.DataFrame
    event_count: int
    #: Set when the computed traits are as of an instant some event comes after: which profile
    #: of the identity then they belong to (identifiers and events are the latest identity's).
    traits_note: str | None = None

    def __rich__(self) -> Group:
        parts: list[Any] = [Text(f"Profile {self.profile_id}  ({self.event_count} events)", style="bold")]
        ids = Table(title="Identifiers", title_justify="left")
        for col in ("type", "value", "first seen", "by message"):
            ids.add_column(col)
        for row in self.identifiers.iter_rows():
            ids.add_row(*(str(v) for v in row))
        parts.append(ids)
        if self.profile_traits:
            pt = Table(title="Profile traits (from identify)", title_justify="left")
            pt.add_column("key")
            pt.add_column("value")
            for k, v in self.profile_traits.items():
                pt.add_row(k, json.dumps(v, ensure_ascii=False))
            parts.append(pt)
        when = "never computed" if self.traits_as_of is None else f"as of {self.traits_as_of.isoformat()}"
        ct = Table(title=f"Computed traits ({when})", title_justify="left")
        ct.add_column("trait")
        ct.add_column("value")
        for k, v in self.traits.items():
            ct.add_row(k, format_value(v))
        parts.append(ct)
        if self.traits_note:
            parts.append(Text(self.traits_note, style="yellow"))
        if self.predictions.height:
            pr = Table(title="Predictions", title_justify="left")
            for col in ("prediction", "score", "percentile", "model or why not scored"):
                pr.add_column(col)
            for name, score, pct, note in self.predictions.iter_rows():
                pr.add_row(name, format_value(score), format_value(pct), note)
            parts.append(pr)
        ev = Table(title=f"Recent events (latest {self.recent_events.height})", title_justify="left")
        for col in ("timestamp", "type", "event", "message id"):
            ev.add_column(col)
        for row in self.recent_events.iter_rows():
            ev.add_row(*(format_value(v) for v in row))
        parts.append(ev)
        return Group(*parts)


def format_value(value: Any, *, digits: int = 6) -> str:
    """A trait or score as a person reads it: ``null``, short floats, ISO times, JSON lists."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | pl.Series):
        return json.dumps(list(value), ensure_ascii=False, default=json_default)
    return str(value)


def _predictions(store: Store, config: ProjectConfig, profile_id: str) -> pl.DataFrame:
    """Per prediction of the project: score, percentile, and the model or why there is no score."""
    rows = []
    for p in config.predictions:
        run = (
            store.first_row(
                "SELECT status, model, reason FROM prediction_runs WHERE prediction = ?", [p.name]
            )
            if store.has_table("prediction_runs") else None
        )
        scored = (
            store.first_row(
                "SELECT score, percentile, model FROM prediction_scores WHERE prediction = ? AND profile_id = ?",
                [p.name, profile_id],
            )
            if store.has_table("prediction_scores") else None
        )
        if run is None:
            rows.append((p.name, None, None, "not predicted yet: run 'profiles predict'"))
        elif run[0] != "scored":
            rows.append((p.name, None, None, f"not scored: {run[2]}"))
        elif scored is None:  # predict scores every profile: this one is newer than the run
            rows.append((p.name, None, None, "not scored yet: the profile is newer than the last 'profiles predict'"))
        elif scored[0] is None:
            rows.append((p.name, None, None, "not eligible: " + TASKS[p.type].ineligible.format(h=p.horizon_days)))
        else:
            rows.append((p.name, scored[0], scored[1], str(scored[2] or run[1])))
    return pl.DataFrame(
        rows, orient="row",
        schema={"prediction": pl.String, "score": pl.Float64, "percentile": pl.Float64, "note": pl.String},
    )


def profile_view(store: Store, config: ProjectConfig, profile_id: str, *, recent: int = 10) -> ProfileView:
    """Gather everything ``profiles show`` prints for ``profile_id``."""
    con = store.con
    identifiers = con.sql(
        "SELECT type, value, first_seen_at, message_id FROM profile_identifiers "
        "WHERE profile_id = ? ORDER BY type, value",
        params=[profile_id],
    ).pl()
    profile_traits: dict[str, Any] = {}
    if store.has_table("profile_traits"):
        for key, value in con.execute(
            "SELECT key, value FROM profile_traits WHERE profile_id = ? ORDER BY key", [profile_id]
        ).fetchall():
            profile_traits[key] = json.loads(value) if isinstance(value, str) else value
    traits: dict[str, Any] = {}
    as_of = traits_as_of(store)
    values_id, note = _values_profile(store, profile_id, as_of)
    if config.traits and store.has_table("trait_values") and values_id is not None:
        have = {r[0] for r in con.execute("DESCRIBE trait_values").fetchall()}
        names = [t.name for t in config.traits if t.name in have]
        if names:
            cols = ", ".join(quote(n) for n in names)
            row = store.first_row(f"SELECT {cols} FROM trait_values WHERE profile_id = ?", [values_id])
            if row is not None:
                traits = dict(zip(names, row, strict=True))
    predictions = _predictions(store, config, profile_id)
    recent_events = con.sql(
        "SELECT e.timestamp, e.type, coalesce(e.event, e.name, '') AS event, e.message_id "
        "FROM event_profiles ep JOIN events e USING (message_id) WHERE ep.profile_id = ? "
        "ORDER BY e.timestamp DESC, e.message_id DESC LIMIT ?",
        params=[profile_id, recent],
    ).pl()
    event_count = con.execute(
        "SELECT count(*) FROM event_profiles WHERE profile_id = ?", [profile_id]
    ).fetchall()[0][0]
    return ProfileView(
        profile_id=profile_id,
        identifiers=identifiers,
        profile_traits=profile_traits,
        traits=traits,
        traits_as_of=as_of,
        predictions=predictions,
        recent_events=recent_events,
        event_count=event_count,
        traits_note=note,
    )


def _values_profile(store: Store, profile_id: str, as_of: datetime | None) -> tuple[str | None, str | None]:
    """The profile whose stored trait values describe ``profile_id``, and a note when the values
    are as of an instant some event comes after (identity then: docs/identity.md). Traits as of
    then belong to what this profile was then: itself before a later merge, the survivor of a
    merge by then; nothing when it did not exist yet."""
    if as_of is None or is_latest(store, as_of):
        return profile_id, None
    when = as_of.isoformat()
    try:
        then = profile_as_of(store, profile_id, as_of)
    except NotFoundError:
        return None, (f"Computed traits are as of {when}; this profile did not exist yet then "
                      "(identifiers and events above are as of now)")
    finally:
        drop_temps(store)
    if then != profile_id:
        return then, (f"Computed traits are as of {when}, when this profile's first events belonged "
                      f"to {then}: its values are shown (identifiers and events above are as of now)")
    return then, (f"Computed traits are as of {when}: they count this profile's events as of then "
                  "(identifiers and events above are as of now, later merges included)")


def definition_text(trait: Trait) -> str:
    """A trait's definition in words (``profiles traits``): its own keys, conditions, window."""
    shared = {"name", "type", "event", "description", "conditions", "match", "window"}
    parts = [
        f"{f.name} = {format_value(getattr(trait, f.name))}"
        for f in dataclasses.fields(trait)
        if f.name not in shared and getattr(trait, f.name) is not None
    ]
    if trait.conditions:
        joiner = " and " if trait.match == "all" else " or "
        parts.append("where " + joiner.join(c.describe() for c in trait.conditions))
    parts.append(trait.window.describe())
    return "; ".join(parts)
