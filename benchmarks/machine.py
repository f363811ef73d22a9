"""What every benchmark result carries: the machine it ran on, and one way to publish it."""

from __future__ import annotations

import importlib
import json
import os
import platform
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
