"""``profiles watch DIR``: the event-driven loop (poll a folder; new file -> ingest, resolve, compute).

Each new or changed file is ingested (``ingest.load.ingest_paths``; a file whose content is
already in the ingest log is a no-op), then identity is resolved and traits are computed
incrementally (``compute_traits(full=False)``), so a file of new events costs work in proportion to
itself. Every step is logged with its time and counts.

Stopping and resuming: the first Ctrl-C (SIGINT) lets the step in progress finish and then stops;
a second one interrupts at once, and the step's transaction rolls back (ingest writes one
transaction per file, resolve and compute one each). Nothing is lost or counted twice: on start the
loop catches up (resolve, compute) and the ingest log knows which file contents are already in.
A file is taken once its size and modification time are unchanged for one poll, so a file still
being written is not read half-way (writers should still prefer write-then-rename).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from engine.errors import InputError

#: A file's identity between polls: size and modification time (nanoseconds).
Stamp = tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchReport:
    """What one ``watch`` session did before it stopped."""

    folder: str
    cycles: int
    files: int
    events: int
    computes: int
    seconds: float
    stopped_by: str

    def __rich__(self) -> Table:
        table = Table(title=f"Watched {self.folder} for {self.seconds:.1f} s", show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for label, value in (("polls", self.cycles), ("files ingested", self.files),
                             ("events ingested", self.events), ("trait updates", self.computes)):
            table.add_row(label, f"{value:,}")
        table.add_row("stopped by", self.stopped_by)
        return table


class _Stop:
    """SIGINT once: finish the step and stop; twice: ``KeyboardInterrupt`` (transactions roll back)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def _sigint(handler: _Stop) -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler, Ctrl-C raises as usual
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def candidate_files(folder: Path) -> dict[Path, Stamp]:
    """The ingestible files under ``folder`` (recursive; hidden files and folders skipped)."""
    from ingest.readers import detect_format

    out: dict[Path, Stamp] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        try:
            detect_format(path)
        except InputError:
            continue
        st = path.stat()
        out[path] = (st.st_size, st.st_mtime_ns)
    return out


def watch(
    project: Any,
    folder: str | Path,
    *,
    interval: float = 2.0,
    as_of: datetime | None = None,
    log: Callable[[str], None] = print,
    max_cycles: int | None = None,
) -> WatchReport:
    """Poll ``folder`` every ``interval`` seconds until SIGINT (or ``max_cycles`` polls).

    Parameters
    ----------
    project
        An open :class:`engine.project.Project` (its store, identity rules and traits).
    as_of
        A fixed ``as_of`` for every compute; ``None`` means the time of each compute.
    log
        Receives one line per step (time, counts).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", path=folder)
    stop = _Stop()
    started = time.perf_counter()
    seen: dict[Path, Stamp] = {}
    pending: dict[Path, Stamp] = {}
    cycles = files = events = computes = 0

    def step(what: str, fn: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        t = time.perf_counter()
        out = fn()
        log(f"{datetime.now(UTC):%H:%M:%S} {what}: {describe(out)} ({time.perf_counter() - t:.2f} s)")
        return out

    def update() -> None:
        nonlocal computes
        step("resolve", project.resolve,
             lambda r: "up to date" if r.up_to_date else f"{r.profiles:,} profiles, {r.merges:,} merges")
        if stop.requested:
            return
        when = as_of or datetime.now(UTC)
        step("compute", lambda: project.compute(as_of=when),
             lambda r: ("full" if r.full else f"{r.merged:,} profiles merged, {r.recomputed:,} recomputed, "
                        f"{r.dropped:,} dropped") + f", {r.profiles:,} profiles as of {r.as_of.isoformat()}")
        computes += 1

    with _sigint(stop):
        log(f"watching {folder} every {interval:g} s (Ctrl-C stops after the current step)")
        update()  # catch up with whatever an earlier session left
        while not stop.requested and (max_cycles is None or cycles < max_cycles):
            cycles += 1
            current = candidate_files(folder)
            # a file is taken when it looks the same as on the previous poll (not being written)
            ready = [p for p, s in current.items() if seen.get(p) != s and pending.get(p) == s]
            pending = {p: s for p, s in current.items() if seen.get(p) != s}
            ingested = 0
            for path in ready:
                if stop.requested:
                    break
                report = step(f"ingest {path.name}", lambda path=path: project.ingest(path),
                              lambda r: f"{r.ingested:,} events, {r.duplicates:,} duplicates, "
                                        f"{r.quarantined:,} quarantined")
                seen[path] = current[path]
                pending.pop(path, None)
                files += 1
                ingested += report.ingested
            events += ingested
            if ingested and not stop.requested:
                update()
            if not stop.requested:
                _sleep(interval, stop)
    reason = "Ctrl-C" if stop.requested else "cycle limit"
    log(f"stopped ({reason}); restart to resume where this left off")
    return WatchReport(folder=str(folder), cycles=cycles, files=files, events=events, computes=computes,
                       seconds=time.perf_counter() - started, stopped_by=reason)


def _sleep(seconds: float, stop: _Stop) -> None:
    """Sleep in small slices so a Ctrl-C stops the loop promptly."""
    end = time.monotonic() + seconds
    while not stop.requested and (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
