"""Whether what ``show`` and ``export`` read is up to date with the store and the project file.

Trait values, profiles and scores are each written by their own stage. Between stages the store can
move on: new files ingested, a definition edited, traits recomputed at another ``as_of`` than the
scores. Reading then still works (the values are the last ones computed), but it must not be
silent: these are the warnings that the CLI prints and the Python API returns.
"""

from __future__ import annotations

from datetime import datetime

from engine.config import ProjectConfig
from engine.store import Store


def _resolve_lag(store: Store) -> int:
    """Events of ingests that identity resolution has not seen yet."""
    if not store.has_table("identity_ingests"):
        return 0
    row = store.first_row(
        "SELECT coalesce(sum(ingested), 0) FROM ingest_log "
        "WHERE ingested > 0 AND ingest_id NOT IN (SELECT ingest_id FROM identity_ingests)"
    )
    return int(row[0]) if row else 0


def _latest_trait_run(store: Store) -> tuple[datetime, str, datetime] | None:
    if not store.has_table("trait_runs"):
        return None
    return store.first_row(
        "SELECT as_of, definitions_hash, computed_at FROM trait_runs ORDER BY computed_at DESC LIMIT 1"
    )


def predictions_as_of(store: Store, config: ProjectConfig) -> list[datetime]:
    """The distinct ``as_of`` of the stored runs of the project's predictions, oldest first."""
    if not config.predictions or not store.has_table("prediction_runs"):
        return []
    names = [p.name for p in config.predictions]
    rows = store.con.execute(
        f"SELECT DISTINCT as_of FROM prediction_runs WHERE prediction IN ({', '.join('?' * len(names))}) "
        "ORDER BY as_of",
        names,
    ).fetchall()
    return [r[0] for r in rows]


def stale_warnings(store: Store, config: ProjectConfig) -> list[str]:
    """One sentence per way the stored results lag behind the events or the project file."""
    from engine.compute import definitions_hash

    warnings = []
    lag = _resolve_lag(store)
    if lag:
        warnings.append(
            f"{lag} ingested event(s) are not resolved into profiles yet: run 'profiles resolve' "
            "and 'profiles compute'"
        )
    run = _latest_trait_run(store)
    if config.traits and run is not None:
        as_of, hashed, computed_at = run
        if hashed != definitions_hash(config.traits):
            warnings.append(
                f"the trait definitions in {config.path or 'the project file'} changed since the "
                "last compute: run 'profiles compute'"
            )
        row = store.first_row(
            "SELECT coalesce(sum(ingested), 0) FROM ingest_log WHERE finished_at > ?", [computed_at]
        )
        newer = int(row[0]) if row else 0
        if newer and not lag:
            warnings.append(
                f"{newer} event(s) were ingested after the last compute (as of {as_of.isoformat()}): "
                "run 'profiles compute'"
            )
        scored = predictions_as_of(store, config)
        if scored and scored != [as_of]:
            when = ", ".join(t.isoformat() for t in scored)
            warnings.append(
                f"prediction scores are as of {when} but trait values as of {as_of.isoformat()}: "
                "run 'profiles predict' with the same --as-of as 'profiles compute'"
            )
    return warnings
