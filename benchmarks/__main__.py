"""``python -m benchmarks run``: every benchmark at one size, in fresh processes, summarised.

Why a runner: each ``benchmarks/bench_*.py`` measures one stage against its baselines; the
runner gives them the same data size, repeats each in a fresh interpreter (so peak RSS and
caches are the benchmark's own), takes medians, and writes one JSON file and one Markdown table
per run to ``benchmarks/results/<date>-<size>.{json,md}`` with the machine's facts.

    python -m benchmarks run --size 1m                 # all benchmarks, 3 runs each
    python -m benchmarks run --size 10m --only ingest  # one benchmark
    python -m benchmarks generate --events 1000000 --out benchmarks/cache/events-1m.ndjson
    python -m benchmarks plot                          # results/scaling.png from the summaries
    python -m benchmarks run --size 50m --repeat 1 --rss-budget 12 --only ingest   # one at a time
    python -m benchmarks clean --size 50m              # drop that size's stores, keep its NDJSON

The benchmarks share one generated NDJSON and one ingested store per size
(:mod:`benchmarks.datasets`), so they run in the order the data flows (ingest leaves the store
identity reads and, from ``datasets.BIG`` on, incremental derives its base store from; traits runs
last, since at 50M it takes that store over). ``--rss-budget`` kills a benchmark whose process
tree passes that many GiB (reported as failed, the others go on), caps DuckDB at half of it
(``PROFILES_MEMORY_LIMIT``: past that DuckDB spills to disk), and lets a benchmark cap its own
contenders (traits reports a baseline that does not fit as failed and runs the rest).

A run redraws ``results/scaling.png``: time and memory against size, from the newest summary
of each size (:mod:`benchmarks.plot`).

Each benchmark module exposes ``run(n_events, ...) -> dict`` (``cache_dir=`` is passed when the
function accepts it). Its result may nest contenders (dicts with ``seconds`` or
``wall_seconds``, ``peak_rss_mib`` and a rows-per-second figure) and top-level ``ratio_*`` /
``speedup_*`` numbers; the table shows each contender's medians and the ratios.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.datasets import BIG, existing_ndjson, leftovers, own_files
from benchmarks.machine import BUDGET_ENV, machine, run_capped
from benchmarks.plot import main as plot_main
from engine.store import MEMORY_ENV

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / "cache"
RESULTS = HERE / "results"
PLOT_NAME = "scaling.png"
SIZES = {"1m": 1_000_000, "10m": 10_000_000, "50m": 50_000_000}
_TIME_KEYS = ("seconds", "wall_seconds")
_RATE_KEYS = ("rows_per_s", "rows_per_second", "events_per_second", "events_per_s", "profiles_per_second")
#: The order the data flows between benchmarks (the others follow, by name).
ORDER = ("generate", "ingest", "identity", "incremental", "predictions", "traits")
_SKIP = {"machine", "goals", "goal", "predictions", "ratios", "agree", *_RATE_KEYS}


def parse_size(text: str) -> int:
    """``1m`` -> 1_000_000, ``200k`` -> 200_000, ``5000`` -> 5000."""
    value = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(value[-1:], 1)
    digits = value[:-1] if scale != 1 else value
    try:
        n = int(float(digits) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 1m, 10m, 50m, 200k)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return n


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _flow(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def discover() -> list[str]:
    """The benchmark names (``benchmarks/bench_<name>.py``), in the order the data flows."""
    return sorted((p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py")), key=_flow)


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One contender of one benchmark, medians over the runs."""

    benchmark: str
    contender: str
    runs: int
    seconds: float | None
    peak_rss_mib: float | None
    rows_per_s: float | None
    ratios: dict[str, float]
    note: str = ""


def contenders(result: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every nested dict that reports a time (or why it has none: ``failed``), with its dotted
    path (``"results.profiles"``)."""
    found: list[tuple[str, dict[str, Any]]] = []
    if any(isinstance(result.get(k), int | float) for k in _TIME_KEYS) or isinstance(result.get("failed"), str):
        found.append((prefix or "total", result))
    for key, value in result.items():
        if isinstance(value, dict) and key not in _SKIP:
            found += contenders(value, f"{prefix}.{key}" if prefix else key)
    return found


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = d.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratios(result: dict[str, Any]) -> dict[str, float]:
    """Top-level ``ratio*`` / ``speedup*`` numbers, and the entries of a ``ratios`` table."""
    found = {
        k: float(v) for k, v in result.items()
        if (k.startswith("ratio") or k.startswith("speedup")) and isinstance(v, int | float)
    }
    table = result.get("ratios")
    if isinstance(table, dict):
        found |= {k: float(v) for k, v in table.items() if isinstance(v, int | float)}
    return found


def _rate(result: dict[str, Any], path: str, contender: dict[str, Any]) -> float | None:
    """The contender's own rows/s, else its entry in a top-level ``rows_per_second`` table."""
    own = _first(contender, _RATE_KEYS)
    if own is not None:
        return own
    leaf = path.rsplit(".", 1)[-1]
    for key in _RATE_KEYS:
        table = result.get(key)
        if isinstance(table, dict) and isinstance(table.get(leaf), int | float):
            return float(table[leaf])
    return None


def summarise(name: str, results: list[dict[str, Any]]) -> list[Row]:
    """Medians per contender across runs; the ratios go on the first contender's row."""
    if not results:
        return []
    per_run_ratios = [_ratios(r) for r in results]
    ratios = {k: _median([r.get(k) for r in per_run_ratios]) for k in per_run_ratios[0]}
    rows = []
    paths = [path for path, _ in contenders(results[0])]
    for i, path in enumerate(paths):
        per_run = [(r, dict(contenders(r)).get(path, {})) for r in results]
        rows.append(
            Row(
                benchmark=name,
                contender=path,
                runs=len(results),
                seconds=_median([_first(d, _TIME_KEYS) for _, d in per_run]),
                peak_rss_mib=_median([_first(d, ("peak_rss_mib",)) for _, d in per_run]),
                rows_per_s=_median([_rate(r, path, d) for r, d in per_run]),
                ratios={k: v for k, v in ratios.items() if v is not None} if i == 0 else {},
                note="; ".join(sorted({d["failed"] for _, d in per_run if isinstance(d.get("failed"), str)})),
            )
        )
    return rows


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown(rows: list[Row], *, events: int, machine: dict[str, Any], when: str) -> str:
    """The results as a Markdown table with the machine's facts."""
    lines = [
        f"# Benchmarks: {events:,} events ({when})",
        "",
        "| benchmark | contender | runs | wall s (median) | peak RSS MiB | rows/s | vs baselines |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in r.ratios.items()) or ""
        if r.note:
            ratios = f"failed: {r.note}" + (f"; {ratios}" if ratios else "")
        lines.append(
            f"| {r.benchmark} | {r.contender} | {r.runs} | {_fmt(r.seconds)} | {_fmt(r.peak_rss_mib, 0)} "
            f"| {_fmt(r.rows_per_s, 0)} | {ratios} |"
        )
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), ""]
    return "\n".join(lines)


def _child(name: str, events: int, out: Path) -> None:
    """Inside the fresh interpreter: call the benchmark's ``run`` and save its result."""
    module = importlib.import_module(f"benchmarks.bench_{name}")
    kwargs: dict[str, Any] = {}
    if "cache_dir" in inspect.signature(module.run).parameters:
        kwargs["cache_dir"] = CACHE
    started = time.perf_counter()
    result = module.run(events, **kwargs)
    result = dict(result or {})
    result.setdefault("runner_wall_seconds", round(time.perf_counter() - started, 3))
    out.write_text(json.dumps(result, default=str), encoding="utf-8")


def _child_env(budget_gib: float | None) -> dict[str, str]:
    """The children's environment: the RSS budget, and DuckDB capped at half of it."""
    env = dict(os.environ)
    if budget_gib is not None:
        env[BUDGET_ENV] = str(round(budget_gib * 1024))
        env.setdefault(MEMORY_ENV, f"{max(1, round(budget_gib * 1024 / 2))}MiB")
    return env


def run_once(name: str, events: int, *, log: Path, budget_gib: float | None = None) -> dict[str, Any]:
    """One run of one benchmark in a fresh process; its output goes to ``log``.

    With ``budget_gib``, the run is killed when its process tree passes that resident memory
    (so one benchmark that does not fit fails alone instead of starving the shared machine).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        with open(log, "a", encoding="utf-8") as sink:
            sink.write(f"--- {datetime.now(UTC).isoformat(timespec='seconds')} {name} at {events:,} events\n")
            sink.flush()
            proc = run_capped(
                [sys.executable, "-m", "benchmarks", "_child", name, str(events), str(out)],
                budget_mib=None if budget_gib is None else budget_gib * 1024,
                cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=_child_env(budget_gib),
            )
        if proc.over_budget:
            raise RuntimeError(
                f"benchmark {name} went over the RSS budget of {budget_gib} GiB "
                f"(killed at {proc.peak_tree_mib:,.0f} MiB); see {log}"
            )
        if proc.returncode != 0 or not out.exists():
            tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
            raise RuntimeError(f"benchmark {name} failed (exit {proc.returncode}); see {log}:\n{tail}")
        return json.loads(out.read_text(encoding="utf-8"))


def generate_once(events: int, *, log: Path) -> dict[str, Any]:
    """Write the shared NDJSON of this size (:func:`benchmarks.datasets.ndjson`) in a fresh
    process, timed once per size: the timing is cached next to the data.

    The benchmarks read that file (or build their stores from it), so the generator's time is
    the time to write it: plain NDJSON below ``datasets.BIG``, gzipped from there on.
    """
    cached = CACHE / f"generate-{size_label(events)}.json"
    if cached.exists():  # the timing of the run that wrote the file, shown in every summary
        return json.loads(cached.read_text(encoding="utf-8")) | {"cached": cached.name}
    written = existing_ndjson(events, CACHE)
    if written is not None:
        return {"cached": str(written)}  # written before timings were kept: nothing to report
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as sink:
        proc = subprocess.run(
            [sys.executable, "-c",
             "import json,sys,time\n"
             "from benchmarks.datasets import ndjson\n"
             "from benchmarks.machine import peak_rss_mib\n"
             "t=time.perf_counter(); c=time.process_time(); p=ndjson(int(sys.argv[1]))\n"
             "s=time.perf_counter()-t\n"
             "print(json.dumps({'seconds': round(s,3), 'cpu_seconds': round(time.process_time()-c,2), "
             "'peak_rss_mib': round(peak_rss_mib(),1), 'rows_per_s': round(int(sys.argv[1])/s), "
             "'file': p.name, 'bytes': p.stat().st_size}))",
             str(events)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=sink, text=True, check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the generator failed (exit {proc.returncode}); see {log}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    cached.write_text(json.dumps(result) + "\n", encoding="utf-8")
    return result


def _keep_earlier(path: Path, raw: dict[str, Any], rows: list[Row], failures: dict[str, str]) -> list[Row]:
    """With ``--only``, the day's summary of this size keeps the benchmarks not re-run.

    So ``--only ingest`` then ``--only traits`` build one summary (and one point per size in the
    plot) instead of the second clobbering the first. ``raw`` and ``failures`` are completed in
    place; the returned rows are ordered by benchmark.
    """
    if not path.exists():
        return rows
    earlier = json.loads(path.read_text(encoding="utf-8"))
    before, failed_before = earlier.get("runs", {}), earlier.get("failures", {})
    kept = [name for name in {**before, **failed_before} if name not in raw and name not in failures]
    for name in kept:
        if name in before:
            raw[name] = before[name]
        if name in failed_before:
            failures[name] = failed_before[name]
    carried = [Row(**r) for r in earlier.get("table", []) if r["benchmark"] in kept]
    return sorted(rows + carried, key=lambda r: r.benchmark)


def run(
    events: int, *, only: list[str] | None = None, repeat: int = 3, results_dir: Path = RESULTS,
    budget_gib: float | None = None,
) -> dict[str, Any]:
    """Run the benchmarks at ``events``; write ``<date>-<size>.json`` and ``.md``; return the summary."""
    names = discover()
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"error: unknown benchmark {unknown[0]!r} (known: {', '.join(names)})")
        names = [n for n in names if n in only]
    results_dir.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    stem = results_dir / f"{when}-{size_label(events)}"
    log = stem.with_suffix(".log")
    facts = machine()
    raw: dict[str, list[dict[str, Any]]] = {}
    rows: list[Row] = []
    generated = generate_once(events, log=log)
    if "seconds" in generated:
        raw["generate"] = [generated]
        rows += summarise("generate", [generated])
    failures: dict[str, str] = {}
    for name in names:
        print(f"{name}: {repeat} run(s) of {events:,} events ...", file=sys.stderr, flush=True)
        try:
            raw[name] = [run_once(name, events, log=log, budget_gib=budget_gib) for _ in range(repeat)]
        except RuntimeError as exc:  # one broken benchmark must not lose the others' results
            failures[name] = str(exc).splitlines()[0]
            print(f"error: {exc}", file=sys.stderr)
            rows.append(Row(benchmark=name, contender="FAILED (see the .log)", runs=0, seconds=None,
                            peak_rss_mib=None, rows_per_s=None, ratios={}))
            continue
        finally:
            if events >= BIG:  # the disk is the limit at this size: the next benchmark needs the room
                for path in own_files(name, events, CACHE):
                    path.unlink(missing_ok=True)
                    print(f"deleted {path.name} ({name}'s own cache: disk is short at this size)", file=sys.stderr)
        rows += summarise(name, raw[name])
    if only:
        rows = _keep_earlier(stem.with_suffix(".json"), raw, rows, failures)
    facts["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    summary = {
        "events": events,
        "date": when,
        "repeat": repeat,
        "rss_budget_gib": budget_gib,
        "machine": facts,
        "table": [
            {"benchmark": r.benchmark, "contender": r.contender, "runs": r.runs, "seconds": r.seconds,
             "peak_rss_mib": r.peak_rss_mib, "rows_per_s": r.rows_per_s, "ratios": r.ratios, "note": r.note}
            for r in rows
        ],
        "runs": raw,
        "failures": failures,
    }
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    table = markdown(rows, events=events, machine=facts, when=when)
    stem.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    plot_main(results_dir, results_dir / PLOT_NAME)
    return summary


def clean(events: int, cache: Path = CACHE) -> list[Path]:
    """Delete the cached stores, splits and Parquet files of one size; its NDJSON stays."""
    gone = leftovers(events, cache)
    for path in gone:
        path.unlink(missing_ok=True)
        print(f"deleted {path}")
    kept = existing_ndjson(events, cache)
    print(f"kept {kept}" if kept else f"no NDJSON of {events:,} events")
    return gone


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:
        _child(argv[1], int(argv[2]), Path(argv[3]))
        return
    if argv[:1] == ["generate"]:
        from benchmarks.generate import main as generate_main

        generate_main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="write generated events (see python -m benchmarks.generate -h)")
    p_run = sub.add_parser("run", help="run the benchmarks and write results/<date>-<size>.{json,md}")
    p_run.add_argument("--size", type=parse_size, default=SIZES["1m"], help="1m, 10m, 50m (or e.g. 200k)")
    p_run.add_argument("--only", action="append", help="a benchmark name (repeatable): " + ", ".join(discover()))
    p_run.add_argument("--repeat", type=int, default=3, help="runs per benchmark (median reported)")
    p_run.add_argument("--results", type=Path, default=RESULTS, help="where to write (default benchmarks/results)")
    p_run.add_argument("--rss-budget", type=float, default=None, metavar="GIB",
                       help="kill a benchmark over this resident memory (GiB); DuckDB is capped at half")
    p_clean = sub.add_parser("clean", help="delete one size's cached stores and splits (its NDJSON stays)")
    p_clean.add_argument("--size", type=parse_size, required=True)
    p_plot = sub.add_parser("plot", help="draw time and memory against size from the newest summaries")
    p_plot.add_argument("--results", type=Path, default=RESULTS, help="where the summaries are")
    p_plot.add_argument("--out", type=Path, default=None, help=f"the PNG (default <results>/{PLOT_NAME})")
    args = parser.parse_args(argv)
    if args.command == "plot":
        plot_main(args.results, args.out or args.results / PLOT_NAME)
        return
    if args.command == "clean":
        clean(args.size)
        return
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    summary = run(args.size, only=args.only, repeat=args.repeat, results_dir=args.results, budget_gib=args.rss_budget)
    if summary["failures"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
