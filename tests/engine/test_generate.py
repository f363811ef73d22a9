"""The benchmark data generator, the bundled sample and the starter project file.

The checks are written against plain-Python readings of the output (json.loads, dict access),
not against the generator's internals, so they catch rendering mistakes too.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import generate as gen
from benchmarks.generate import generate_events, write_ndjson, write_parquet

DATA = Path(__file__).resolve().parents[2] / "data"
SAMPLE = DATA / "sample-events.ndjson.gz"
SAMPLE_SEED = 2025
SAMPLE_EVENTS = 50_000
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
KNOWN_TYPES = {"track", "identify", "alias", "page", "screen", "group"}


def event_time(message: dict) -> datetime | None:
    """The spec's event time (events.md), naively: timestamp, else the clock-skew correction."""

    def parse(value: object) -> datetime | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, UTC)
        if not isinstance(value, str):
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    if "timestamp" in message:
        return parse(message["timestamp"])
    received, sent, original = (parse(message.get(k)) for k in ("receivedAt", "sentAt", "originalTimestamp"))
    if received and sent and original:
        return received - (sent - original)
    return original or received


def problems(line: str) -> list[str]:
    """Why a raw line must be quarantined (events.md), in plain Python; [] for a good message."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return ["invalid JSON"]
    if not isinstance(message, dict):
        return ["not an object"]
    found = []
    if message.get("type") not in KNOWN_TYPES:
        found.append("unknown type")
    if message.get("type") == "track" and not (isinstance(message.get("event"), str) and message["event"]):
        found.append("track without event")
    ids = [message.get("userId"), message.get("anonymousId")]
    if not any(i is not None and str(i).strip() for i in ids):
        found.append("no ids")
    t = event_time(message)
    if t is None or t.year < 1970:
        found.append("bad time")
    for key in ("properties", "traits", "context"):
        if key in message and not isinstance(message[key], dict):
            found.append(f"{key} not an object")
    return found


@pytest.fixture(scope="module")
def sample_lines() -> list[str]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def sample_checked(sample_lines: list[str]) -> list[tuple[str, list[str]]]:
    """Each line of the sample with its quarantine reasons (parsed once for the module)."""
    return [(line, problems(line)) for line in sample_lines]


@pytest.fixture(scope="module")
def small() -> list[dict | str]:
    return list(generate_events(6000, seed=3))


# ----------------------------------------------------------------------------- the generator


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = write_ndjson(tmp_path / "a.ndjson.gz", 3000, seed=7)
    b = write_ndjson(tmp_path / "b.ndjson.gz", 3000, seed=7)
    c = write_ndjson(tmp_path / "c.ndjson.gz", 3000, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    plain = write_ndjson(tmp_path / "a.ndjson", 3000, seed=7)
    assert gzip.decompress(a.read_bytes()) == plain.read_bytes()


def test_generate_events_matches_the_written_lines(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "e.ndjson", 2500, seed=11)
    lines = path.read_text(encoding="utf-8").splitlines()
    items = list(generate_events(2500, seed=11))
    assert len(lines) == len(items) == 2500
    for line, item in zip(lines, items, strict=True):
        assert item == (line if isinstance(item, str) else json.loads(line))


@settings(max_examples=8, deadline=None)
@given(n=st.integers(0, 400), seed=st.integers(0, 2**31), malformed=st.booleans())
def test_exactly_n_items_and_only_flagged_lines_are_bad(n: int, seed: int, malformed: bool) -> None:
    items = list(generate_events(n, seed=seed, malformed=malformed))
    assert len(items) == n
    for item in items:
        if isinstance(item, str):
            assert malformed
            assert problems(item), item
        else:
            assert problems(json.dumps(item)) == [], item


def test_the_mix_of_messages(small: list[dict | str]) -> None:
    messages = [m for m in small if isinstance(m, dict)]
    kinds = Counter((m["type"], m.get("event")) for m in messages)
    for kind in [
        ("page", None), ("screen", None), ("identify", None),
        ("track", "Flex - Engagement Initiated"), ("track", "Flex - Engagement Completed"),
        ("track", "Order Completed"),
    ]:
        assert kinds[kind] > 0.02 * len(messages), kind
    initiated = [m["properties"] for m in messages if m.get("event") == "Flex - Engagement Initiated"]
    assert {p["direction"] for p in initiated} == {"Inbound", "Outbound"}
    assert {"voice", "chat", "sms", "email"} <= {p["channelType"] for p in initiated}
    assert all(p["lastKnownAgentWorkerSid"].startswith("WK") and len(p["lastKnownAgentWorkerSid"]) == 34
               for p in initiated)
    durations = [p.get("duration", "<absent>") for p in initiated]
    assert any(isinstance(d, int) for d in durations)
    assert any(isinstance(d, float) for d in durations)
    assert any(isinstance(d, str) and d.replace(".", "").isdigit() for d in durations)
    assert {"<absent>", None, "n/a"} <= set(x for x in durations if not isinstance(x, int | float) or x is None)
    completed = [m["properties"] for m in messages if m.get("event") == "Flex - Engagement Completed"]
    assert {p.get("sentiment") for p in completed} >= {"positive", "neutral", "negative"}
    revenue = [m["properties"]["revenue"] for m in messages if m.get("event") == "Order Completed"]
    assert all(float(r) > 0 for r in revenue)
    assert any(isinstance(r, str) for r in revenue) and any(isinstance(r, float) for r in revenue)


def test_identity_material(small: list[dict | str]) -> None:
    messages = [m for m in small if isinstance(m, dict)]
    anonymous_pages = [m for m in messages if m["type"] == "page" and "userId" not in m]
    assert anonymous_pages and all(m.get("anonymousId") for m in anonymous_pages)
    identifies = [m for m in messages if m["type"] == "identify"]
    emails = [m["traits"]["email"] for m in identifies]
    assert any(e != e.lower() for e in emails) and any(e == e.lower() for e in emails)
    phones = [m["traits"]["phone"] for m in identifies if "phone" in m["traits"]]
    assert len({p[:2] + ("(" in p) * "(" + (" " in p) * " " + ("-" in p) * "-" for p in phones}) >= 4
    devices = [m["context"]["device"] for m in messages if "device" in m.get("context", {})]
    assert {d["type"] for d in devices} == {"ios", "android"}
    assert any(d.get("adTrackingEnabled") and d.get("advertisingId") for d in devices)
    assert any(isinstance(m.get("userId"), int) for m in messages)
    assert any("timestamp" not in m and "originalTimestamp" in m for m in messages)
    assert any(isinstance(m.get("timestamp"), str) and m["timestamp"].endswith("+02:00") for m in messages)
    # A known user is seen on several anonymous ids (devices).
    anon_by_user: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        if "userId" in m and "anonymousId" in m:
            anon_by_user[str(m["userId"])].add(m["anonymousId"])
    assert max(len(v) for v in anon_by_user.values()) >= 2
    assert any(any(ord(ch) > 127 for ch in m["traits"]["name"]) for m in identifies)


def test_late_events_and_exact_duplicates(small: list[dict | str]) -> None:
    messages = [m for m in small if isinstance(m, dict)]
    latest = datetime(1970, 1, 1, tzinfo=UTC)
    late = 0
    for m in messages:
        t = event_time(m)
        if t < latest - timedelta(hours=1):
            late += 1
        latest = max(latest, t)
    assert late >= 0.004 * len(messages)
    copies: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        copies[m["messageId"]].append(m)
    repeated = [v for v in copies.values() if len(v) > 1]
    assert len(repeated) == int(6000 * gen.SHARE_DUPLICATES)
    assert all(all(c == v[0] for c in v) for v in repeated)


def test_events_fall_inside_the_requested_period() -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    messages = [m for m in generate_events(1500, seed=5, start=start, days=40, malformed=False)]
    times = [event_time(m) for m in messages]
    assert min(times) >= start and max(times) < start + timedelta(days=40)


def test_parquet_has_the_well_formed_messages_as_typed_columns(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "e.parquet", 3000, seed=9)
    frame = pl.read_parquet(path)
    messages = list(generate_events(3000, seed=9, malformed=False))
    assert frame.height == len(messages) == 3000
    assert frame.columns == list(gen.PARQUET_COLUMNS.values())
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert frame.schema["duration"] == pl.Float64 and frame.schema["revenue"] == pl.Float64
    assert frame["message_id"].to_list() == [m["messageId"] for m in messages]
    assert frame["timestamp"].to_list() == [event_time(m) for m in messages]
    for row, m in zip(frame.iter_rows(named=True), messages, strict=True):
        props = m.get("properties", {})
        assert row["user_id"] == (None if "userId" not in m else str(m["userId"]))
        assert row["anonymous_id"] == m.get("anonymousId")
        if m.get("event", "").startswith("Flex"):
            raw = props.get("duration")
            expected = float(raw) if isinstance(raw, int | float) or (
                isinstance(raw, str) and raw.replace(".", "").isdigit()) else None
            assert row["duration"] == expected
            assert row["channelType"] == props["channelType"]
            assert row["sentiment"] == props.get("sentiment")
        if m.get("event") == "Order Completed":
            assert row["revenue"] == pytest.approx(float(props["revenue"]))
        if m["type"] == "identify":
            assert row["email"] == m["traits"]["email"]
            assert row["phone"] == m["traits"].get("phone")


def test_cli_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.ndjson"
    result = gen.main(["--events", "500", "--seed", "1", "--out", str(out), "--no-malformed"])
    assert result["events"] == 500 and out.read_text().count("\n") == 500
    assert out.read_bytes() == write_ndjson(tmp_path / "api.ndjson", 500, seed=1, malformed=False).read_bytes()


def test_formatting_helpers_agree_with_the_standard_library() -> None:
    ms = np.array([0, 1_735_689_600_123, 1_767_225_599_999, 951_782_400_000], dtype=np.int64)
    assert gen._iso(ms).to_list() == [
        datetime.fromtimestamp(v / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for v in ms
    ]
    assert gen._iso(ms[1:2], offset_hours=2).to_list() == ["2025-01-01T02:00:00.123+02:00"]
    values = np.array([0, 1, 2**64 - 1, 0xDEADBEEF], dtype=np.uint64)
    assert gen._hex(values).to_list() == [f"{int(v):016x}" for v in values]


# ----------------------------------------------------------------------------- the bundled sample


def test_sample_is_what_the_generator_writes(tmp_path: Path) -> None:
    fresh = write_ndjson(tmp_path / "sample.ndjson.gz", SAMPLE_EVENTS, seed=SAMPLE_SEED)
    # The text, not the gzip stream: another zlib build may compress the same text differently.
    assert gzip.decompress(fresh.read_bytes()) == gzip.decompress(SAMPLE.read_bytes()), (
        "data/sample-events.ndjson.gz is stale: rebuild it with "
        "python -m benchmarks.generate --events 50000 --seed 2025 --out data/sample-events.ndjson.gz"
    )


def test_sample_parses_and_is_small(sample_checked: list[tuple[str, list[str]]]) -> None:
    assert SAMPLE.stat().st_size < 6 * 2**20
    assert len(sample_checked) == SAMPLE_EVENTS
    bad = [line for line, reasons in sample_checked if reasons]
    assert 10 <= len(bad) <= 50
    good = [json.loads(line) for line, reasons in sample_checked if not reasons]
    assert all(event_time(m) < AS_OF for m in good)
    assert all(len(line.encode()) < 32 * 1024 for line, _ in sample_checked)


def test_sample_has_enough_data_for_every_prediction(sample_checked: list[tuple[str, list[str]]]) -> None:
    """predictions.md's minimums, counted per userId (every Flex and order event carries one).

    And churn is learnable: a model on recency *and* frequency beats recency alone on a later
    cutoff (the generator's dropout process is what makes frequency informative).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rows = []
    for line, reasons in sample_checked:
        if reasons or '"type":"track"' not in line:
            continue
        m = json.loads(line)
        if "userId" in m:
            rows.append({"id": m["messageId"], "user": str(m["userId"]), "event": m["event"],
                         "ts": event_time(m), "direction": m["properties"].get("direction")})
    events = pl.DataFrame(rows).unique("id")
    initiated = events.filter(pl.col("event") == "Flex - Engagement Initiated")

    def churn_rows(cutoff: datetime, horizon: int = 30) -> tuple[pl.DataFrame, np.ndarray]:
        history = initiated.filter(pl.col("ts") <= cutoff)
        features = history.group_by("user").agg(
            recency=(pl.lit(cutoff) - pl.col("ts").max()).dt.total_seconds() / 86400,
            frequency=pl.len(),
            recent=(pl.col("ts") > cutoff - timedelta(days=horizon)).sum(),
            tenure=(pl.lit(cutoff) - pl.col("ts").min()).dt.total_seconds() / 86400,
        ).filter(pl.col("recent") > 0).sort("user")
        window = (pl.col("ts") > cutoff) & (pl.col("ts") <= cutoff + timedelta(days=horizon))
        active = set(initiated.filter(window)["user"].to_list())
        return features, np.array([u not in active for u in features["user"].to_list()])

    train_x, train_y = churn_rows(AS_OF - timedelta(days=60))
    test_x, test_y = churn_rows(AS_OF - timedelta(days=30))
    assert test_y.sum() >= 100 and (~test_y).sum() >= 100
    assert train_y.sum() >= 100 and (~train_y).sum() >= 100
    def matrix(frame: pl.DataFrame) -> np.ndarray:
        return np.log1p(frame.select("recency", "frequency", "recent", "tenure").to_numpy())

    model = LogisticRegression().fit(matrix(train_x), train_y)
    model_auc = roc_auc_score(test_y, model.predict_proba(matrix(test_x))[:, 1])
    recency_auc = roc_auc_score(test_y, test_x["recency"].to_numpy())
    assert model_auc > recency_auc + 0.03, (model_auc, recency_auc)

    orders = events.filter((pl.col("event") == "Order Completed") & (pl.col("ts") <= AS_OF - timedelta(days=90)))
    assert orders.group_by("user").len().filter(pl.col("len") >= 2).height >= 100

    inbound = initiated.filter(pl.col("direction") == "Inbound")
    cutoff = AS_OF - timedelta(days=15)
    callers = inbound.filter((pl.col("ts") > cutoff) & (pl.col("ts") <= AS_OF))["user"].n_unique()
    assert callers >= 100


# ----------------------------------------------------------------------------- the starter file


def test_starter_project_file_parses_with_the_named_definitions() -> None:
    from engine.config import load_config

    config = load_config(DATA / "profiles.toml")
    assert config.store.name == "profiles.duckdb"
    assert [t.name for t in config.traits] == [
        "total_inbounds", "frequent_inbound_channel", "total_outbounds", "last_known_agent",
        "last_interaction_duration", "last_sentiment", "inbounds_last_30_days", "channels",
        "lifetime_revenue",
    ]
    assert [(p.name, p.horizon_days) for p in config.predictions] == [
        ("churn_30d", 30), ("ltv_90d", 90), ("likely_to_call_15d", 15),
    ]
    assert config.trait("frequent_inbound_channel").min_frequency == 2


# ----------------------------------------------------------------------------- the benchmark runner


def test_runner_sizes_and_discovery() -> None:
    from benchmarks.__main__ import discover, parse_size, size_label

    assert [parse_size(s) for s in ("1m", "10m", "50m", "200k", "5000")] == [
        1_000_000, 10_000_000, 50_000_000, 200_000, 5000,
    ]
    assert [size_label(n) for n in (1_000_000, 200_000, 1234)] == ["1m", "200k", "1234"]
    assert "generate" not in discover()
    assert all((Path(gen.__file__).parent / f"bench_{name}.py").exists() for name in discover())


def test_runner_takes_medians_per_contender_and_keeps_ratios() -> None:
    from benchmarks.__main__ import markdown, summarise

    runs = [
        {"benchmark": "x", "ratio_to_bare": r, "machine": {"seconds": 99},
         "profiles": {"seconds": s, "peak_rss_mib": 100 + s, "rows_per_s": 1000 / s},
         "results": {"bare": {"wall_seconds": s / 2, "events_per_second": 7}}}
        for s, r in ((1.0, 2.0), (3.0, 4.0), (2.0, 3.0))
    ]
    rows = summarise("x", runs)
    assert [(r.contender, r.seconds, r.peak_rss_mib, r.runs) for r in rows] == [
        ("profiles", 2.0, 102.0, 3), ("results.bare", 1.0, None, 3),
    ]
    assert rows[0].ratios == {"ratio_to_bare": 3.0} and rows[1].ratios == {}
    assert rows[0].rows_per_s == 500.0 and rows[1].rows_per_s == 7.0
    text = markdown(rows, events=1000, machine={"cores": 2}, when="2026-01-01")
    assert "| x | profiles | 3 | 2.00 | 102 | 500 | ratio_to_bare 3.00 |" in text


def test_runner_reads_rate_and_ratio_tables() -> None:
    from benchmarks.__main__ import summarise

    runs = [
        {"contenders": {"engine": {"seconds": s}, "polars": {"seconds": 2 * s}},
         "rows_per_second": {"engine": 100 / s, "polars": 50 / s},
         "ratios": {"engine_vs_polars": 0.5}, "agree": {"polars": True}}
        for s in (1.0, 2.0, 4.0)
    ]
    rows = summarise("traits", runs)
    assert [(r.contender, r.seconds, r.rows_per_s) for r in rows] == [
        ("contenders.engine", 2.0, 50.0), ("contenders.polars", 4.0, 25.0),
    ]
    assert rows[0].ratios == {"engine_vs_polars": 0.5}


def test_plot_uses_the_newest_summary_of_each_size(tmp_path: Path) -> None:
    from benchmarks.plot import latest_summaries, plot, points

    def summary(events: int, seconds: float) -> dict:
        return {"events": events, "table": [
            {"benchmark": "ingest", "contender": "profiles", "seconds": seconds, "peak_rss_mib": 10.0},
            {"benchmark": "traits", "contender": "FAILED (see the .log)", "seconds": None},
        ]}

    for name, content in {
        "2026-01-01-1m.json": summary(1_000_000, 9.0),
        "2026-02-01-1m.json": summary(1_000_000, 3.0),
        "2026-01-15-10m.json": summary(10_000_000, 30.0),
        "ingest-1m.json": {"benchmark": "ingest", "events": 1_000_000},  # a module's own result
    }.items():
        (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
    found = points(latest_summaries(tmp_path))
    assert [(p.benchmark, p.events, p.seconds) for p in found] == [
        ("ingest", 1_000_000, 3.0), ("ingest", 10_000_000, 30.0),
    ]
    out = plot(found, tmp_path / "scaling.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="no runner results"):
        plot([], tmp_path / "none.png")


def test_runs_with_only_add_up_to_one_summary_per_day_and_size(tmp_path, monkeypatch) -> None:
    import benchmarks.__main__ as runner

    monkeypatch.setattr(runner, "discover", lambda: ["alpha", "beta"])
    monkeypatch.setattr(runner, "generate_once", lambda events, log: {"cached": "x"})
    monkeypatch.setattr(runner, "machine", lambda: {"cores": 2})
    monkeypatch.setattr(
        runner, "run_once", lambda name, events, log, budget_gib=None: {"seconds": {"alpha": 1.0, "beta": 2.0}[name]}
    )
    runner.run(1000, only=["alpha"], repeat=1, results_dir=tmp_path)
    summary = runner.run(1000, only=["beta"], repeat=1, results_dir=tmp_path)
    assert [(r["benchmark"], r["seconds"]) for r in summary["table"]] == [("alpha", 1.0), ("beta", 2.0)]
    assert set(summary["runs"]) == {"alpha", "beta"}
    (written,) = tmp_path.glob("*-1k.json")
    assert json.loads(written.read_text())["table"] == summary["table"]
    assert (tmp_path / "scaling.png").exists()

    # a failed benchmark's row and reason are kept too when another one runs later
    def broken(name, events, log, budget_gib=None):
        if name == "alpha":
            raise RuntimeError("benchmark alpha failed (exit 1): disk full")
        return {"seconds": 3.0}

    monkeypatch.setattr(runner, "run_once", broken)
    runner.run(1000, only=["alpha"], repeat=1, results_dir=tmp_path)
    summary = runner.run(1000, only=["beta"], repeat=1, results_dir=tmp_path)
    assert [(r["benchmark"], r["seconds"]) for r in summary["table"]] == [("alpha", None), ("beta", 3.0)]
    assert summary["failures"] == {"alpha": "benchmark alpha failed (exit 1): disk full"}


def test_peak_rss_is_the_process_own_not_its_parents() -> None:
    import subprocess
    import sys

    # the parent grows to ~400 MiB, then starts a small child: the child must report its own peak
    code = (
        "import numpy, subprocess, sys\n"
        "big = numpy.ones(50_000_000)\n"
        "out = subprocess.run([sys.executable, '-c', 'from benchmarks.machine import peak_rss_mib; "
        "print(peak_rss_mib())'], capture_output=True, text=True, check=True).stdout\n"
        "print(out.strip())\n"
    )
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 cwd=Path(gen.__file__).parents[1]).stdout.strip())
    assert child < 300


# ----------------------------------------------------------------------- shared data at every size
def test_one_ndjson_per_size_plain_below_big_gzipped_from_big(tmp_path: Path, monkeypatch) -> None:
    import gzip

    from benchmarks import datasets

    monkeypatch.setattr(datasets, "BIG", 300)
    small, big = datasets.ndjson(200, tmp_path), datasets.ndjson(300, tmp_path)
    assert (small.name, big.name) == ("ingest-200.ndjson", "events-300.ndjson.gz")
    assert big.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(big.read_bytes()) == b"".join(datasets.lines(big))
    assert len(list(datasets.lines(small))) == 200 and len(list(datasets.lines(big))) == 300
    assert datasets.ndjson(300, tmp_path) == big and not list(tmp_path.glob("*.tmp"))
    # a plain file of a big size written before (the 10M cache) is used as it is
    (tmp_path / "ingest-400.ndjson").write_bytes(b"{}\n")
    assert datasets.ndjson(400, tmp_path).name == "ingest-400.ndjson"


def test_the_ingested_store_is_kept_once_and_moved_only_from_big(tmp_path: Path, monkeypatch) -> None:
    from benchmarks import datasets

    monkeypatch.setattr(datasets, "BIG", 1000)
    first, second = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    assert datasets.keep_store(first, 10, tmp_path) and not first.exists()
    assert not datasets.keep_store(second, 10, tmp_path) and second.exists()
    shared = datasets.ingested_store(10, tmp_path)
    assert shared.read_bytes() == b"first"
    datasets.consume_at_big(shared, tmp_path / "copy.duckdb", 999)
    assert shared.exists() and (tmp_path / "copy.duckdb").read_bytes() == b"first"
    datasets.consume_at_big(shared, tmp_path / "moved.duckdb", 1000)
    assert not shared.exists() and (tmp_path / "moved.duckdb").read_bytes() == b"first"


def test_clean_deletes_one_sizes_stores_and_keeps_its_ndjson(tmp_path: Path) -> None:
    from benchmarks.__main__ import clean

    names = ["events-500.ndjson.gz", "identity-500.duckdb", "identity-500.duckdb.wal", "traits-500-map.parquet",
             "incr-500-base.ndjson.gz", "traits-5000.duckdb", "ingest-50.ndjson", "generate-500.json"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    gone = clean(500, tmp_path)
    assert sorted(p.name for p in gone) == sorted(names[1:5])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[0], *names[5:]])


def test_the_incremental_split_streams_and_keeps_the_sources_compression(tmp_path: Path, monkeypatch) -> None:
    import benchmarks.bench_incremental as incremental
    from benchmarks import datasets

    monkeypatch.setattr(datasets, "BIG", 1000)
    monkeypatch.setattr(incremental, "CACHE", tmp_path)
    source = datasets.ndjson(2000, tmp_path)
    base, new = incremental.split(2000)
    assert (base.name, new.name) == ("incr-2000-base.ndjson.gz", "incr-2000-new.ndjson.gz")
    assert base.read_bytes()[:2] == new.read_bytes()[:2] == b"\x1f\x8b"
    everything = list(datasets.lines(source))
    cut = 2000 - 2000 * 8 // 1000
    held = [line for i, line in enumerate(everything) if i >= cut or i % 500 == 499]
    assert list(datasets.lines(new)) == held
    assert list(datasets.lines(base)) == [line for i, line in enumerate(everything) if not (i >= cut or i % 500 == 499)]


def test_a_capped_run_is_killed_over_its_budget_and_untouched_under_it() -> None:
    import sys

    from benchmarks.machine import run_capped

    grow = "import time\nblocks = []\nfor _ in range(60):\n    blocks.append(bytearray(10 * 2**20))\n    time.sleep(0.02)\nprint('done')"
    killed = run_capped([sys.executable, "-c", grow], budget_mib=200, poll_seconds=0.05)
    assert killed.over_budget and killed.returncode != 0 and "done" not in killed.stdout
    assert killed.peak_tree_mib > 200
    fine = run_capped([sys.executable, "-c", grow], budget_mib=None, poll_seconds=0.05)
    assert not fine.over_budget and fine.returncode == 0 and fine.stdout.strip() == "done"
    assert fine.peak_tree_mib > 500


def test_a_failing_worker_is_a_failed_contender_under_a_budget_and_an_error_without(monkeypatch) -> None:
    """A big run keeps the contenders that finished when one dies (a full disk); a small run stops."""
    import sys

    from benchmarks.machine import BUDGET_ENV, run_worker

    crash = [sys.executable, "-c", "import sys; sys.exit('IO Error: No space left on device')"]
    fine = [sys.executable, "-c", "print('{\"seconds\": 1.5}')"]
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert run_worker(fine, "fine") == {"seconds": 1.5}
    with pytest.raises(RuntimeError, match="No space left"):
        run_worker(crash, "crash")
    monkeypatch.setenv(BUDGET_ENV, str(8 * 1024))
    failed = run_worker(crash, "crash")
    assert failed["failed"] == "exit 1: IO Error: No space left on device" and failed["seconds"] is None


def test_a_contender_over_budget_is_a_row_that_says_so_and_its_ratios_are_left_out() -> None:
    from benchmarks.__main__ import markdown, summarise
    from benchmarks.bench_traits import RATIOS, _ratios

    results = {name: {"seconds": 2.0, "cpu_seconds": 3.0} for pair in RATIOS.values() for name in pair}
    results["pandas"] = {"failed": "over the RSS budget: killed at 11,000 MiB", "seconds": None}
    ratios = _ratios(results, "seconds")
    assert "engine_vs_pandas" not in ratios and ratios["engine_vs_polars"] == 1.0
    run = {"contenders": results, "ratios": ratios}
    rows = {r.contender: r for r in summarise("traits", [run])}
    assert rows["contenders.pandas"].seconds is None
    assert rows["contenders.pandas"].note == "over the RSS budget: killed at 11,000 MiB"
    text = markdown(list(rows.values()), events=10, machine={}, when="2026-01-01")
    assert "| traits | contenders.pandas | 1 | - | - | - | failed: over the RSS budget" in text


def test_the_runner_runs_the_benchmarks_in_the_order_the_data_flows() -> None:
    from benchmarks.__main__ import discover

    names = discover()
    # ingest leaves the shared store; identity reads it; incremental derives its base from it at
    # 50M; traits takes it over at 50M, so it comes last
    assert names.index("ingest") < names.index("identity") < names.index("incremental") < names.index("traits")
    assert names[-1] == "traits"


def test_from_big_the_runner_deletes_what_a_benchmark_built_for_itself(tmp_path, monkeypatch) -> None:
    import benchmarks.__main__ as runner
    from benchmarks.datasets import own_files

    cache, results = tmp_path / "cache", tmp_path / "results"
    cache.mkdir()
    names = ["traits-5000.duckdb", "traits-5000-map.parquet", "identity-5000.duckdb", "events-5000.ndjson.gz",
             "traits-50000.duckdb", "incr-5000-base.ndjson.gz"]
    for name in names:
        (cache / name).write_bytes(b"x")
    assert [p.name for p in own_files("traits", 5000, cache)] == ["traits-5000-map.parquet", "traits-5000.duckdb"]
    assert [p.name for p in own_files("incremental", 5000, cache)] == ["incr-5000-base.ndjson.gz"]
    assert own_files("identity", 5000, cache) == []
    monkeypatch.setattr(runner, "CACHE", cache)
    monkeypatch.setattr(runner, "generate_once", lambda events, log: {"cached": "x"})
    monkeypatch.setattr(runner, "machine", lambda: {"cores": 2})
    monkeypatch.setattr(runner, "run_once", lambda name, events, log, budget_gib=None: {"seconds": 1.0})
    monkeypatch.setattr(runner, "BIG", 10_000)
    runner.run(5000, only=["traits"], repeat=1, results_dir=results)
    assert len(list(cache.iterdir())) == len(names)  # below BIG: everything is kept for the next run
    monkeypatch.setattr(runner, "BIG", 5000)
    runner.run(5000, only=["traits"], repeat=1, results_dir=results)
    assert sorted(p.name for p in cache.iterdir()) == sorted(set(names) - {"traits-5000.duckdb",
                                                                          "traits-5000-map.parquet"})
