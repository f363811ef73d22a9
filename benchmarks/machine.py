"""The facts every benchmark result records about the machine it ran on."""

from __future__ import annotations

import importlib
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
