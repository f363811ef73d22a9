"""Percentiles, grades and metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predictions.evaluate import (
    AUC_GRADES,
    SPEARMAN_GRADES,
    classification_metrics,
    grade,
    percentiles,
    regression_metrics,
)


def test_percentile_is_the_share_of_scored_profiles_with_a_lower_score():
    got = percentiles(np.array([0.1, 0.5, 0.5, 0.9, np.nan]))
    assert got[:4].tolist() == [0.0, 25.0, 25.0, 75.0]  # ties share the lower value
    assert np.isnan(got[4])  # unscored stays null and does not count


def test_percentile_80_selects_the_top_20_percent():
    p = percentiles(np.arange(1000, dtype=float))
    assert (p >= 80).sum() == 200 and p.min() == 0 and p.max() < 100


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_percentile_matches_naive_definition(values):
    got = percentiles(np.array(values))
    for v, g in zip(values, got):
        want = 100.0 * sum(o < v for o in values) / len(values)
        assert g == pytest.approx(want)
        assert 0 <= g <= 100


@pytest.mark.parametrize(("value", "thresholds", "want"), [
    (0.59, AUC_GRADES, "Poor"), (0.6, AUC_GRADES, "Fair"), (0.75, AUC_GRADES, "Good"), (0.8, AUC_GRADES, "Excellent"),
    (0.1, SPEARMAN_GRADES, "Poor"), (0.2, SPEARMAN_GRADES, "Fair"), (0.5, SPEARMAN_GRADES, "Good"),
    (0.65, SPEARMAN_GRADES, "Excellent"), (float("nan"), AUC_GRADES, "Poor"),
])
def test_grades_follow_documented_thresholds(value, thresholds, want):
    assert grade(value, thresholds) == want


def test_classification_metrics_on_a_perfect_ranking():
    y = np.array([0] * 90 + [1] * 10)
    p = np.linspace(0.01, 0.99, 100)
    m = classification_metrics(y, p)
    assert m["auc"] == 1.0 and m["lift_top_10"] == pytest.approx(10.0)
    assert m["lift_chart"][0]["cumulative_share_of_positives"] == 1.0
    assert len(m["calibration"]) == 10


def test_regression_metrics():
    y = np.array([0.0] * 18 + [50.0, 100.0])
    m = regression_metrics(y, y * 0.5)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["top_decile_value_share"] == 1.0
    assert m["mae"] == pytest.approx(75 / 20) and m["rmse"] == pytest.approx(np.sqrt((25**2 + 50**2) / 20))
