"""What every benchmark result carries: the machine it ran on, and one way to publish it."""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """What the numbers depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import psutil

        facts["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    for lib in ("duckdb", "polars", "pyarrow", "numpy", "sklearn"):
        try:
            facts[lib] = importlib.import_module(lib).__version__
        except ImportError:
            continue
    facts["load_average"] = [round(x, 2) for x in os.getloadavg()]
    facts["platform"] = platform.platform()
    return facts


def peak_rss_mib() -> float:
    """This process's own peak resident memory, in MiB.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` keeps, across ``exec``, the high-water mark of the
    memory a forked worker inherited from its parent: a worker started by a parent that had just
    built a 10M-event store reported the parent's 7.6 GiB. Linux's ``VmHWM`` counts the
    worker's own address space only; elsewhere ``ru_maxrss`` is the fallback.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def publish(result: dict[str, Any], json_path: Path | None) -> dict[str, Any]:
    """Print ``result`` as JSON and, given a path, write it there too (results are committed)."""
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n", encoding="utf-8")
    return result


#: The environment variable through which the runner passes its RSS budget to the benchmarks
#: (each may cap its own workers below it); unset means no budget.
BUDGET_ENV = "BENCH_RSS_BUDGET_MIB"


def rss_budget_mib() -> float | None:
    """The RSS budget the runner set for this benchmark, if any."""
    value = os.environ.get(BUDGET_ENV)
    return float(value) if value else None


@dataclass(frozen=True, slots=True)
class Capped:
    """How a capped subprocess ended: its exit code, output, and whether the budget killed it."""

    returncode: int
    stdout: str
    stderr: str
    over_budget: bool
    peak_tree_mib: float


def _tree_rss_mib(proc: Any) -> float:
    """Resident memory of ``proc`` and every descendant (workers fork their own workers)."""
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def run_worker(cmd: list[str], name: str, *, cwd: Path | None = None) -> dict[str, Any]:
    """One benchmark contender in a fresh process, its result the JSON of its last stdout line.

    Under the runner's RSS budget (``--rss-budget``, the big sizes) a contender that passes 90%
    of it is killed, and one that fails otherwise (a full disk, DuckDB out of memory) is reported
    as ``failed`` with the end of its error: either way the others still run and keep their
    results (one failed contender of a 50M run must not cost the hour the others took). Without
    a budget (development runs, tests) a failure stops the benchmark: there, it is a bug.
    """
    budget = rss_budget_mib()
    out = run_capped(cmd, budget_mib=None if budget is None else 0.9 * budget, cwd=cwd)
    failed = {"events": 0, "seconds": None, "cpu_seconds": None, "peak_rss_mib": out.peak_tree_mib}
    if out.over_budget:
        return {"failed": f"over the RSS budget: killed at {out.peak_tree_mib:,.0f} MiB", **failed}
    if out.returncode != 0:
        if budget is None:
            raise RuntimeError(f"benchmark worker {name!r} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
        error = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        return {"failed": f"exit {out.returncode}: {error[:300]}", **failed}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_capped(
    cmd: list[str], *, budget_mib: float | None, cwd: Path | None = None, stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE, env: dict[str, str] | None = None, poll_seconds: float = 0.5,
) -> Capped:
    """Run ``cmd``; kill its whole process tree if its resident memory passes ``budget_mib``.

    Why: the machine is shared, and a contender that does not fit (pandas holding 50M rows) must
    fail alone, reported as over budget, instead of pushing everyone's processes into the
    out-of-memory killer. ``stdout``/``stderr`` are ``subprocess.PIPE`` (captured) or files.
    """
    import psutil

    with tempfile.TemporaryFile("w+") as out_tmp, tempfile.TemporaryFile("w+") as err_tmp:
        sink_out = out_tmp if stdout is subprocess.PIPE else stdout
        sink_err = err_tmp if stderr is subprocess.PIPE else stderr
        child = subprocess.Popen(cmd, cwd=cwd, stdout=sink_out, stderr=sink_err, env=env, text=True)
        watched = psutil.Process(child.pid)
        peak, over = 0.0, False
        while child.poll() is None:
            try:
                peak = max(peak, _tree_rss_mib(watched))
            except psutil.Error:
                pass
            if budget_mib is not None and peak > budget_mib:
                over = True
                for p in [*watched.children(recursive=True), watched]:
                    try:
                        p.kill()
                    except psutil.Error:
                        continue
                child.wait()
                break
            try:
                child.wait(timeout=poll_seconds)
            except subprocess.TimeoutExpired:
                continue
        out_tmp.seek(0)
        err_tmp.seek(0)
        return Capped(child.returncode, out_tmp.read(), err_tmp.read(), over, round(peak, 1))
