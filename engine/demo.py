"""``profiles demo``: the whole pipeline on the bundled sample, from any folder, with no set-up.

The demo's ``as_of`` defaults to the UTC midnight after the sample's latest event, not the wall
clock, so the demo prints the same numbers on every machine and every day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.config import load_config
from engine.errors import ProfilesError
from engine.progress import Progress
from engine.project import Project, parse_as_of
from engine.resources import SAMPLE_EVENTS, STARTER_CONFIG, bundled_file
from engine.views import format_value

SHOWN_PROFILES = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSummary:
    """What the demo did and a glimpse of the result."""

    store: Path
    config: Path
    reports: Path
    as_of: datetime
    ingest: Any
    identity: Any
    compute: Any
    predict: Any
    profiles: pl.DataFrame
    example_ident: str | None
    example_trait: str | None

    def __rich__(self) -> Group:
        glimpse = Table(title=f"A few profiles (the most active), as of {self.as_of.isoformat()}")
        for col in self.profiles.columns:
            glimpse.add_column(col, overflow="fold")
        for row in self.profiles.iter_rows():
            glimpse.add_row(*(format_value(v, digits=3) for v in row))
        store = f"--config {self.config}"
        lines = [
            f"Store: {self.store}",
            f"Project file: {self.config} (the bundled starter, pointing at this store)",
            f"Model reports: {self.reports}",
            "Try next:",
        ]
        if self.example_ident:
            lines.append(f"  profiles {store} show {self.example_ident}")
            if self.example_trait:
                lines.append(
                    f"  profiles {store} explain {self.example_ident} {self.example_trait} "
                    f"--as-of {self.as_of.isoformat()}"
                )
        lines += [
            f"  profiles {store} export --out profiles.parquet",
            f"  profiles {store} quarantine",
            "  profiles init my-project   (a starter profiles.toml for your own events)",
        ]
        parts: list[Any] = [self.ingest, self.identity, self.compute]
        if self.predict is not None:
            parts.append(self.predict)
        return Group(*parts, glimpse, Text("\n".join(lines)))


def run_demo(store: Path, *, as_of: str | datetime | None = None, progress: Progress | None = None) -> DemoSummary:
    """Replace ``store`` with a fresh one holding the bundled sample, fully processed.

    Beside the store it writes ``<store name>.toml``, the bundled starter project pointing at the
    store, so that every other command works on the demo with ``--config``.
    """
    store = Path(store).resolve()
    for stale in (store, store.with_name(store.name + ".wal")):
        stale.unlink(missing_ok=True)
    config_path = write_demo_config(store)
    config = load_config(config_path)
    with Project(config, progress=progress) as project:
        ingested = project.ingest(bundled_file(SAMPLE_EVENTS))
        when = parse_as_of(as_of) if as_of is not None else _after_latest_event(project)
        identity = project.resolve()
        computed = project.compute(as_of=when)
        predicted = project.predict(as_of=when) if config.predictions else None
        glimpse = _glimpse(project)
    ident = glimpse["identifier"][0] if glimpse.height else None
    counters = [t.name for t in config.traits if t.type == "event_counter"]
    return DemoSummary(
        store=store,
        config=config_path,
        reports=config.reports_dir,
        as_of=when,
        ingest=ingested,
        identity=identity,
        compute=computed,
        predict=predicted,
        profiles=glimpse,
        example_ident=ident,
        example_trait=counters[0] if counters else (config.traits[0].name if config.traits else None),
    )


def write_demo_config(store: Path) -> Path:
    """Write the starter project file beside ``store``, with its store and reports pointing there."""
    text = bundled_file(STARTER_CONFIG).read_text(encoding="utf-8")
    text, found = re.subn(
        r'(?m)^store\s*=\s*"[^"]*".*$',
        f'store = "{store.name}"  # written by profiles demo\nreports = "{store.stem}-reports"',
        text,
        count=1,
    )
    if not found:
        raise ProfilesError("the bundled starter profiles.toml has no [project] store line")
    path = store.with_suffix(".toml")
    path.write_text(text, encoding="utf-8")
    return path


def _after_latest_event(project: Project) -> datetime:
    latest = project.store.con.execute("SELECT max(timestamp) FROM events").fetchall()[0][0]
    if latest is None:
        return parse_as_of(None)
    midnight = latest.replace(hour=0, minute=0, second=0, microsecond=0)
    return parse_as_of(midnight + timedelta(days=1))


def _glimpse(project: Project) -> pl.DataFrame:
    """The most active profiles with an identifier to look them up by, their traits and scores."""
    config = project.config
    frame = project.export_frame()
    con = project.store.con
    active = con.sql(
        """
        SELECT ep.profile_id, count(*) AS events,
               arg_min(pi.type || ':' || pi.value, pi.type || ':' || pi.value) AS identifier
        FROM event_profiles ep
        LEFT JOIN profile_identifiers pi ON pi.profile_id = ep.profile_id AND pi.type = 'user_id'
        GROUP BY ep.profile_id
        ORDER BY events DESC, ep.profile_id
        LIMIT ?
        """, params=[SHOWN_PROFILES]).pl()
    keep = ["profile_id"] + [t.name for t in config.traits[:3]]
    keep += [p.name for p in config.predictions]
    keep = [c for c in keep if c in frame.columns]
    return active.join(frame.select(keep), on="profile_id", how="left").select(
        "profile_id", "identifier", "events", *[c for c in keep if c != "profile_id"]
    )

