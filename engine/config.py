"""``profiles.toml`` -> frozen objects, parsed once.

This module owns the file and the ``[project]`` table; it delegates ``[identity]`` to
:mod:`engine.identity.rules`, each ``[[traits]]`` to :mod:`traits.registry` and each
``[[predictions]]`` to :mod:`predictions.definitions`, so each concept validates its own keys.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

_TOP_LEVEL = {"project", "identity", "traits", "predictions"}
_PROJECT_KEYS = {"name", "store", "reports"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectConfig:
    """A parsed project file.

    Parameters
    ----------
    path
        The project file (``None`` for a configuration built in code).
    name
        ``project.name``.
    store
        The DuckDB file, resolved against the project file's folder.
    reports
        ``project.reports``: where prediction reports are written; ``None`` (not set): ``reports/``
        beside the store in use (:attr:`reports_dir`), so ``--store`` moves them with the store.
    identity
        The identity rules (:class:`engine.identity.rules.IdentityRules`).
    traits
        The trait definitions, in file order.
    predictions
        The prediction definitions, in file order.
    """

    path: Path | None
    name: str
    store: Path
    reports: Path | None
    identity: Any
    traits: tuple[Any, ...]
    predictions: tuple[Any, ...]

    @property
    def reports_dir(self) -> Path:
        """Where prediction reports go: ``project.reports``, else ``reports/`` beside the store."""
        return self.reports or self.store.parent / "reports"

    def trait(self, name: str) -> Any:
        """The trait definition called ``name``; ``ConfigError`` listing the known ones if none."""
        for t in self.traits:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.traits) or "none defined"
        raise ConfigError(f"no trait named {name!r} (known: {known})", path=self.path)


def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate ``profiles.toml``; every problem names the file, the table and the key."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(
            "project file not found; create one with 'profiles init' or pass --config PATH "
            "(without --config, --store PATH in a folder with no profiles.toml uses the defaults)",
            path=p,
        )
    if p.is_dir():
        raise ConfigError("is a folder, not a project file: pass its profiles.toml", path=p)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=p) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path=p) from None
    return parse_config(data, path=p)


def parse_config(data: dict[str, Any], *, path: Path | None = None, root: Path | None = None) -> ProjectConfig:
    """Validate an already-parsed TOML document (``root``: folder that relative paths start from)."""
    from engine.identity.rules import parse_identity
    from predictions.definitions import parse_predictions
    from traits.registry import parse_traits

    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(
            f"unknown section {unknown[0]!r} (valid: {', '.join(sorted(_TOP_LEVEL))})", path=path
        )
    project = data.get("project", {})
    if not isinstance(project, dict):
        raise ConfigError("[project] must be a table", path=path, section="project")
    bad = sorted(set(project) - _PROJECT_KEYS)
    if bad:
        raise ConfigError(
            f"unknown key (valid: {', '.join(sorted(_PROJECT_KEYS))})",
            path=path,
            section="project",
            key=bad[0],
        )
    base = root or (path.parent if path is not None else Path.cwd())
    name = project.get("name", base.name or "profiles")
    store = project.get("store", "profiles.duckdb")
    for key, value in (("name", name), ("store", store)):
        if not isinstance(value, str) or not value:
            raise ConfigError("must be a non-empty string", path=path, section="project", key=key)
    store_path = (base / store).resolve()
    reports = project.get("reports")
    if reports is not None and not isinstance(reports, str):
        raise ConfigError("must be a string (a folder)", path=path, section="project", key="reports")
    reports_path = (base / reports).resolve() if reports else None

    traits_tables = data.get("traits", [])
    if not isinstance(traits_tables, list):
        raise ConfigError("use [[traits]] (an array of tables)", path=path, section="traits")
    predictions_tables = data.get("predictions", [])
    if not isinstance(predictions_tables, list):
        raise ConfigError("use [[predictions]] (an array of tables)", path=path, section="predictions")
    identity_table = data.get("identity")
    if identity_table is not None and not isinstance(identity_table, dict):
        raise ConfigError("[identity] must be a table", path=path, section="identity")

    traits = parse_traits(traits_tables, path=path)
    predictions = parse_predictions(predictions_tables, path=path)
    columns = ["profile_id", "identifiers", *(t.name for t in traits)]
    for prediction in predictions:
        columns += [prediction.name, f"{prediction.name}_percentile"]
    dupes = sorted({n for n in columns if columns.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"the column {dupes[0]!r} would appear twice in exports: trait names, prediction names, "
            "'<prediction>_percentile', 'profile_id' and 'identifiers' must all differ",
            path=path,
        )
    return ProjectConfig(
        path=path,
        name=name,
        store=store_path,
        reports=reports_path,
        identity=parse_identity(identity_table, path=path),
        traits=traits,
        predictions=predictions,
    )


def definition_hash(semantic: dict[str, Any]) -> str:
    """A stable hash of a definition's semantic fields (not its description)."""
    text = json.dumps(semantic, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
