"""The ``profiles`` command line: thin typer commands over :class:`engine.project.Project`.

This is the only place that maps errors to exit codes: a :class:`ProfilesError` prints one
``error: ...`` line and exits 1 (``--debug`` shows the traceback instead); usage errors exit 2.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console
from rich.table import Table

from engine.config import ProjectConfig, load_config, parse_config
from engine.errors import ConfigError, ProfilesError
from engine.progress import progress_for
from engine.project import Project, parse_as_of

app = typer.Typer(
    name="profiles",
    help="Computed traits, identity resolution and predictions for Segment events, on a local DuckDB store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DEMO_STORE = "profiles-demo.duckdb"


#: The project file read when ``--config`` is not given.
DEFAULT_CONFIG = Path("profiles.toml")


@dataclass(slots=True)
class _Options:
    config: Path | None
    store: Path | None
    quiet: bool
    debug: bool
    console: Console


def _stdout_console() -> Console:
    """Rich's console on stdout; off a terminal, wide enough that tables keep whole file names.

    Markup and emoji codes are off: the text printed is data (event names, ids, property values),
    and ``[/]`` or ``:smile:`` in a user id must print as sent, not style or crash the output.
    """
    console = Console(markup=False, emoji=False)
    return console if console.is_terminal else Console(width=160, markup=False, emoji=False)


_OPTIONS = _Options(None, None, False, False, _stdout_console())


def _checked_as_of(value: str | None) -> str | None:
    """A malformed ``--as-of`` is a usage error (exit 2), like any other bad option value."""
    if value is not None:
        try:
            parse_as_of(value)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--as-of ")) from None
    return value


AsOf = Annotated[
    str | None,
    typer.Option("--as-of", callback=_checked_as_of,
                 help="Compute as of this UTC instant (ISO-8601; a bare date is midnight). Default: now."),
]
Strict = Annotated[bool, typer.Option("--strict", help="Exit 1 when any record was quarantined.")]


class ExportFormat(str, Enum):
    """``--format`` choices (typer rejects anything else with a usage error, exit 2)."""

    parquet = "parquet"
    csv = "csv"
    ndjson = "ndjson"


@app.callback()
def _global(
    config: Annotated[
        Path | None, typer.Option("--config", help="The project file [default: ./profiles.toml].", show_default=False)
    ] = None,
    store: Annotated[Path | None, typer.Option("--store", help="The DuckDB store (overrides project.store).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Computed traits, identity resolution and predictions for Segment events, on a local DuckDB store."""
    _OPTIONS.config, _OPTIONS.store, _OPTIONS.quiet, _OPTIONS.debug = config, store, quiet, debug


def _config() -> ProjectConfig:
    """The project file; with ``--store`` and no ``./profiles.toml``, the defaults (said on stderr).

    So ``profiles --store s.duckdb ingest ...`` works in any folder: the default identity rules,
    no traits, no predictions. An explicit ``--config`` that is missing stays an error.
    """
    if _OPTIONS.config is None and _OPTIONS.store is not None and not DEFAULT_CONFIG.exists():
        Console(stderr=True, soft_wrap=True, markup=False, highlight=False).print(
            f"note: no {DEFAULT_CONFIG} here: using the default identity rules, no traits and no "
            "predictions (create one with 'profiles init')"
        )
        return parse_config({})
    return load_config(_OPTIONS.config or DEFAULT_CONFIG)


def _project(*, read_only: bool = False) -> Project:
    return Project(
        _config(),
        store=_OPTIONS.store,
        progress=progress_for(quiet=_OPTIONS.quiet),
        read_only=read_only,
    )


def _print(*renderables: Any) -> None:
    for r in renderables:
        _OPTIONS.console.print(r)


def _warn(project: Project) -> None:
    """Stale results are still shown, but never silently (stderr, so exports stay clean)."""
    console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)
    for warning in project.stale_warnings():
        console.print(f"warning: {warning}")


def _done(started: float, what: str) -> None:
    _OPTIONS.console.print(f"{what} in {time.perf_counter() - started:.1f} s")


def _check_ingest(report: Any, *, strict: bool) -> None:
    """Exit 1 for unreadable files always, and for quarantined records with ``--strict``."""
    problems = list(getattr(report, "unreadable", ()))
    if problems:
        names = "; ".join(f"{f.path} ({f.message})" for f in problems)
        raise ProfilesError(
            f"{len(problems)} file(s) could not be read completely: {names}; "
            "see 'profiles quarantine' and fix or replace them"
        )
    if strict and report.quarantined:
        raise ProfilesError(
            f"{report.quarantined} record(s) were quarantined (--strict); see 'profiles quarantine'"
        )


# -- commands ---------------------------------------------------------------------------------
@app.command()
def demo(
    store: Annotated[Path | None, typer.Option("--store", help="Where to write the demo store.")] = None,
    as_of: AsOf = None,
    strict: Strict = False,
) -> None:
    """Ingest the bundled sample into a fresh store and show profiles, traits and predictions."""
    from engine.demo import run_demo

    started = time.perf_counter()
    target = store or _OPTIONS.store or Path(DEMO_STORE)
    summary = run_demo(target, as_of=as_of, progress=progress_for(quiet=_OPTIONS.quiet))
    _print(summary)
    _done(started, "demo finished")
    _check_ingest(summary.ingest, strict=strict)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new profiles.toml.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing profiles.toml.")] = False,
) -> None:
    """Write a commented starter profiles.toml (the six Flex traits, identity rules, churn + LTV)."""
    from engine.resources import STARTER_CONFIG, bundled_file

    target = directory / "profiles.toml"
    if directory.exists() and not directory.is_dir():
        raise ProfilesError(f"{directory} is a file, not a folder: give the folder for profiles.toml")
    if target.exists() and not force:
        raise ProfilesError(f"{target} already exists; pass --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundled_file(STARTER_CONFIG), target)
    _print(f"wrote {target}; next: profiles --config {target} ingest YOUR_EVENTS")


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or globs of Segment messages.")],
    strict: Strict = False,
) -> None:
    """Ingest NDJSON / JSON / Parquet / CSV / Avro files (optionally .gz) into the store."""
    started = time.perf_counter()
    with _project() as project:
        report = project.ingest(*paths)
    _print(report)
    _done(started, "ingest finished")
    _check_ingest(report, strict=strict)


@app.command()
def resolve() -> None:
    """Bring the identity graph up to date with the stored events."""
    started = time.perf_counter()
    with _project() as project:
        _print(project.resolve())
    _done(started, "resolve finished")


@app.command()
def compute(
    as_of: AsOf = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute from scratch (same result).")] = False,
) -> None:
    """Bring computed trait values up to date."""
    started = time.perf_counter()
    with _project() as project:
        _print(project.compute(as_of=as_of, full=full))
        _warn(project)
    _done(started, "compute finished")


@app.command()
def watch(
    folder: Annotated[Path, typer.Argument(help="The folder to poll for new event files.")],
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls (at least 0.1).")] = 2.0,
    as_of: AsOf = None,
) -> None:
    """Poll a folder: each new file is ingested, resolved and computed incrementally (Ctrl-C stops)."""
    with _project() as project:
        report = project.watch(folder, interval=interval, as_of=as_of, log=_OPTIONS.console.print)
    _print(report)


@app.command()
def predict(as_of: AsOf = None) -> None:
    """Train and score the prediction models; write scores and model reports."""
    started = time.perf_counter()
    with _project() as project:
        _print(project.predict(as_of=as_of))
        _warn(project)
    _done(started, "predict finished")


@app.command()
def run(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or globs of Segment messages.")],
    as_of: AsOf = None,
    strict: Strict = False,
) -> None:
    """Ingest + resolve + compute + predict."""
    started = time.perf_counter()
    with _project() as project:
        report = project.run(paths, as_of=as_of)
    _print(report)
    _done(started, "run finished")
    _check_ingest(report.stages[0], strict=strict)


@app.command()
def show(ident: Annotated[str, typer.Argument(help="A profile id or type:value of any identifier.")]) -> None:
    """A profile: identifiers, profile traits, computed traits, predictions, recent events."""
    with _project(read_only=True) as project:
        _print(project.profile(ident))
        _warn(project)


@app.command()
def explain(
    ident: Annotated[str, typer.Argument(help="A profile id or type:value of any identifier.")],
    trait: Annotated[str, typer.Argument(help="The trait name.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", callback=_checked_as_of,
                     help="Explain as of this UTC instant. Default: the as_of of the stored trait values (else now)."),
    ] = None,
) -> None:
    """Why this profile has this trait value: the events and how they combine."""
    with _project() as project:  # writable: a trait edited since the last compute may need a typed column
        _print(project.explain(ident, trait, as_of=as_of))


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    format: Annotated[
        ExportFormat | None, typer.Option("--format", help="The file format (default: by the suffix of --out).")
    ] = None,
) -> None:
    """One row per profile: identifiers, computed traits, prediction scores."""
    with _project(read_only=True) as project:
        written = project.export(out, format=None if format is None else format.value)
        _warn(project)
    _print(f"wrote {written.rows} profiles to {written.path}")


@app.command()
def quarantine(
    limit: Annotated[int, typer.Option("--limit", help="Show at most N records.", min=1)] = 20,
) -> None:
    """The quarantined records: file, line/row, reason."""
    with _project(read_only=True) as project:
        df = project.quarantine(limit=None)
    table = Table(title=f"Quarantined records: {df.height} (showing {min(limit, df.height)})")
    for col in ("file", "line", "reason", "raw"):
        table.add_column(col, overflow="fold")
    for row in df.head(limit).select("file", "line", "reason", "raw").iter_rows():
        raw = "" if row[3] is None else str(row[3])
        table.add_row(str(row[0]), str(row[1]), str(row[2]), raw[:80] + ("…" if len(raw) > 80 else ""))
    _print(table)


@app.command(name="traits")
def traits_command(
    stats: Annotated[bool, typer.Option("--stats", help="Per trait: events counted, missing, rejected.")] = False,
) -> None:
    """The trait definitions; with --stats, diagnostics from the last compute."""
    if stats:
        with _project(read_only=True) as project:
            df = project.trait_stats()
            _warn(project)
        if df.is_empty():
            _OPTIONS.console.print("No trait diagnostics yet: run 'profiles compute' first.")
            return
        table = Table(title="Trait diagnostics (last compute)")
        for col in df.columns:
            table.add_column(col, overflow="fold")
        for row in df.iter_rows():
            table.add_row(*("" if v is None else str(v) for v in row))
        _print(table)
        return
    from engine.views import definition_text

    config = _config()
    table = Table(title=f"Traits of {config.name}")
    for col in ("name", "type", "event", "definition", "description"):
        table.add_column(col, overflow="fold")
    for t in config.traits:
        detail = definition_text(t)
        table.add_row(t.name, t.type, t.event, detail, t.description or "")
    _print(table)


# -- entry point ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 user error, 2 usage error)."""
    args = sys.argv[1:] if argv is None else list(argv)
    _OPTIONS.debug = "--debug" in args
    try:
        app(args=args, prog_name="profiles")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (ProfilesError, OSError, duckdb.Error) as exc:
        if _OPTIONS.debug:
            raise
        hint = "" if isinstance(exc, ProfilesError) else " (run with --debug for the traceback)"
        Console(stderr=True, soft_wrap=True).print(f"error: {exc}{hint}", markup=False, emoji=False, highlight=False)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
