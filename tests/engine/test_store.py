"""The store: schema versions, migrations, one writer, transactions, derived columns."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pytest

from engine.errors import StoreError
from engine.store import MEMORY_ENV, SCHEMA_VERSION, DerivedColumn, Store, id_hash, id_hash_sql

EVENT = (
    "INSERT INTO events (message_id, type, event, timestamp, properties, raw, payload_hash, ingest_id) "
    "VALUES (?, 'track', 'E', TIMESTAMPTZ '2025-01-01 00:00:00+00', ?, '{}', 'h', 1)"
)


def test_a_new_store_has_every_table_and_the_current_version(tmp_path):
    with Store.open(tmp_path / "s.duckdb") as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        for table in ("events", "ingest_log", "quarantine", "duplicate_conflicts", "derived_columns"):
            assert store.has_table(table)


def test_a_store_from_a_newer_version_is_refused_with_advice(tmp_path):
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    with pytest.raises(StoreError, match="upgrade profiles"):
        Store.open(path)


def _version_1_store(path) -> None:
    """A store as schema version 1 wrote it: ``events`` without ``id_hash``, two events."""
    Store.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE events DROP COLUMN id_hash")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    for message_id in ("m1", "m2"):
        con.execute(EVENT, [message_id, "{}"])
    con.close()


def test_version_1_store_gains_the_id_hash_of_every_event(tmp_path):
    path = tmp_path / "s.duckdb"
    _version_1_store(path)
    with pytest.raises(StoreError, match="schema version 1; open it once without read-only"):
        Store.open(path, read_only=True)
    with Store.open(path) as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION) == "2"
        got = store.con.execute(
            f"SELECT message_id, id_hash = {id_hash_sql('message_id')} FROM events ORDER BY 1"
        ).fetchall()
        assert got == [("m1", True), ("m2", True)]
    with Store.open(path, read_only=True) as store:
        assert store.first_row("SELECT count(id_hash) FROM events") == (2,)


def test_id_hash_is_the_first_8_bytes_of_the_md5_of_the_message_id():
    """Stored and compared across runs, so it must not depend on DuckDB's version (as ``hash`` may)."""
    import hashlib

    with Store.open(None) as store:
        (got,) = store.first_row(f"SELECT {id_hash_sql('?')}", ["msg-é-1"])
    digest = hashlib.md5("msg-é-1".encode()).digest()
    assert got == int.from_bytes(digest[:8], "little") == id_hash("msg-é-1")  # ingest's Python twin


def test_a_missing_store_is_not_created_when_reading(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store.open(tmp_path / "absent.duckdb", read_only=True)
    assert not (tmp_path / "absent.duckdb").exists()


def test_a_second_writer_gets_a_clear_error_not_a_lock_traceback(tmp_path):
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time, duckdb
                con = duckdb.connect({str(path)!r})
                print("locked", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="in use by another profiles process"):
            Store.open(path)
    finally:
        holder.communicate("", timeout=30)


def test_a_failed_transaction_leaves_nothing_behind():
    store = Store.open(None)
    with pytest.raises(RuntimeError):
        with store.transaction() as con:
            con.execute(EVENT, ["m1", "{}"])
            raise RuntimeError("boom")
    assert store.first_row("SELECT count(*) FROM events") == (0,)


def test_derived_columns_are_back_filled_and_computed_for_new_rows():
    store = Store.open(None)
    store.con.execute(EVENT, ["m1", '{"duration": 12}'])
    col = DerivedColumn(
        name="num:duration", sql_type="DOUBLE", expression="TRY_CAST(properties->>'$.duration' AS DOUBLE)"
    )
    assert store.ensure_derived_columns([col]) == ["num:duration"]
    assert store.ensure_derived_columns([col]) == []
    store.con.execute(EVENT.replace("1)", "2)"), ["m2", '{"duration": "7.5"}'])
    store.fill_derived_columns("ingest_id = ?", [2])
    rows = store.con.execute('SELECT message_id, "num:duration" FROM events ORDER BY 1').fetchall()
    assert rows == [("m1", 12.0), ("m2", 7.5)]


def test_a_derived_column_name_cannot_be_reused_for_another_expression():
    store = Store.open(None)
    store.ensure_derived_columns([DerivedColumn(name="c", sql_type="DOUBLE", expression="1.0")])
    with pytest.raises(StoreError, match="another definition"):
        store.ensure_derived_columns([DerivedColumn(name="c", sql_type="DOUBLE", expression="2.0")])


def test_a_duckdb_file_that_is_not_a_store_is_refused_untouched(tmp_path):
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE x AS SELECT 1 AS a")
    with pytest.raises(StoreError, match="not a profiles store .*holds x"):
        Store.open(path)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT table_name FROM duckdb_tables()").fetchall() == [("x",)]


def test_the_memory_variable_caps_duckdb_for_every_store_opened(tmp_path, monkeypatch):
    with Store.open(tmp_path / "plain.duckdb") as store:
        default = store.first_row("SELECT current_setting('memory_limit')")[0]
    monkeypatch.setenv(MEMORY_ENV, "300MiB")
    for path in (tmp_path / "capped.duckdb", None):
        with Store.open(path) as store:
            capped = store.first_row("SELECT current_setting('memory_limit')")[0]
        assert capped != default
        assert capped.replace(" ", "") in {"300.0MiB", "314.5MB", "300MiB"}, capped
    monkeypatch.setenv(MEMORY_ENV, "a lot")
    with pytest.raises(StoreError, match="not a size"):
        Store.open(tmp_path / "refused.duckdb")
