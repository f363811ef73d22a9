"""``profiles demo`` from an empty folder: the whole pipeline, and its "try next" commands work."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from engine.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    store = folder / "profiles-demo.duckdb"
    store.write_text("an old file the demo must replace")
    return folder, store


def test_demo_runs_everything_and_its_suggestions_work(demo, capsys, monkeypatch):
    folder, store = demo
    monkeypatch.chdir(folder)
    assert main(["--quiet", "demo"]) == 0
    out = capsys.readouterr().out
    assert f"Store: {store}" in out
    for stage in ("Identity resolution", "Computed", "churn_30d", "ltv_90d", "A few profiles"):
        assert stage in out, stage
    suggestions = re.findall(r"^\s+profiles (--config \S+ (?:show|explain|quarantine) .*)$", out, flags=re.M)
    assert len(suggestions) >= 2
    for line in suggestions:
        assert main(["--quiet", *shlex.split(line)]) == 0, line
    shown = capsys.readouterr().out
    assert "Identifiers" in shown and "counted" in shown.lower()


def test_demo_predictions_beat_their_baselines_and_write_reports(demo):
    folder, _ = demo
    reports = folder / "profiles-demo-reports"
    churn = json.loads((reports / "churn_30d.json").read_text())
    assert (reports / "churn_30d.html").is_file()
    text = json.dumps(churn)
    assert "auc" in text.lower()
    model_auc, baseline_auc = _aucs(churn)
    assert model_auc > baseline_auc


def _aucs(report: dict) -> tuple[float, float]:
    """(the chosen model's holdout AUC, the naive baseline's), from the report's JSON."""
    metrics = report["holdout"]
    return metrics[report["model"]]["auc"], metrics["baseline"]["auc"]
