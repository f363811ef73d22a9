"""The export contract of ``cli.md``: one row per profile, identifiers, traits, prediction scores.

Reads the identity, trait and prediction tables in one DuckDB query; writes Parquet (``as_of`` in
the file's key-value metadata), CSV (a ``# as_of: ...`` first line, lists as JSON arrays, nulls as
empty fields) or NDJSON (native types; ``as_of`` in a ``<file>.meta.json`` sidecar, since NDJSON
has no place for a header that every reader skips). With predictions, ``predictions_as_of`` is
recorded beside ``as_of`` in the same places (a second ``#`` line in CSV): scores and trait values
are written by different stages and may be as of different instants (``engine/freshness.py``
warns when they are).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from engine.config import ProjectConfig
from engine.errors import ConfigError, StoreError
from engine.identity.asof import drop_temps, event_map, identifiers_as_of
from engine.store import Store, quote

FORMATS = ("parquet", "csv", "ndjson")
#: How CSV writes instants, alone or inside a list: ISO-8601 in UTC with microseconds.
CSV_DATETIME = "%Y-%m-%dT%H:%M:%S.%fZ"
_CSV_DATETIME_CHRONO = "%Y-%m-%dT%H:%M:%S%.6fZ"  # the same, in Polars' (chrono's) spelling


def json_default(value: object) -> str:
    """JSON for what ``json`` cannot write: instants as in CSV cells, anything else as text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime(CSV_DATETIME)
    return str(value)


def _require(store: Store, table: str, hint: str) -> None:
    if not store.has_table(table):
        raise StoreError(f"the store has no {table} yet: run {hint} first")


def traits_as_of(store: Store) -> datetime | None:
    """The ``as_of`` of the stored trait values (``None`` if traits were never computed)."""
    if not store.has_table("trait_runs"):
        return None
    row = store.first_row("SELECT as_of FROM trait_runs ORDER BY computed_at DESC LIMIT 1")
    return None if row is None else row[0]


def export_frame(store: Store, config: ProjectConfig) -> pl.DataFrame:
    """One row per profile, sorted by ``profile_id``, columns in the contract's order.

    The profiles and their identifiers are those of the identity as of the trait values' ``as_of``
    (the latest identity when traits were never computed, or when no event comes after it), so
    every row's identifiers and values describe the same profile at the same instant.
    """
    _require(store, "profiles", "'profiles resolve'")
    as_of = traits_as_of(store)
    emap = None if as_of is None else event_map(store, as_of)
    profiles, identifiers = "profiles", "profile_identifiers"
    if emap is not None and not emap.latest:
        profiles, identifiers = emap.profiles, identifiers_as_of(store, as_of)
    trait_names = [t.name for t in config.traits]
    trait_select = ""
    trait_join = ""
    if trait_names:
        _require(store, "trait_values", "'profiles compute'")
        have = {r[0] for r in store.con.execute("DESCRIBE trait_values").fetchall()}
        stale = [n for n in trait_names if n not in have]
        if stale:
            raise StoreError(
                f"trait values are out of date (no column for {', '.join(stale)}): "
                "run 'profiles compute'"
            )
        trait_select = "".join(f", tv.{quote(n)}" for n in trait_names)
        trait_join = "LEFT JOIN trait_values tv USING (profile_id)"
    pred_select = ""
    pred_join = ""
    if config.predictions:
        has_scores = store.has_table("prediction_scores")
        pivots = []
        for p in config.predictions:
            name = p.name.replace("'", "''")
            pivots.append(
                f"max(score) FILTER (WHERE prediction = '{name}') AS {quote(p.name)}, "
                f"max(percentile) FILTER (WHERE prediction = '{name}') AS {quote(p.name + '_percentile')}"
            )
            pred_select += f", ps.{quote(p.name)}, ps.{quote(p.name + '_percentile')}"
        source = "prediction_scores" if has_scores else (
            "(SELECT NULL::VARCHAR AS profile_id, NULL::VARCHAR AS prediction, "
            "NULL::DOUBLE AS score, NULL::DOUBLE AS percentile WHERE false)"
        )
        pred_join = (
            f"LEFT JOIN (SELECT profile_id, {', '.join(pivots)} FROM {source} GROUP BY profile_id) ps "
            "USING (profile_id)"
        )
    sql = f"""
        WITH ids AS (
            SELECT profile_id, list(type || ':' || value ORDER BY type || ':' || value) AS identifiers
            FROM {identifiers} GROUP BY profile_id
        )
        SELECT p.profile_id, coalesce(ids.identifiers, []::VARCHAR[]) AS identifiers
               {trait_select} {pred_select}
        FROM {profiles} p
        LEFT JOIN ids USING (profile_id)
        {trait_join}
        {pred_join}
        ORDER BY p.profile_id
    """
    try:
        return store.con.sql(sql).pl()
    finally:
        drop_temps(store)


@dataclass(frozen=True)
class Exported:
    """What :func:`write_export` wrote: the file and its number of profile rows."""

    path: Path
    rows: int


def _csv_ready(df: pl.DataFrame) -> pl.DataFrame:
    """Lists become JSON arrays; datetimes ISO-8601 in UTC; everything else as Polars writes it."""
    exprs = []
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.List):
            exprs.append(
                pl.col(name).map_elements(
                    lambda v: json.dumps(list(v), ensure_ascii=False, default=json_default),
                    return_dtype=pl.String,
                )
            )
        else:
            exprs.append(pl.col(name))
    return df.select(exprs)


def write_export(store: Store, config: ProjectConfig, out: Path, *, format: str | None = None) -> Exported:
    """Write the export to ``out``; the format defaults to the suffix (``.parquet``/``.csv``/``.ndjson``)."""
    fmt = (format or out.suffix.lstrip(".")).lower()
    if fmt == "jsonl":
        fmt = "ndjson"
    if format is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise ConfigError(
            f"cannot tell the export format of {out}: use --format {' | '.join(FORMATS)} "
            "or a .parquet/.csv/.ndjson suffix"
        )
    from engine.freshness import predictions_as_of

    df = export_frame(store, config)
    as_of = traits_as_of(store)
    as_of_text = "" if as_of is None else as_of.isoformat()
    scored_text = ", ".join(t.isoformat() for t in predictions_as_of(store, config))
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        table = df.to_arrow()
        meta = dict(table.schema.metadata or {})
        meta[b"as_of"] = as_of_text.encode()
        meta[b"profiles.project"] = config.name.encode()
        if config.predictions:
            meta[b"predictions_as_of"] = scored_text.encode()
        pq.write_table(table.replace_schema_metadata(meta), out)
    elif fmt == "csv":
        with out.open("w", encoding="utf-8", newline="") as fh:
            fh.write(f"# as_of: {as_of_text}\n")
            if config.predictions:
                fh.write(f"# predictions_as_of: {scored_text}\n")
            _csv_ready(df).write_csv(fh, datetime_format=_CSV_DATETIME_CHRONO)
    else:
        df.write_ndjson(out)
        sidecar = out.with_name(out.name + ".meta.json")
        sidecar.write_text(
            json.dumps(
                {"as_of": as_of_text, "project": config.name, "columns": df.columns}
                | ({"predictions_as_of": scored_text} if config.predictions else {}),
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return Exported(out, df.height)
