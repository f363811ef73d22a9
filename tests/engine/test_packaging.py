"""A plain ``pip install .`` must carry the sample data and starter file (``profiles demo`` needs them)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("profiles.toml", "sample-events.ndjson.gz")


def _is_editable(dist: importlib.metadata.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    return bool(text) and json.loads(text).get("dir_info", {}).get("editable", False)


def test_package_data_patterns_cover_the_bundled_files():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["engine.bundled"] == "data"
    patterns = config["package-data"]["engine.bundled"]
    for name in SHIPPED:
        assert (ROOT / "data" / name).is_file(), name
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name


def test_an_installed_distribution_contains_the_bundled_files():
    # Look in site-packages only: a build leaves profiles.egg-info in the source tree, which
    # lists source paths and would shadow the installed distribution's record.
    site = sysconfig.get_paths()["purelib"]
    dist = next(importlib.metadata.distributions(name="profiles", path=[site]))
    if _is_editable(dist):
        return  # an editable install reads data/ in place; the pattern test above covers it
    files = {str(f) for f in dist.files or ()}
    for name in SHIPPED:
        assert f"engine/bundled/{name}" in files, sorted(files)[:20]
