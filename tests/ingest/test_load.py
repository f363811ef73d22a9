"""Dedupe, conflicts, re-ingest, per-file atomicity, the report and the quarantine listing."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from rich.console import Console

import ingest.load as load
from engine.progress import Progress
from tests.ingest.conftest import CASES, NOW, ingest, rows, write_lines

MSG = {"type": "track", "event": "E", "userId": "u1", "timestamp": "2024-03-01T10:00:00Z"}


def _events(store) -> list[tuple]:
    return rows(store, "SELECT message_id, event, ingest_id, source_line FROM events ORDER BY message_id")


def test_duplicates_inside_a_file_first_occurrence_wins_and_conflicts_are_recorded(store, tmp_path):
    path = write_lines(
        tmp_path / "a.ndjson",
        [dict(MSG, messageId="m1"), dict(MSG, messageId="m1"), dict(MSG, messageId="m1", event="Other"),
         dict(MSG, messageId="m2")],
    )
    report = ingest(store, path)
    (file,) = report.files
    assert (file.records, file.ingested, file.duplicates, file.conflicts) == (4, 2, 2, 1)
    assert _events(store) == [("m1", "E", 1, 1), ("m2", "E", 1, 4)]
    assert rows(store, "SELECT message_id, ingest_id, line FROM duplicate_conflicts") == [("m1", 1, 3)]


def test_duplicates_across_files_and_chunks(store, tmp_path):
    first = write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId=f"m{i}") for i in range(10)])
    second = write_lines(
        tmp_path / "b.ndjson",
        [dict(MSG, messageId=f"m{i}") for i in range(5, 15)] + [dict(MSG, messageId="m12", event="Changed")],
    )
    report = ingest(store, first, second, chunk_records=3)
    assert [(f.ingested, f.duplicates, f.conflicts) for f in report.files] == [(10, 0, 0), (5, 6, 1)]
    assert rows(store, "SELECT count(*), count(DISTINCT message_id) FROM events") == [(15, 15)]
    assert rows(store, "SELECT event FROM events WHERE message_id = 'm12'") == [("E",)]


def test_same_payload_with_other_key_order_or_spacing_is_not_a_conflict(store, tmp_path):
    a = write_lines(tmp_path / "a.ndjson", ['{"type":"track","event":"E","userId":"u1","messageId":"m"}'])
    b = write_lines(tmp_path / "b.ndjson", ['{ "messageId": "m", "userId": "u1", "event": "E", "type": "track" }'])
    report = ingest(store, a, b)
    assert (report.duplicates, report.conflicts) == (1, 0)


def test_reingesting_the_same_file_changes_nothing(store):
    first = ingest(store, CASES / "quarantine.ndjson", CASES / "valid.ndjson")
    before = [rows(store, f"SELECT * FROM {t} ORDER BY ALL") for t in ("events", "quarantine", "ingest_log")]
    again = ingest(store, CASES / "quarantine.ndjson", CASES / "valid.ndjson")
    assert [f.status for f in again.files] == ["already ingested", "already ingested"]
    assert again.ingested == again.quarantined == 0
    assert "same content as" in again.files[0].message
    after = [rows(store, f"SELECT * FROM {t} ORDER BY ALL") for t in ("events", "quarantine", "ingest_log")]
    assert after == before and first.quarantined == 23


def test_same_content_under_another_name_is_already_ingested(store, tmp_path):
    copy = tmp_path / "copy.ndjson"
    copy.write_bytes((CASES / "valid.ndjson").read_bytes())
    report = ingest(store, CASES / "valid.ndjson", copy)
    assert report.files[1].status == "already ingested"


def test_content_hash_is_logged_whether_or_not_a_file_of_the_same_size_was_logged(store, tmp_path):
    import hashlib

    a = write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId="m1")])
    b = write_lines(tmp_path / "b.ndjson", [dict(MSG, messageId="m2")])  # same size, other bytes
    c = write_lines(tmp_path / "c.ndjson", [dict(MSG, messageId="m33")])  # a size never logged
    assert a.stat().st_size == b.stat().st_size != c.stat().st_size
    report = ingest(store, a, b, c)
    assert [f.status for f in report.files] == ["ingested"] * 3
    logged = rows(store, "SELECT content_hash FROM ingest_log ORDER BY ingest_id")
    assert logged == [(hashlib.sha256(p.read_bytes()).hexdigest(),) for p in (a, b, c)]


def test_derived_message_ids_dedupe_on_reingest_of_changed_file(store, tmp_path):
    msgs = [dict(MSG, event=f"E{i}") for i in range(5)]  # no messageId
    a = write_lines(tmp_path / "a.ndjson", msgs)
    b = write_lines(tmp_path / "b.ndjson", [*reversed(msgs), dict(MSG, event="New")])  # other bytes, same messages
    report = ingest(store, a, b)
    assert [(f.ingested, f.duplicates, f.conflicts) for f in report.files] == [(5, 0, 0), (1, 5, 0)]
    assert rows(store, "SELECT count(*) FROM events WHERE message_id LIKE 'derived-%'") == [(6,)]


def test_a_failure_mid_file_rolls_the_whole_file_back(store, tmp_path, monkeypatch):
    good = write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId="a")])
    bad = write_lines(tmp_path / "b.ndjson", [dict(MSG, messageId=f"b{i}") for i in range(40)] + ["{broken"])
    calls = {"n": 0}
    real = load._process_chunk

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # a.ndjson's one chunk, b.ndjson's first chunk, then boom
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(load, "_process_chunk", failing)
    with pytest.raises(RuntimeError):
        ingest(store, good, bad, chunk_records=4)
    assert _events(store) == [("a", "E", 1, 1)]
    assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]
    assert rows(store, "SELECT path FROM ingest_log") == [(str(good),)]
    monkeypatch.setattr(load, "_process_chunk", real)
    report = ingest(store, good, bad, chunk_records=4)
    assert [f.status for f in report.files] == ["already ingested", "ingested"]
    assert rows(store, "SELECT count(*) FROM events") == [(41,)]


def test_ingest_log_row(store):
    ingest(store, CASES / "valid.ndjson.gz")
    (row,) = rows(
        store,
        "SELECT ingest_id, format, size_bytes, records, ingested, duplicates, conflicts, quarantined, status, "
        "length(content_hash), started_at <= finished_at FROM ingest_log",
    )
    size = (CASES / "valid.ndjson.gz").stat().st_size
    assert row == (1, "ndjson.gz", size, 10, 10, 0, 0, 0, "ingested", 64, True)


def test_derived_columns_are_filled_for_new_rows(store, tmp_path):
    from engine.store import DerivedColumn

    store.ensure_derived_columns([DerivedColumn(name="num:total", sql_type="DOUBLE", expression="TRY_CAST(properties->>'total' AS DOUBLE)")])
    ingest(store, write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId="m", properties={"total": 12.5})]))
    assert rows(store, 'SELECT "num:total" FROM events') == [(12.5,)]


def test_derived_columns_computed_by_the_insert_equal_a_back_fill(store, tmp_path):
    from traits.values import VALUE_TYPES, kind_column

    paths = ("total", "order.id", "page_name", "when")
    columns = [kind_column(p) for p in paths] + [t.column(p) for t in VALUE_TYPES.values() for p in paths]
    store.ensure_derived_columns(columns)
    props = [{"total": 12.5, "order": {"id": "o1"}, "when": "2024-03-01T10:00:00Z"}, {"total": "7"},
             {"total": True, "order": {"id": 5}, "when": 1709287200000}, {"total": None}, {}]
    lines = [dict(MSG, messageId=f"m{i}", properties=p) for i, p in enumerate(props)]
    lines += [{"type": "page", "name": "Home", "userId": "u2", "messageId": "p1", "properties": {"when": "x"}},
              dict(MSG, messageId="m0", properties={"total": 99})]  # a duplicate: never inserted
    ingest(store, write_lines(tmp_path / "a.ndjson", lines), chunk_records=3)
    names = ", ".join(f'"{c.name}"' for c in columns)
    inserted = rows(store, f"SELECT message_id, {names} FROM events ORDER BY message_id")
    store.fill_derived_columns("true")
    assert rows(store, f"SELECT message_id, {names} FROM events ORDER BY message_id") == inserted
    assert len(inserted) == 6 and any(v is not None for row in inserted for v in row[1:])


def test_report_totals_and_rich_summary(store):
    report = ingest(store, CASES / "valid.ndjson", CASES / "quarantine.ndjson", CASES / "truncated.ndjson.gz")
    assert report.records == sum(f.records for f in report.files)
    assert (report.ingested, report.quarantined) == (11 + report.files[2].ingested, 24)
    assert [f.path.rsplit("/", 1)[1] for f in report.unreadable] == ["truncated.ndjson.gz"]
    console = Console(width=160, record=True)
    console.print(report)
    text = console.export_text()
    for needle in ("valid.ndjson", "quarantine.ndjson", "partial", "total", "gzip stream ends early", "profiles quarantine"):
        assert needle in text


def test_progress_is_advanced_by_file_bytes(store):
    advanced: list[float] = []

    class Recording(Progress):
        def step(self, description, total=None):
            from contextlib import contextmanager

            @contextmanager
            def cm():
                class S:
                    def advance(self, n=1):
                        advanced.append(n)

                yield S()
                advanced.append(("total", description, total))

            return cm()

    load.ingest_paths(store, [CASES / "valid.ndjson.gz"], progress=Recording(), now=None)
    size = (CASES / "valid.ndjson.gz").stat().st_size
    assert advanced[-1] == ("total", "Ingesting valid.ndjson.gz", size)
    assert sum(n for n in advanced[:-1]) == size


def test_quarantine_frame(store):
    ingest(store, CASES / "array.json", CASES / "quarantine.ndjson")
    frame = load.quarantine_frame(store)
    assert frame.columns == ["file", "line", "reason", "raw"]
    assert frame.height == 25
    assert frame.row(0) == (str(CASES / "array.json"), 3, "message is a number, not a JSON object", "42")
    limited = load.quarantine_frame(store, limit=3)
    assert limited.height == 3 and isinstance(limited, pl.DataFrame)


def test_file_store_memory_cap_is_lifted_after_ingest(tmp_path):
    from engine.store import Store

    with Store.open(tmp_path / "s.duckdb") as store:
        setting = "SELECT current_setting('memory_limit')"
        before = rows(store, setting)
        report = ingest(store, CASES / "valid.ndjson")
        assert report.ingested == 10 and rows(store, setting) == before


def test_each_file_logs_its_own_start_and_finish(store, tmp_path):
    first = write_lines(tmp_path / "a.ndjson", [{"type": "track", "event": "E", "userId": "u", "messageId": "a",
                                                  "timestamp": "2024-01-01T00:00:00Z"}])
    second = write_lines(tmp_path / "b.ndjson", [{"type": "track", "event": "E", "userId": "u", "messageId": "b",
                                                   "timestamp": "2024-01-01T00:00:00Z"}])
    ingest(store, first, second)
    (a_start, a_end), (b_start, b_end) = rows(
        store, "SELECT started_at, finished_at FROM ingest_log ORDER BY ingest_id"
    )
    assert a_start <= a_end <= b_start <= b_end
    assert a_start != NOW


def test_an_abandoned_ingest_stops_hashing_the_file(tmp_path):
    import threading

    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (3 << 20))
    stop = threading.Event()
    assert load._content_hash(path, stop) == load._content_hash(path)
    stop.set()
    assert load._content_hash(path, stop) == ""
    with pytest.raises(KeyboardInterrupt), load._set_on_error(stop := threading.Event()):
        raise KeyboardInterrupt
    assert stop.is_set()


def _stored_elsewhere(store) -> None:
    """An event written by another tool: no source line, so SeenIds cannot place it."""
    store.con.execute(
        "INSERT INTO events (message_id, type, event, timestamp, raw, payload_hash, ingest_id) "
        "VALUES ('x0', 'track', 'E', TIMESTAMPTZ '2024-03-01 10:00:00+00', ?, 'h', 99)",
        ['{"messageId":"x0"}'],
    )


@pytest.fixture(params=["scan", "load"])
def probing(request, monkeypatch):
    """Both ways a run finds the rows stored before it: a semi-join per chunk, or all loaded at once."""
    monkeypatch.setattr(load, "SCANS_BEFORE_LOAD", 10**6 if request.param == "scan" else 0)
    return request.param


def test_duplicates_of_every_kind_of_stored_row_across_runs_files_and_chunks(store, tmp_path, probing):
    _stored_elsewhere(store)
    ingest(store, write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId=f"m{i}") for i in range(4)]))
    b = write_lines(tmp_path / "b.ndjson", [
        dict(MSG, messageId="m1"),                      # an earlier run
        dict(MSG, messageId="n1"), dict(MSG, messageId="n1"),  # the same chunk
        dict(MSG, messageId="n2"), dict(MSG, messageId="n1", event="Changed"),  # an earlier chunk, conflicting
        dict(MSG, messageId="x0"),                      # a row without a location (other tool): conflicting
        dict(MSG, messageId="m3", event="Changed"),     # an earlier run, conflicting
        dict(MSG, messageId="n3"),
    ])
    c = write_lines(tmp_path / "c.ndjson", [dict(MSG, messageId="n3"), dict(MSG, messageId="n4")])  # an earlier file of the run
    report = ingest(store, b, c, chunk_records=3)
    assert [(f.ingested, f.duplicates, f.conflicts) for f in report.files] == [(3, 5, 3), (1, 1, 0)]
    assert rows(store, "SELECT message_id, line FROM duplicate_conflicts ORDER BY line") == [("n1", 5), ("x0", 6), ("m3", 7)]
    assert rows(store, "SELECT count(*), count(DISTINCT message_id) FROM events") == [(9, 9)]


def test_a_hash_hit_that_is_not_the_id_is_no_duplicate(store, tmp_path, monkeypatch):
    """Hash collisions (SeenIds reports stored rows that hold other ids) never drop an event."""
    ingest(store, write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId=f"m{i}") for i in range(4)]))
    real = load.SeenIds.lookup

    def colliding(self, hashes):
        probe, location = real(self, hashes)
        everyone = np.arange(len(hashes))
        anywhere = np.full(len(hashes), load.SeenIds.location(np.array([1]), np.array([2]))[0])
        return np.concatenate([probe, everyone]), np.concatenate([location, anywhere])

    monkeypatch.setattr(load.SeenIds, "lookup", colliding)
    report = ingest(store, write_lines(tmp_path / "b.ndjson", [dict(MSG, messageId=f"m{i}") for i in range(2, 7)]))
    assert (report.ingested, report.duplicates, report.conflicts) == (3, 2, 0)


def _few_buckets(expr: str) -> str:
    """An id hash with three values: nearly every probe collides with rows holding other ids."""
    return f"(strlen({expr}) % 3)::UBIGINT"


def test_hash_collisions_never_drop_or_duplicate_an_event(store, tmp_path, monkeypatch, probing):
    from ingest import contract

    for module in (load, contract):  # the contract hashes the chunk's ids, load fills stored rows
        monkeypatch.setattr(module, "id_hash_sql", _few_buckets)
    _stored_elsewhere(store)
    ingest(store, write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId=f"m{i}") for i in (0, 1, 22, 333)]))
    b = write_lines(tmp_path / "b.ndjson", [
        dict(MSG, messageId="m1"), dict(MSG, messageId="m4"), dict(MSG, messageId="m55"), dict(MSG, messageId="m4"),
        dict(MSG, messageId="x0", event="Changed"), dict(MSG, messageId="m666"), dict(MSG, messageId="m22"),
    ])
    c = write_lines(tmp_path / "c.ndjson", [dict(MSG, messageId="m55"), dict(MSG, messageId="m7")])
    report = ingest(store, b, c, chunk_records=2)
    assert [(f.ingested, f.duplicates, f.conflicts) for f in report.files] == [(3, 4, 1), (1, 1, 0)]
    assert rows(store, "SELECT count(*), count(DISTINCT message_id) FROM events") == [(9, 9)]
    assert rows(store, "SELECT message_id, line FROM duplicate_conflicts") == [("x0", 5)]


def test_every_stored_row_has_the_id_hash_of_its_message_id(store, tmp_path):
    from engine.store import id_hash_sql

    _stored_elsewhere(store)  # written without id_hash: the next ingest fills it before probing
    assert rows(store, "SELECT id_hash FROM events") == [(None,)]
    ingest(store, write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId="m1"), dict(MSG)]), CASES / "array.json")
    mismatched = f"SELECT count(*) FROM events WHERE id_hash IS DISTINCT FROM {id_hash_sql('message_id')}"
    assert rows(store, mismatched) == [(0,)]
    assert rows(store, "SELECT count(*) > 3 FROM events") == [(True,)]


def test_a_rerun_of_ingested_files_never_reads_the_stored_ids(store, monkeypatch):
    ingest(store, CASES / "valid.ndjson", CASES / "quarantine.ndjson")

    def untouched(self):
        raise AssertionError("the stored ids were read")

    monkeypatch.setattr(load.StoredIds, "prepare", untouched)
    again = ingest(store, CASES / "valid.ndjson", CASES / "quarantine.ndjson")
    assert [f.status for f in again.files] == ["already ingested"] * 2


def test_an_append_probes_the_stored_ids_per_chunk_and_loads_them_only_for_many_chunks(store, tmp_path, monkeypatch):
    ingest(store, write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId=f"m{i}") for i in range(30)]))
    loads = []
    real = load.StoredIds._load
    monkeypatch.setattr(load.StoredIds, "_load", lambda self: loads.append(1) or real(self))
    monkeypatch.setattr(load, "SCANS_BEFORE_LOAD", 2)
    small = write_lines(tmp_path / "b.ndjson", [dict(MSG, messageId=f"m{i}") for i in range(25, 35)])
    assert (ingest(store, small).duplicates, loads) == (5, [])
    big = write_lines(tmp_path / "c.ndjson", [dict(MSG, messageId=f"m{i}") for i in range(20, 50)])
    report = ingest(store, big, chunk_records=1)  # NDJSON chunks are cut by bytes: several lines each
    assert (report.ingested, report.duplicates, loads) == (15, 15, [1])
    assert rows(store, "SELECT count(*), count(DISTINCT message_id) FROM events") == [(50, 50)]
