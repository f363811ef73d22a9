"""The Python API: a :class:`Project` does everything the ``profiles`` command does.

The CLI is a thin layer over this class; notebooks and batch jobs use it directly and get Polars
DataFrames and report objects back (each report renders itself with ``rich``).

Examples
--------
>>> from engine.project import Project                       # doctest: +SKIP
>>> with Project.from_file("profiles.toml") as project:      # doctest: +SKIP
...     project.ingest("exports/")
...     project.resolve()
...     project.compute(as_of="2025-03-01T00:00:00Z")
...     df = project.export_frame()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from rich.console import Group

from engine.config import ProjectConfig, load_config
from engine.errors import ConfigError
from engine.progress import Progress
from engine.store import Store

if TYPE_CHECKING:
    from engine.export import Exported


def parse_as_of(value: str | datetime | None) -> datetime:
    """``as_of`` as an aware UTC datetime: ``None`` is now; a bare date is its UTC midnight."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--as-of {value!r} is not an ISO-8601 date or date-time (e.g. 2025-03-01 or "
            "2025-03-01T12:00:00Z)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    """The reports of each stage of ``run`` / ``demo``, in order."""

    stages: tuple[Any, ...]

    def __rich__(self) -> Group:
        return Group(*self.stages)


class Project:
    """A project: its configuration and its store.

    Parameters
    ----------
    config
        The parsed project file (:func:`engine.config.load_config`).
    store
        Overrides ``config.store`` (the DuckDB file; ``":memory:"`` for a throw-away store).
    progress
        Progress reporting for long steps; silent by default.
    read_only
        Open the store read-only (several readers may share it; no writer meanwhile).
    """

    def __init__(
        self,
        config: ProjectConfig,
        *,
        store: str | Path | None = None,
        progress: Progress | None = None,
        read_only: bool = False,
    ) -> None:
        if store is not None:
            store_path = None if str(store) == ":memory:" else Path(store).resolve()
            config = dataclasses.replace(config, store=store_path or config.store)
        else:
            store_path = config.store
        self.config = config
        self.progress = progress or Progress()
        self._store_path = store_path
        self._read_only = read_only
        self._store: Store | None = None

    @classmethod
    def from_file(
        cls,
        path: str | Path = "profiles.toml",
        *,
        store: str | Path | None = None,
        progress: Progress | None = None,
        read_only: bool = False,
    ) -> Project:
        """Load ``profiles.toml`` and open its store lazily."""
        return cls(load_config(path), store=store, progress=progress, read_only=read_only)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The open store (opened, created or migrated on first use)."""
        if self._store is None:
            self._store = Store.open(self._store_path, read_only=self._read_only)
        return self._store

    @property
    def store_path(self) -> Path | None:
        return self._store_path

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stages ----------------------------------------------------------------------------
    def ingest(self, *paths: str | Path, now: datetime | None = None) -> Any:
        """Ingest files, folders and globs (``events.md``); returns an ``IngestReport``."""
        from ingest.load import ingest_paths

        return ingest_paths(self.store, list(paths), progress=self.progress, now=now)

    def resolve(self) -> Any:
        """Bring the identity graph up to date with the stored events; an ``IdentityReport``."""
        from engine.identity.resolve import resolve

        return resolve(self.store, self.config.identity, progress=self.progress)

    def compute(self, *, as_of: str | datetime | None = None, full: bool = False) -> Any:
        """Bring trait values up to date as of ``as_of`` (default now); a ``ComputeReport``."""
        from engine.compute import compute_traits

        return compute_traits(
            self.store, self.config.traits, as_of=parse_as_of(as_of), full=full, progress=self.progress
        )

    def predict(self, *, as_of: str | datetime | None = None) -> Any:
        """Train and score every prediction; writes reports; a ``PredictReport``."""
        from engine.predict import run_predictions

        return run_predictions(self.store, self.config, as_of=parse_as_of(as_of), progress=self.progress)

    def run(
        self,
        paths: Sequence[str | Path],
        *,
        as_of: str | datetime | None = None,
        now: datetime | None = None,
    ) -> RunReport:
        """Ingest, resolve, compute and predict in one go (what ``profiles run`` does)."""
        when = parse_as_of(as_of)
        stages = [self.ingest(*paths, now=now), self.resolve(), self.compute(as_of=when)]
        if self.config.predictions:
            stages.append(self.predict(as_of=when))
        return RunReport(stages=tuple(stages))

    def watch(
        self,
        folder: str | Path,
        *,
        interval: float = 2.0,
        as_of: str | datetime | None = None,
        log: Any = print,
        max_cycles: int | None = None,
    ) -> Any:
        """Poll ``folder``: new files are ingested, resolved and computed incrementally; a ``WatchReport``."""
        from engine.watch import watch

        return watch(
            self, folder, interval=interval, as_of=None if as_of is None else parse_as_of(as_of),
            log=log, max_cycles=max_cycles,
        )

    # -- reading ---------------------------------------------------------------------------
    def find_profile(self, ident: str) -> str:
        """The profile id for a profile id or any ``type:value`` identifier."""
        from engine.identity.resolve import find_profile

        return find_profile(self.store, ident)

    def stale_warnings(self) -> list[str]:
        """How the stored profiles, traits and scores lag behind the events or the project file."""
        from engine.freshness import stale_warnings

        return stale_warnings(self.store, self.config)

    def profile(self, ident: str, *, recent: int = 10) -> Any:
        """Everything known about one profile (what ``profiles show`` prints)."""
        from engine.views import profile_view

        return profile_view(self.store, self.config, self.find_profile(ident), recent=recent)

    def explain(self, ident: str, trait: str, *, as_of: str | datetime | None = None) -> Any:
        """Why this profile has this trait value: the events and how they combine.

        Without ``as_of``, as of the stored trait values (what ``show`` and ``export`` print), so
        the explanation is of the value the user sees; never computed: now.
        """
        from engine.compute import explain_trait

        from engine.export import traits_as_of

        definition = self.config.trait(trait)
        when = parse_as_of(as_of) if as_of is not None else (traits_as_of(self.store) or parse_as_of(None))
        return explain_trait(self.store, self.find_profile(ident), definition, as_of=when)

    def export_frame(self) -> pl.DataFrame:
        """One row per profile per the export contract of ``cli.md``."""
        from engine.export import export_frame

        return export_frame(self.store, self.config)

    def export(self, out: str | Path, *, format: str | None = None) -> Exported:
        """Write :meth:`export_frame` to ``out`` (parquet, csv or ndjson; default by suffix).

        Returns the path written and its number of profile rows.
        """
        from engine.export import write_export

        return write_export(self.store, self.config, Path(out), format=format)

    def quarantine(self, *, limit: int | None = None) -> pl.DataFrame:
        """The quarantined records: file, line/row, reason, raw text."""
        from ingest.load import quarantine_frame

        return quarantine_frame(self.store, limit=limit)

    def trait_stats(self) -> pl.DataFrame:
        """Per trait: events counted, missing and rejected at the last compute."""
        from engine.compute import trait_stats

        return trait_stats(self.store)
