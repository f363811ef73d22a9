"""Point-in-time features and labels: equal to a naive oracle, and blind to the future (no leakage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predictions.features import FeatureSpec, build_features, choose_vocabulary, slug
from predictions.labels import attach_labels, build_labels

CUTOFF = datetime(2025, 1, 1, tzinfo=UTC)
H = 30
SPEC = FeatureSpec(vocabulary=((0, "Order Completed"), (2, "Page Viewed")), horizon_days=H, with_rfm=True)
NAMES = {0: "Order Completed", 1: "Signed Up", 2: "Page Viewed"}

event_st = st.tuples(
    st.integers(0, 4),  # pid
    st.integers(-200 * 24, 60 * 24),  # hours from the cutoff
    st.sampled_from([0, 1, 2, None]),  # event code
    st.booleans(),  # counting
    st.one_of(st.none(), st.floats(0, 500, allow_nan=False)),  # amount
)


def frame(rows) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "pid": [r[0] for r in rows],
            "ts": [CUTOFF + timedelta(hours=r[1]) for r in rows],
            "ev": [r[2] for r in rows],
            "counting": [r[3] for r in rows],
            "amount": [r[4] for r in rows],
        },
        schema={"pid": pl.Int64, "ts": pl.Datetime("us", "UTC"), "ev": pl.Int32, "counting": pl.Boolean,
                "amount": pl.Float64},
    )


def oracle(rows, cutoff: datetime) -> dict[int, dict[str, float | None]]:
    """Naive per-profile features, one event at a time."""
    out: dict[int, dict[str, float | None]] = {}
    for pid in sorted({r[0] for r in rows}):
        days = [((cutoff - (CUTOFF + timedelta(hours=r[1]))) / timedelta(days=1), r) for r in rows
                if r[0] == pid and CUTOFF + timedelta(hours=r[1]) <= cutoff]
        if not days:
            continue
        target = [d for d, r in days if r[3]]
        amounts = [r[4] for _, r in days if r[3] and r[4] is not None]
        f: dict[str, float | None] = {
            "events_count_all": len(days),
            "events_count_7d": sum(d < 7 for d, _ in days),
            "target_count_30d": sum(d < 30 for d in target),
            "target_count_all": len(target),
            "target_recency_days": min(target) if target else None,
            "recency_days": min(d for d, _ in days),
            "tenure_days": max(d for d, _ in days),
            "ev_order_completed_count_30d": sum(d < 30 and r[2] == 0 for d, r in days),
            "ev_order_completed_count_all": sum(r[2] == 0 for d, r in days),
            "ev_page_viewed_recency_days": min((d for d, r in days if r[2] == 2), default=None),
            "rfm_monetary_sum": sum(amounts),
            "rfm_frequency": max(len(target) - 1, 0),
        }
        ordered = sorted(target, reverse=True)  # days before cutoff, oldest first
        gaps = [a - b for a, b in zip(ordered, ordered[1:])]
        f["target_gap_max_days"] = max(gaps) if gaps else None
        out[pid] = f
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(event_st, max_size=40))
def test_features_equal_the_naive_oracle(rows):
    got = build_features(frame(rows), cutoffs=[CUTOFF], spec=SPEC)
    want = oracle(rows, CUTOFF)
    assert got["pid"].to_list() == sorted(want)
    for row in got.iter_rows(named=True):
        for key, value in want[row["pid"]].items():
            if value is None:
                assert row[key] is None, key
            else:
                assert row[key] == pytest.approx(value, abs=1e-6), key


@settings(max_examples=40, deadline=None)
@given(st.lists(event_st, max_size=30), st.lists(event_st, min_size=1, max_size=10))
def test_an_event_after_the_cutoff_cannot_change_a_training_row(rows, later):
    """Adding events after the cutoff (also for new profiles) leaves every feature row of that cutoff
    identical; labels only move for events inside (cutoff, cutoff + H]."""
    future = [(p, abs(h) + 1, e, c, a) for p, h, e, c, a in later]  # strictly after the cutoff
    before = build_features(frame(rows), cutoffs=[CUTOFF], spec=SPEC)
    after = build_features(frame(rows + future), cutoffs=[CUTOFF], spec=SPEC)
    assert before.equals(after)

    beyond = [(p, H * 24 + abs(h) + 1, e, c, a) for p, h, e, c, a in later]  # after cutoff + H
    labels = build_labels(frame(rows), cutoffs=[CUTOFF], horizon_days=H)
    assert labels.equals(build_labels(frame(rows + beyond), cutoffs=[CUTOFF], horizon_days=H))


def test_labels_count_only_the_window_after_the_cutoff():
    rows = [
        (1, 0, 0, True, 10.0),  # at the cutoff: a feature, not a label
        (1, 1, 0, True, 5.0),  # inside (c, c + H]
        (1, H * 24, 0, True, 7.0),  # exactly c + H: inside
        (1, H * 24 + 1, 0, True, 100.0),  # after: outside
        (1, 2, 1, False, 99.0),  # not counting
    ]
    labels = build_labels(frame(rows), cutoffs=[CUTOFF], horizon_days=H)
    assert labels.row(0, named=True) == {"pid": 1, "cutoff": CUTOFF, "label_count": 2, "label_value": 12.0,
                                         "label_next_days": pytest.approx(1 / 24), "label_unreadable": 0}
    both = attach_labels(build_features(frame(rows + [(2, -5, 1, False, None)]), cutoffs=[CUTOFF], spec=SPEC),
                         labels)
    assert both.filter(pl.col("pid") == 2)["label_count"].to_list() == [0]


def test_vocabulary_comes_from_history_before_the_earliest_cutoff():
    rows = [(1, -10, 1, False, None)] * 3 + [(1, -10, 0, False, None)] + [(1, 5, 2, False, None)] * 9
    vocab = choose_vocabulary(frame(rows), NAMES, before=CUTOFF, k=2)
    assert vocab == ((1, "Signed Up"), (0, "Order Completed"))


def test_feature_names_are_deterministic():
    assert slug("Flex - Engagement Initiated") == "flex_engagement_initiated"
    assert slug("2FA Enabled") == "e_2fa_enabled"
    spec = FeatureSpec(vocabulary=((3, "A b"), (4, "a-b")), horizon_days=30)
    assert spec.column_names() == {3: "ev_a_b", 4: "ev_a_b_2"}
