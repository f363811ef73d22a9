"""Where the bundled sample data and starter project file are, installed or in a clone.

They ship as the package ``engine.bundled`` (mapped from the repository's ``data/`` folder by
``pyproject.toml``), so a plain ``pip install .`` carries them; in a source checkout that is not
installed, the ``data/`` folder beside the packages is used.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from engine.errors import ProfilesError

SAMPLE_EVENTS = "sample-events.ndjson.gz"
STARTER_CONFIG = "profiles.toml"


def bundled_file(name: str) -> Path:
    """The path of a bundled data file (``sample-events.ndjson.gz``, ``profiles.toml``)."""
    try:
        candidate = Path(str(resources.files("engine.bundled").joinpath(name)))
        if candidate.is_file():
            return candidate
    except ModuleNotFoundError:
        pass
    candidate = Path(__file__).resolve().parent.parent / "data" / name
    if candidate.is_file():
        return candidate
    raise ProfilesError(
        f"the bundled file {name} is missing from this installation; reinstall profiles "
        "(pip install --force-reinstall .)"
    )
