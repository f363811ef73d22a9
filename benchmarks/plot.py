"""``python -m benchmarks plot``: how time and memory grow with the number of events.

Why a plot: the runner's tables give one size each; a reader deciding whether the engine fits
their data wants the slope. This reads the runner's summaries (``results/<date>-<size>.json``,
the newest per size), and draws, per benchmark, the median wall time and the peak RSS of every
contender against the event count, on log-log axes (a straight line of slope 1 is linear cost).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a batch machine

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

_SUMMARY = re.compile(r"^(\d{4}-\d{2}-\d{2})-(\d+[km]?)\.json$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One contender of one benchmark at one size."""

    benchmark: str
    contender: str
    events: int
    seconds: float | None
    peak_rss_mib: float | None


def latest_summaries(results_dir: Path) -> list[dict[str, Any]]:
    """The newest runner summary per event count (file names sort by date)."""
    newest: dict[int, tuple[str, dict[str, Any]]] = {}
    for path in sorted(results_dir.glob("*.json")):
        match = _SUMMARY.match(path.name)
        if not match:
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        if "table" not in summary or "events" not in summary:
            continue
        events = int(summary["events"])
        if events not in newest or match.group(1) >= newest[events][0]:
            newest[events] = (match.group(1), summary)
    return [summary for _, (_, summary) in sorted(newest.items())]


def points(summaries: list[dict[str, Any]]) -> list[Point]:
    """Every measured row of the summaries; failed benchmarks (no time) are left out."""
    return [
        Point(
            benchmark=row["benchmark"],
            contender=row["contender"],
            events=int(summary["events"]),
            seconds=row.get("seconds"),
            peak_rss_mib=row.get("peak_rss_mib"),
        )
        for summary in summaries
        for row in summary["table"]
        if row.get("seconds") is not None
    ]


def plot(found: list[Point], out: Path) -> Path:
    """One row of panels per benchmark: wall time (left) and peak RSS (right) against events."""
    if not found:
        raise SystemExit("error: no runner results to plot; run 'python -m benchmarks run --size 1m' first")
    benchmarks = sorted({p.benchmark for p in found})
    fig, axes = plt.subplots(len(benchmarks), 2, figsize=(11, 3.2 * len(benchmarks)), squeeze=False)
    for (time_ax, rss_ax), name in zip(axes, benchmarks, strict=True):
        mine = [p for p in found if p.benchmark == name]
        for contender in sorted({p.contender for p in mine}):
            line = sorted((p for p in mine if p.contender == contender), key=lambda p: p.events)
            xs = [p.events for p in line]
            time_ax.plot(xs, [p.seconds for p in line], marker="o", label=contender)
            rss = [(p.events, p.peak_rss_mib) for p in line if p.peak_rss_mib is not None]
            if rss:
                rss_ax.plot(*zip(*rss, strict=True), marker="o", label=contender)
        time_ax.set_title(f"{name}: wall time (median)")
        time_ax.set_ylabel("seconds")
        rss_ax.set_title(f"{name}: peak RSS")
        rss_ax.set_ylabel("MiB")
        for ax in (time_ax, rss_ax):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("events")
            ax.grid(True, which="both", alpha=0.3)
        time_ax.legend(fontsize="x-small")
    sizes = ", ".join(f"{e:,}" for e in sorted({p.events for p in found}))
    fig.suptitle(f"profiles benchmarks: cost against data size ({sizes} events)")
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # leave the title its own line
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(results_dir: Path, out: Path) -> Path:
    """Plot the newest summary of each size in ``results_dir`` to ``out``."""
    written = plot(points(latest_summaries(results_dir)), out)
    print(f"wrote {written}")
    return written
