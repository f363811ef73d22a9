"""The DuckDB store: the system of record, its versioned schema, migrations and transactions.

One DuckDB file holds everything: accepted events, the ingest log, the quarantine, the identity
tables, trait values and predictions. The schema is versioned in ``meta``; opening an older store
migrates it in one transaction, opening a newer one says which version of profiles to use.

Hot-path property columns
-------------------------
Events keep their raw ``properties`` / ``traits`` / ``context`` as JSON. Trait definitions read a
handful of properties millions of times, so the store exposes each property a definition reads as
a *derived column* of ``events``: a SQL expression over the row, registered once in
``derived_columns``, added with ``ALTER TABLE``, back-filled once, and computed by every later
ingest for its new rows. Trait computation then scans plain typed columns and never parses JSON.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from engine.errors import StoreError

SCHEMA_VERSION = 2


def id_hash_sql(expr: str) -> str:
    """The ``events.id_hash`` of a ``message_id`` expression: its md5's first 8 bytes (little-endian).

    Why md5 and not DuckDB's ``hash``: the value is stored and compared across runs (ingest's
    duplicate check probes it), so it must not change with the DuckDB version; ``hash`` is not
    promised stable. ``md5_number`` masked is about 6x cheaper than ``md5_number_lower``.
    """
    return f"(md5_number({expr}) & 18446744073709551615::UHUGEINT)::UBIGINT"


def id_hash(message_id: str) -> int:
    """:func:`id_hash_sql` in Python, for the ids ingest derives in Python (``derived-...``).

    Examples
    --------
    >>> id_hash("abc")
    12704604231530709392
    """
    return int.from_bytes(hashlib.md5(message_id.encode("utf-8")).digest()[:8], "little")


#: An environment variable capping DuckDB's memory for every store this process opens (a DuckDB
#: size such as ``6GiB``): past it DuckDB spills to ``<store>.tmp`` next to the file, so a job
#: sharing a machine stays inside its share. Unset: DuckDB's default (80% of the RAM).
MEMORY_ENV = "PROFILES_MEMORY_LIMIT"
_SIZE = re.compile(r"\s*\d+(\.\d+)?\s*(b|bytes|kb|mb|gb|tb|kib|mib|gib|tib)?\s*", re.IGNORECASE)

#: Base DDL of every table, in creation order. Later issues add their tables here.
TABLES: dict[str, str] = {
    "meta": """
        CREATE TABLE IF NOT EXISTS meta (
            key VARCHAR PRIMARY KEY,
            value VARCHAR NOT NULL
        )""",
    # One row per accepted message. message_id is unique by construction: ingest anti-joins.
    "events": """
        CREATE TABLE IF NOT EXISTS events (
            -- uncompressed: unique ids gain little from DuckDB's string compression, whose
            -- analysis cost a fifth of the insert's CPU (docs/store.md); scans get cheaper too
            message_id VARCHAR USING COMPRESSION uncompressed NOT NULL,
            type VARCHAR NOT NULL,              -- track | identify | alias | page | screen | group
            event VARCHAR,                      -- track: event name; page: 'Page Viewed'; screen: 'Screen Viewed'
            name VARCHAR,                       -- page / screen name
            timestamp TIMESTAMPTZ NOT NULL,     -- the event time (events.md), UTC microseconds
            user_id VARCHAR,
            anonymous_id VARCHAR USING COMPRESSION uncompressed,
            previous_id VARCHAR,
            group_id VARCHAR,
            original_timestamp TIMESTAMPTZ,
            sent_at TIMESTAMPTZ,
            received_at TIMESTAMPTZ,
            properties JSON USING COMPRESSION zstd,   -- zstd: half the write CPU of the default, smaller
            traits JSON USING COMPRESSION zstd,
            context JSON USING COMPRESSION zstd,
            raw JSON USING COMPRESSION zstd NOT NULL, -- the whole message, lossless
            payload_hash VARCHAR USING COMPRESSION uncompressed NOT NULL, -- md5 of raw (sha256 before 2026-11-23): tells conflicting duplicates apart
            ingest_id BIGINT NOT NULL,
            source_line BIGINT,
            -- id_hash_sql(message_id): ingest's duplicate check probes it instead of the ids
            -- (docs/store.md); NULL in rows written by other tools until the next ingest fills it
            id_hash UBIGINT USING COMPRESSION uncompressed
        )""",
    "ingest_log": """
        CREATE TABLE IF NOT EXISTS ingest_log (
            ingest_id BIGINT PRIMARY KEY,
            path VARCHAR NOT NULL,
            format VARCHAR,
            size_bytes BIGINT,
            content_hash VARCHAR NOT NULL,
            records BIGINT,
            ingested BIGINT,
            duplicates BIGINT,
            conflicts BIGINT,
            quarantined BIGINT,
            status VARCHAR NOT NULL,            -- ingested | partial | unreadable | empty (docs/ingest.md)
            message VARCHAR,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ
        )""",
    "quarantine": """
        CREATE TABLE IF NOT EXISTS quarantine (
            ingest_id BIGINT NOT NULL,
            source_file VARCHAR NOT NULL,
            line BIGINT,                        -- line (NDJSON), record index (JSON/Avro) or row (CSV/Parquet)
            raw VARCHAR,                        -- at most 32 KiB of the record as read
            reason VARCHAR NOT NULL,
            quarantined_at TIMESTAMPTZ NOT NULL
        )""",
    "duplicate_conflicts": """
        CREATE TABLE IF NOT EXISTS duplicate_conflicts (
            message_id VARCHAR NOT NULL,
            ingest_id BIGINT NOT NULL,
            source_file VARCHAR NOT NULL,
            line BIGINT,
            payload_hash VARCHAR NOT NULL
        )""",
    "derived_columns": """
        CREATE TABLE IF NOT EXISTS derived_columns (
            column_name VARCHAR PRIMARY KEY,
            sql_type VARCHAR NOT NULL,
            expression VARCHAR NOT NULL
        )""",
    # predictions: one row per (prediction, profile); score/percentile NULL for ineligible profiles.
    "prediction_scores": """
        CREATE TABLE IF NOT EXISTS prediction_scores (
            prediction VARCHAR NOT NULL,
            profile_id VARCHAR NOT NULL,
            score DOUBLE,
            percentile DOUBLE,
            model VARCHAR,
            as_of TIMESTAMPTZ NOT NULL
        )""",
    # predictions: one row per prediction per run (the last run replaces the previous one).
    "prediction_runs": """
        CREATE TABLE IF NOT EXISTS prediction_runs (
            prediction VARCHAR NOT NULL,
            as_of TIMESTAMPTZ NOT NULL,
            status VARCHAR NOT NULL,            -- scored | skipped
            model VARCHAR,
            reason VARCHAR,                     -- why this model, or what is missing when skipped
            definition_hash VARCHAR NOT NULL,
            metrics JSON,
            report_html VARCHAR,
            report_json VARCHAR
        )""",
    # identity (engine/identity/resolve.py rewrites these; see docs/identity.md) ------------------
    # Surviving profiles only; a merged profile lives on in identity_merges.
    "profiles": """
        CREATE TABLE IF NOT EXISTS profiles (
            profile_id VARCHAR NOT NULL,        -- 'prf_' + sha256(created_by)[:16]
            created_by VARCHAR NOT NULL,        -- message_id of the event that created it
            created_at TIMESTAMPTZ NOT NULL
        )""",
    "profile_identifiers": """
        CREATE TABLE IF NOT EXISTS profile_identifiers (
            profile_id VARCHAR NOT NULL,
            type VARCHAR NOT NULL,
            value VARCHAR NOT NULL,
            first_seen_at TIMESTAMPTZ NOT NULL, -- gain time: when an event first attached it
            message_id VARCHAR NOT NULL         -- that event
        )""",
    # Resolved events only; an unresolved event (no usable identifier) has no row.
    "event_profiles": """
        CREATE TABLE IF NOT EXISTS event_profiles (
            message_id VARCHAR NOT NULL,
            profile_id VARCHAR NOT NULL
        )""",
    "identity_merges": """
        CREATE TABLE IF NOT EXISTS identity_merges (
            merged_profile_id VARCHAR NOT NULL,
            into_profile_id VARCHAR NOT NULL,   -- the surviving profile at that moment
            message_id VARCHAR NOT NULL,
            timestamp TIMESTAMPTZ NOT NULL
        )""",
    "identity_violations": """
        CREATE TABLE IF NOT EXISTS identity_violations (
            message_id VARCHAR NOT NULL,
            timestamp TIMESTAMPTZ NOT NULL,
            rule_type VARCHAR NOT NULL,         -- the identifier type whose limit would break
            limit_value INTEGER NOT NULL,
            dropped_type VARCHAR NOT NULL,
            dropped_value VARCHAR NOT NULL
        )""",
    "profile_traits": """
        CREATE TABLE IF NOT EXISTS profile_traits (
            profile_id VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            value JSON,
            message_id VARCHAR NOT NULL,        -- the identify that set it
            timestamp TIMESTAMPTZ NOT NULL
        )""",
    # Blocked identifier values seen on events: (type, value) and how many events carried them.
    "identity_blocked": """
        CREATE TABLE IF NOT EXISTS identity_blocked (
            type VARCHAR NOT NULL,
            value VARCHAR NOT NULL,
            events BIGINT NOT NULL
        )""",
    # Incremental resolution (docs/identity.md "How it runs"): the ingests already resolved and
    # their event counts (a changed count forces a full rebuild), and the candidate component
    # (identifiers linked transitively, limits ignored) of every identifier seen and of every
    # profile, with the component's last event in canonical order (later new events continue
    # from the stored state, earlier ones re-resolve the component).
    "identity_ingests": """
        CREATE TABLE IF NOT EXISTS identity_ingests (
            ingest_id BIGINT NOT NULL,
            events BIGINT NOT NULL
        )""",
    "identity_component_profiles": """
        CREATE TABLE IF NOT EXISTS identity_component_profiles (
            profile_id VARCHAR NOT NULL,
            component BIGINT NOT NULL
        )""",
    "identity_component_last": """
        CREATE TABLE IF NOT EXISTS identity_component_last (
            component BIGINT NOT NULL,
            timestamp TIMESTAMPTZ NOT NULL,     -- the component's last event, canonical order
            message_id VARCHAR NOT NULL
        )""",
    "identity_identifier_components": """
        CREATE TABLE IF NOT EXISTS identity_identifier_components (
            type VARCHAR NOT NULL,
            value VARCHAR NOT NULL,
            component BIGINT NOT NULL
        )""",
    # What each resolve run changed: kind is created | removed | changed (events, identifiers
    # or identify traits of a surviving profile differ). run_id counts runs (meta identity_run).
    "identity_changes": """
        CREATE TABLE IF NOT EXISTS identity_changes (
            run_id BIGINT NOT NULL,
            profile_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL
        )""",
    # end identity -----------------------------------------------------------------------------
    # traits (engine/compute.py rewrites these; see docs/traits.md) ---------------------------------
    # One row per profile, one typed column per trait: compute replaces the table with the
    # project's columns (CREATE OR REPLACE); this placeholder only lets readers find it.
    "trait_values": """
        CREATE TABLE IF NOT EXISTS trait_values (
            profile_id VARCHAR
        )""",
    # One row per compute run; the latest row describes trait_values.
    "trait_runs": """
        CREATE TABLE IF NOT EXISTS trait_runs (
            as_of TIMESTAMPTZ NOT NULL,
            definitions_hash VARCHAR NOT NULL,  -- hash of (name, semantic hash) of every trait
            computed_at TIMESTAMPTZ NOT NULL,
            profiles BIGINT NOT NULL,
            traits VARCHAR[] NOT NULL,          -- trait names in definition order
            seconds DOUBLE NOT NULL,
            full_recompute BOOLEAN NOT NULL
        )""",
    # Diagnostics of the latest run, one row per trait in definition order.
    "trait_stats": """
        CREATE TABLE IF NOT EXISTS trait_stats (
            position INTEGER NOT NULL,
            trait VARCHAR NOT NULL,
            type VARCHAR NOT NULL,
            counted BIGINT NOT NULL,            -- counting events
            missing BIGINT NOT NULL,            -- counting events whose property is absent or null
            rejected BIGINT NOT NULL,           -- ... present but not convertible to value_type
            rejected_examples VARCHAR[] NOT NULL, -- up to 5 message ids, earliest first
            as_of TIMESTAMPTZ NOT NULL
        )""",
    # Incremental state (docs/incremental.md): one row per mapped profile, its event fingerprint
    # (_n events, _fp sum of message-id hashes) and every trait's mergeable partial aggregates as
    # columns "h<semantic hash>_<part>". Compute replaces it; this placeholder lets readers find it.
    "trait_state": """
        CREATE TABLE IF NOT EXISTS trait_state (
            profile_id VARCHAR
        )""",
    # The traits' events keyed by profile (docs/incremental.md): one row per track/page/screen
    # event of the traits' event names with its profile (NULL = not resolved at the last compute)
    # and the derived columns the traits read. Compute replaces it; this placeholder lets readers find it.
    "trait_events": """
        CREATE TABLE IF NOT EXISTS trait_events (
            profile_id VARCHAR
        )""",
    # end traits -------------------------------------------------------------------------------
}


def _add_id_hash(con: duckdb.DuckDBPyConnection) -> None:
    """1 -> 2: ``events.id_hash``, filled for every stored event (one pass, once per store)."""
    con.execute("ALTER TABLE events ADD COLUMN id_hash UBIGINT USING COMPRESSION uncompressed")
    con.execute(f"UPDATE events SET id_hash = {id_hash_sql('message_id')}")


#: Migrations: ``MIGRATIONS[v]`` upgrades a store at version ``v`` to ``v + 1``.
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {1: _add_id_hash}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.#\-]*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivedColumn:
    """A typed column of ``events`` computed from the row by a SQL expression."""

    name: str
    sql_type: str
    expression: str


def quote(identifier: str) -> str:
    """Quote a DuckDB identifier (column or table name)."""
    return '"' + identifier.replace('"', '""') + '"'


def _cap_memory(con: duckdb.DuckDBPyConnection) -> None:
    """Apply :data:`MEMORY_ENV` to a new connection; a value DuckDB would misread is an error."""
    limit = os.environ.get(MEMORY_ENV, "").strip()
    if not limit:
        return
    if not _SIZE.fullmatch(limit):
        con.close()
        raise StoreError(f"{MEMORY_ENV}={limit!r} is not a size (use e.g. 6GiB or 500MB)")
    con.execute(f"SET memory_limit = '{limit}'")


class Store:
    """An open DuckDB store. Use :meth:`open`; close it (or use it as a context manager)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None) -> None:
        self.con = con
        self.path = path

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path | None, *, read_only: bool = False, create: bool = True) -> Store:
        """Open (and create or migrate) the store at ``path``; ``None`` opens an in-memory store.

        Raises
        ------
        StoreError
            When another process holds the store (DuckDB allows one writer process), when the
            file does not exist and ``create`` is false, or when it was written by a newer version.
        """
        p = None if path is None else Path(path)
        if p is not None and not p.exists() and (read_only or not create):
            raise StoreError(f"no store at {p}: run 'profiles ingest' (or 'profiles demo') first")
        try:
            con = duckdb.connect(":memory:" if p is None else str(p), read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreError(
                    f"the store {p} is in use by another profiles process (one writer at a time); "
                    "wait for it to finish or stop it, then retry"
                ) from None
            raise StoreError(f"cannot open the store {p}: {text}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the store {p}: {exc}") from None
        con.execute("SET TimeZone = 'UTC'")
        _cap_memory(con)
        store = cls(con, p)
        if not read_only:
            store._create_or_migrate()
        else:
            store._check_version()
        return store

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _version(self) -> int | None:
        has_meta = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        ).fetchall()[0][0]
        if not has_meta:
            return None
        row = self.first_row("SELECT value FROM meta WHERE key = 'schema_version'")
        return None if row is None else int(row[0])

    def _check_version(self) -> None:
        version = self._version()
        if version is None:
            raise StoreError(f"{self.path} is not a profiles store (no schema version)")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this profiles "
                f"(version {SCHEMA_VERSION}); upgrade profiles to open it"
            )
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; open it once without read-only "
                "access (any 'profiles' command that writes, e.g. 'profiles resolve') to migrate it"
            )

    def _create_or_migrate(self) -> None:
        version = self._version()
        if version is None:
            foreign = [r[0] for r in self.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1"
            ).fetchall()]
            if foreign:  # creation is one transaction, so a store never lacks its version row
                raise StoreError(
                    f"{self.path} is a DuckDB database but not a profiles store (it holds "
                    f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
                    "pass --store with a new file name or a profiles store"
                )
        with self.transaction():
            if version is None:
                for ddl in TABLES.values():
                    self.con.execute(ddl)
                self.con.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
                )
                return
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this profiles "
                    f"(version {SCHEMA_VERSION}); upgrade profiles to open it"
                )
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](self.con)
                version += 1
            for ddl in TABLES.values():
                self.con.execute(ddl)
            self.con.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)]
            )

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: commit on success, roll back on any exception (including Ctrl-C)."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    # -- small reads -------------------------------------------------------------------------
    def first_row(self, sql: str, params: list[object] | None = None) -> tuple | None:
        """The first row of a query, or ``None``.

        Fetches the whole result: DuckDB 2.0 keeps a half-read result (``fetchone``) open and then
        refuses ``con.sql`` on the connection.
        """
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    # -- metadata ----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.first_row("SELECT value FROM meta WHERE key = ?", [key])
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    def has_table(self, name: str) -> bool:
        return bool(
            self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
            ).fetchall()[0][0]
        )

    # -- derived event columns (the hot-path property columns) --------------------------------
    def derived_columns(self) -> list[DerivedColumn]:
        """The registered derived columns of ``events``, in registration order."""
        rows = self.con.execute(
            "SELECT column_name, sql_type, expression FROM derived_columns ORDER BY rowid"
        ).fetchall()
        return [DerivedColumn(name=n, sql_type=t, expression=e) for n, t, e in rows]

    def ensure_derived_columns(self, columns: Mapping[str, DerivedColumn] | list[DerivedColumn]) -> list[str]:
        """Add and back-fill the derived columns that do not exist yet; returns the added names.

        A column is identified by its name; callers derive the name from the expression (e.g.
        ``num:duration``) so the same need always maps to the same column.
        """
        wanted = list(columns.values()) if isinstance(columns, Mapping) else list(columns)
        existing = {c.name: c for c in self.derived_columns()}
        added: list[str] = []
        for col in wanted:
            if not _IDENTIFIER.match(col.name):
                raise StoreError(f"invalid derived column name {col.name!r}")
            if col.name in existing:
                if existing[col.name] != col:
                    raise StoreError(
                        f"derived column {col.name!r} is registered with another definition"
                    )
                continue
            with self.transaction() as con:
                con.execute(f"ALTER TABLE events ADD COLUMN {quote(col.name)} {col.sql_type}")
                con.execute(f"UPDATE events SET {quote(col.name)} = {col.expression}")
                con.execute(
                    "INSERT INTO derived_columns VALUES (?, ?, ?)",
                    [col.name, col.sql_type, col.expression],
                )
            added.append(col.name)
        return added

    def fill_derived_columns(self, where: str, params: list[object] | None = None) -> None:
        """Compute every derived column for the event rows matching ``where``.

        Ingest no longer calls it (its insert computes the columns: an UPDATE of uncommitted rows
        makes DuckDB rewrite them at commit); the tests use it as the reference that the insert's
        columns equal a back-fill.
        """
        cols = self.derived_columns()
        if not cols:
            return
        sets = ", ".join(f"{quote(c.name)} = {c.expression}" for c in cols)
        self.con.execute(f"UPDATE events SET {sets} WHERE {where}", params or [])
