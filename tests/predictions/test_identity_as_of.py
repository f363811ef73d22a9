"""Training rows use the identity as of their cutoff: an identity merge after the cutoff cannot
change a training row's features, and its label goes to the profile it became by as_of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from engine.identity.resolve import resolve
from engine.identity.rules import parse_identity
from engine.predict import _training_rows, load_events, profile_roots
from engine.store import Store
from predictions.definitions import parse_predictions
from predictions.features import FeatureSpec
from predictions.labels import LABEL_COLUMNS
from predictions.pipeline import training_cutoffs
from tests.identity.helpers import ev, load

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
H = 30
PRED = parse_predictions([{"name": "goal", "type": "goal", "event": "Test", "horizon_days": H}], path=None)


def _events(*, link: bool) -> list[dict]:
    day = lambda d: AS_OF - timedelta(days=d)  # noqa: E731
    out = [ev(f"x{d}", at=day(d), anonymous_id="x") for d in (200, 150, 100, 80, 45, 40, 20, 3)]
    out += [ev(f"u{d}", at=day(d), user_id="u") for d in (190, 120, 70, 50, 10)]
    if link:  # after the last training cutoff, inside its label window
        out.append(ev("link", at=day(25), type="identify", user_id="u", anonymous_id="x"))
    return out


def _rows(evs: list[dict]) -> tuple[pl.DataFrame, list[datetime]]:
    """The training rows keyed by profile id, as ``run_predictions`` builds them."""
    with Store.open(None) as s:
        load(s, evs)
        resolve(s, parse_identity(None))
        frame, _ = load_events(s, PRED, as_of=AS_OF)
        ids = s.con.sql("SELECT profile_id, pid FROM _pred_profiles").pl()
        ev_ = frame.select("pid", "jid", "ts", "ev", pl.col("c0").alias("counting"), pl.col("a0").alias("amount"),
                           pl.col("u0").alias("unreadable"))
        cutoffs = training_cutoffs(AS_OF, H, ev_["ts"].min())
        spec = FeatureSpec(vocabulary=(), horizon_days=H, with_rfm=False)
        rows = _training_rows(ev_, cutoffs, spec, H, None, lambda t: profile_roots(s, t), AS_OF)
        return rows.join(ids, on="pid").drop("pid").sort("cutoff", "profile_id"), cutoffs


def test_a_merge_after_the_cutoff_does_not_change_a_training_row():
    merged, cutoffs = _rows(_events(link=True))
    apart, _ = _rows(_events(link=False))
    features = [c for c in merged.columns if c not in LABEL_COLUMNS]
    assert merged.select(features).equals(apart.select(features))
    # two profiles at every cutoff (the merge is later), one row each
    assert merged.group_by("cutoff").len()["len"].to_list() == [2] * len(cutoffs)
    # the label of both rows at the last cutoff is what the merged profile did in (c, c + H]
    # (x20, x3, u10; the identify does not count); apart, each profile's own events
    last = max(cutoffs)
    got = merged.filter(pl.col("cutoff") == last)["label_count"].to_list()
    assert got == [3, 3]
    assert sorted(apart.filter(pl.col("cutoff") == last)["label_count"].to_list()) == [1, 2]
