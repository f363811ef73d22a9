"""The CLI end to end on a tiny project: exit codes, summaries, show / explain / export."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from engine.cli import main

CASES = Path(__file__).resolve().parents[1] / "cases" / "cli"
AS_OF = "2025-03-01T00:00:00Z"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    for name in ("profiles.toml", "events.ndjson"):
        shutil.copy(CASES / name, tmp_path / name)
    return tmp_path


def cli(project: Path, *args: str) -> int:
    return main(["--config", str(project / "profiles.toml"), "--quiet", *args])


def inbound_call(project: Path, message_id: str, timestamp: str) -> Path:
    """A one-event file: user u1's inbound SMS engagement at ``timestamp``."""
    path = project / f"{message_id}.ndjson"
    message = {"type": "track", "event": "Flex - Engagement Initiated", "messageId": message_id, "userId": "u1",
               "timestamp": timestamp, "properties": {"direction": "Inbound", "channelType": "sms"}}
    path.write_text(json.dumps(message) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def computed(project: Path, capsys) -> Path:
    assert cli(project, "run", str(project / "events.ndjson"), "--as-of", AS_OF) == 0
    capsys.readouterr()
    return project


def test_run_summarises_every_stage_and_keeps_quarantined_records(project, capsys, monkeypatch):
    monkeypatch.chdir(project)  # a short path: a long one is folded over lines in the summary table
    assert cli(project, "run", "events.ndjson", "--as-of", AS_OF) == 0
    out = capsys.readouterr().out
    assert "events.ndjson" in out
    assert "run finished" in out
    assert cli(project, "quarantine") == 0
    out = capsys.readouterr().out
    assert "Quarantined records: 2" in out


def test_strict_turns_quarantined_records_into_exit_1(project, capsys):
    assert cli(project, "ingest", "--strict", str(project / "events.ndjson")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 record(s) were quarantined")
    assert "Traceback" not in err


def test_reingesting_says_already_ingested(project, capsys):
    assert cli(project, "ingest", str(project / "events.ndjson")) == 0
    capsys.readouterr()
    assert cli(project, "ingest", str(project / "events.ndjson")) == 0
    assert "already ingested" in capsys.readouterr().out


def test_a_missing_input_is_one_error_line_and_exit_1(project, capsys):
    assert cli(project, "ingest", str(project / "nope.ndjson")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.ndjson" in err and "Traceback" not in err


def test_usage_errors_exit_2(project, capsys):
    assert cli(project, "compute", "--no-such-option") == 2
    assert main(["no-such-command"]) == 2


@pytest.mark.parametrize("args", [
    ("compute", "--as-of", "yesterday"),
    ("explain", "user_id:u1", "total_inbounds", "--as-of", "2025-13-01"),
    ("watch", ".", "--interval", "-1"),
])
def test_a_bad_option_value_is_a_usage_error_naming_it(project, capsys, args):
    """cli.md: 2 for usage errors; a malformed --as-of or a negative --interval is one."""
    assert cli(project, *args) == 2
    err = capsys.readouterr().err
    assert f"Invalid value for '{args[-2]}'" in err and "Traceback" not in err


def test_debug_shows_the_traceback(project):
    from engine.errors import ProfilesError

    with pytest.raises(ProfilesError):
        main(["--config", str(project / "profiles.toml"), "--debug", "ingest", str(project / "nope.ndjson")])


def test_show_finds_a_profile_by_any_identifier(computed, capsys):
    assert cli(computed, "show", "email:ANA@example.com") == 0
    out = capsys.readouterr().out
    assert "user_id" in out and "u1" in out and "ana@example.com" in out
    assert "total_inbounds" in out
    assert cli(computed, "show", "user_id:nobody") == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_explain_agrees_with_the_spec_example(computed, capsys):
    assert cli(computed, "explain", "user_id:u1", "last_duration", "--as-of", AS_OF) == 0
    out = capsys.readouterr().out
    assert "95.5" in out and "m2" in out and "rejected" in out
    assert cli(computed, "explain", "user_id:u1", "no_such_trait") == 1
    assert "total_inbounds" in capsys.readouterr().err


def test_export_follows_the_contract_in_every_format(computed, capsys):
    for fmt in ("parquet", "csv", "ndjson"):
        out = computed / f"export.{fmt}"
        assert cli(computed, "export", "--out", str(out)) == 0
    frame = pl.read_parquet(computed / "export.parquet")
    assert frame.columns == [
        "profile_id", "identifiers", "total_inbounds", "frequent_inbound_channel", "last_duration", "channels",
    ]
    assert frame["profile_id"].to_list() == sorted(frame["profile_id"].to_list())
    u1 = frame.filter(pl.col("identifiers").list.contains("user_id:u1")).row(0, named=True)
    assert u1["identifiers"] == ["email:ana@example.com", "user_id:u1"]
    assert u1["total_inbounds"] == 4
    assert u1["frequent_inbound_channel"] == "chat"
    assert u1["last_duration"] == 95.5
    assert u1["channels"] == ["chat", "voice"]
    assert pq.read_schema(computed / "export.parquet").metadata[b"as_of"].startswith(b"2025-03-01T00:00:00")

    lines = (computed / "export.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# as_of: 2025-03-01T00:00:00")
    rows = list(csv.DictReader(lines[1:]))
    anon = next(r for r in rows if "anonymous_id:anon-7" in r["identifiers"])
    assert json.loads(anon["channels"]) == ["chat"]
    assert anon["last_duration"] == ""

    records = [json.loads(line) for line in (computed / "export.ndjson").read_text().splitlines()]
    assert len(records) == frame.height
    meta = json.loads((computed / "export.ndjson.meta.json").read_text())
    assert meta["as_of"].startswith("2025-03-01T00:00:00")


def test_traits_lists_definitions_and_stats(computed, capsys):
    assert cli(computed, "traits") == 0
    assert "frequent_inbound_channel" in capsys.readouterr().out
    assert cli(computed, "traits", "--stats") == 0
    assert "last_duration" in capsys.readouterr().out


def test_trait_stats_say_when_there_are_none_or_they_are_stale(tmp_path, computed, capsys, monkeypatch):
    bare = tmp_path / "bare"
    bare.mkdir()
    monkeypatch.chdir(bare)  # no profiles.toml here: --store alone runs on the defaults
    store = ["--store", str(bare / "s.duckdb"), "--quiet"]
    assert main([*store, "ingest", str(computed / "events.ndjson")]) == 0
    capsys.readouterr()
    assert main([*store, "traits", "--stats"]) == 0
    assert "run 'profiles compute' first" in capsys.readouterr().out
    config = computed / "profiles.toml"
    config.write_text(config.read_text().replace("min_frequency = 2", "min_frequency = 3"), encoding="utf-8")
    assert cli(computed, "traits", "--stats") == 0
    captured = capsys.readouterr()
    assert "last_duration" in captured.out
    assert "warning: the trait definitions" in captured.err


def test_init_writes_a_valid_starter_and_refuses_to_overwrite(tmp_path, capsys):
    from engine.config import load_config

    assert main(["init", str(tmp_path / "new")]) == 0
    config = load_config(tmp_path / "new" / "profiles.toml")
    assert len(config.traits) >= 6
    assert main(["init", str(tmp_path / "new")]) == 1
    assert "--force" in capsys.readouterr().err


def test_data_that_looks_like_markup_prints_as_sent(project, capsys):
    events = project / "odd.ndjson"
    events.write_text(
        '{"type":"track","event":"Flex - Engagement Initiated","messageId":"x1","userId":"[b]bold:smile:",'
        '"timestamp":"2025-02-01T10:00:00Z","properties":{"direction":"Inbound","channelType":"v [/]"}}\n'
        '{"type":"track","event":"E [/]"}\n',
        encoding="utf-8",
    )
    assert cli(project, "run", str(events), "--as-of", AS_OF) == 0
    capsys.readouterr()
    outputs = {}
    for args in (("quarantine",), ("show", "user_id:[b]bold:smile:"),
                 ("explain", "user_id:[b]bold:smile:", "channels", "--as-of", AS_OF)):
        assert cli(project, *args) == 0, args
        outputs[args[0]] = capsys.readouterr().out
    assert "E [/]" in outputs["quarantine"]
    assert "[b]bold:smile:" in outputs["show"]
    assert "v [/]" in outputs["explain"]
    assert cli(project, "show", "user_id:-1") == 1
    assert "user_id:-1" in capsys.readouterr().err


def test_csv_writes_instants_alike_alone_and_inside_lists(tmp_path):
    from datetime import UTC, datetime

    from engine.export import _csv_ready, _CSV_DATETIME_CHRONO

    at = datetime(2025, 1, 1, 9, 0, 0, 500000, tzinfo=UTC)
    df = pl.DataFrame({"t": [at], "ts": [[at, at.replace(microsecond=0)]]})
    out = tmp_path / "t.csv"
    _csv_ready(df).write_csv(out, datetime_format=_CSV_DATETIME_CHRONO)
    row = next(csv.DictReader(out.open(encoding="utf-8")))
    assert row["t"] == "2025-01-01T09:00:00.500000Z"
    assert json.loads(row["ts"]) == ["2025-01-01T09:00:00.500000Z", "2025-01-01T09:00:00.000000Z"]


def test_show_and_export_warn_when_the_store_moved_on(computed, capsys):
    out = computed / "e.csv"
    assert cli(computed, "export", "--out", str(out)) == 0
    assert "warning" not in capsys.readouterr().err
    late = inbound_call(computed, "late1", "2025-02-20T10:00:00Z")
    steps = [
        (("ingest", str(late)), "1 ingested event(s) are not resolved"),
        (("resolve",), "1 event(s) were ingested after the last compute"),
        (("compute", "--as-of", AS_OF), None),
    ]
    for command, expected in steps:
        assert cli(computed, *command) == 0
        capsys.readouterr()
        for args in (("export", "--out", str(out)), ("show", "user_id:u1")):
            assert cli(computed, *args) == 0
            err = capsys.readouterr().err
            if expected is None:
                assert "warning" not in err
            else:
                assert f"warning: {expected}" in err
    config = computed / "profiles.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('"Inbound"', '"Outbound"'), encoding="utf-8")
    assert cli(computed, "export", "--out", str(out)) == 0
    assert "trait definitions in" in capsys.readouterr().err


def test_scores_and_traits_as_of_different_instants_are_named(tmp_path):
    from datetime import UTC, datetime

    from engine.compute import definitions_hash
    from engine.config import parse_config
    from engine.freshness import stale_warnings
    from engine.store import Store

    config = parse_config({
        "traits": [{"name": "n", "type": "event_counter", "event": "E"}],
        "predictions": [{"name": "churn", "type": "churn", "event": "E", "horizon_days": 30}],
    }, root=tmp_path)
    store = Store.open(None)
    traits_at, scored_at = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)
    store.con.execute(
        "INSERT INTO trait_runs VALUES (?, ?, ?, 1, ['n'], 0.1, true)",
        [traits_at, definitions_hash(config.traits), datetime.now(UTC)],
    )
    assert stale_warnings(store, config) == []
    store.con.execute(
        "INSERT INTO prediction_runs VALUES ('churn', ?, 'scored', 'm', '', 'h', NULL, NULL, NULL)", [scored_at]
    )
    (warning,) = stale_warnings(store, config)
    assert "prediction scores are as of 2025-04-01" in warning and "trait values as of 2025-03-01" in warning


def test_explain_defaults_to_the_as_of_of_the_stored_values(computed, capsys):
    later = inbound_call(computed, "later1", "2025-06-01T10:00:00Z")
    assert cli(computed, "ingest", str(later)) == 0
    assert cli(computed, "resolve") == 0
    capsys.readouterr()
    assert cli(computed, "explain", "user_id:u1", "channels") == 0
    assert 'value: [\'chat\', \'voice\']' in capsys.readouterr().out
    assert cli(computed, "explain", "user_id:u1", "channels", "--as-of", "2025-07-01") == 0
    assert "'sms'" in capsys.readouterr().out.split("value:")[-1]


def test_show_says_why_a_prediction_has_no_score(tmp_path):
    from datetime import UTC, datetime

    from engine.config import parse_config
    from engine.store import Store
    from engine.views import _predictions

    config = parse_config({"predictions": [
        {"name": p, "type": t, "event": "E", "horizon_days": 30} | ({"property": "x"} if t == "ltv" else {})
        for p, t in (("c", "churn"), ("l", "ltv"), ("g", "goal"), ("never", "goal"), ("new", "churn"))
    ]}, root=tmp_path)
    store = Store.open(None)
    at = datetime(2025, 3, 1, tzinfo=UTC)
    for name, status, reason in (("c", "scored", ""), ("l", "scored", ""), ("g", "skipped", "too few events"),
                                 ("new", "scored", "")):
        store.con.execute(
            "INSERT INTO prediction_runs VALUES (?, ?, ?, 'gbt', ?, 'h', NULL, NULL, NULL)", [name, at, status, reason]
        )
    store.con.execute("INSERT INTO prediction_scores VALUES ('c', 'p1', 0.25, 40.0, 'gbt', ?)", [at])
    store.con.execute("INSERT INTO prediction_scores VALUES ('l', 'p1', NULL, NULL, 'btyd', ?)", [at])
    notes = dict(_predictions(store, config, "p1").select("prediction", "note").iter_rows())
    assert notes == {
        "c": "gbt",
        "l": "not eligible: fewer than two counting events up to as_of",
        "g": "not scored: too few events",
        "never": "not predicted yet: run 'profiles predict'",
        "new": "not scored yet: the profile is newer than the last 'profiles predict'",
    }


def test_compute_warns_about_events_it_cannot_see(computed, capsys):
    late = inbound_call(computed, "late2", "2025-02-20T10:00:00Z")
    assert cli(computed, "ingest", str(late)) == 0
    capsys.readouterr()
    assert cli(computed, "compute", "--as-of", AS_OF) == 0
    assert "warning: 1 ingested event(s) are not resolved" in capsys.readouterr().err


def test_explain_a_trait_added_since_the_last_compute(computed, capsys):
    config = computed / "profiles.toml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + '\n[[traits]]\nname = "newt"\ntype = "last"\nevent = "Flex - Engagement Initiated"\n'
        'property = "duration"\nvalue_type = "boolean"\n',
        encoding="utf-8",
    )
    assert cli(computed, "explain", "user_id:u1", "newt", "--as-of", AS_OF) == 0
    out = capsys.readouterr().out
    assert "newt (last)" in out and "rejected" in out


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        (("export", "--out", "x.csv", "--format", "xml"), 2, "xml"),
        (("init", "FILE"), 1, "is a file, not a folder"),
        (("--config", "DIR", "show", "x"), 1, "is a folder, not a project file"),
        (("compute", "--as-of", "0001-01-02"), 0, ""),
    ],
)
def test_user_mistakes_get_one_error_line(project, capsys, args, status, words):
    (project / "FILE").write_text("x", encoding="utf-8")
    (project / "DIR").mkdir()
    args = tuple(str(project / a) if a in ("FILE", "DIR") else a for a in args)
    if args[0] == "compute":
        assert cli(project, "ingest", str(project / "events.ndjson")) == 0
        assert cli(project, "resolve") == 0
    base = [] if args[0] == "--config" else ["--config", str(project / "profiles.toml")]
    assert main([*base, "--quiet", *args]) == status
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_with_store_and_no_project_file_the_defaults_are_used(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    events = inbound_call(tmp_path, "m1", "2024-03-01T10:00:00Z")
    store = str(tmp_path / "s.duckdb")
    assert main(["--store", store, "--quiet", "ingest", str(events)]) == 0
    assert main(["--store", store, "--quiet", "resolve"]) == 0
    assert main(["--store", store, "--quiet", "show", "user_id:u1"]) == 0
    captured = capsys.readouterr()
    assert "note: no profiles.toml here: using the default identity rules" in captured.err
    assert "user_id" in captured.out
    # without --store, or with an explicit --config that is missing, it stays an error
    assert main(["--quiet", "ingest", str(events)]) == 1
    assert main(["--config", "missing.toml", "--store", store, "--quiet", "ingest", str(events)]) == 1
    assert "missing.toml: project file not found" in capsys.readouterr().err
