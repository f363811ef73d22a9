"""``profiles predict``: load the events once, train and score every prediction, write scores and reports.

The only prediction module that reads the store. It loads a slim event frame (profile index,
time, event-name code, and per prediction its counting flag and amount, with conditions and the
amount property evaluated in the same DuckDB query), hands it to the pure modules of
``predictions/`` and writes ``prediction_scores`` and ``prediction_runs``. A prediction with too
little data is *skipped* with the reason: its old scores are removed, never left stale.
"""

from __future__ import annotations

import json
import time
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.config import definition_hash
from engine.errors import DataError
from engine.identity.asof import build_roots, drop_temps, event_map, has_joined_column, joined_sql
from engine.progress import Progress
from engine.store import DerivedColumn, Store
from predictions.definitions import Prediction
from predictions.features import FeatureSpec, build_features, choose_vocabulary
from predictions.labels import attach_labels, build_labels
from predictions.pipeline import Outcome, run_prediction, training_cutoffs
from predictions.report import clean_json, write_report, write_skipped
from predictions.tasks import TASKS
from traits.plan import ref
from traits.values import VALUE_TYPES, kind_column

#: Training uses at most this many profiles (a deterministic hash sample); scoring uses all.
MAX_TRAIN_PROFILES = 150_000


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionSummary:
    """The headline of one prediction's run."""

    name: str
    type: str
    status: str  # scored | skipped
    reason: str  # why this model, or what is missing
    model: str | None = None
    metric: str | None = None
    value: float | None = None
    baseline_value: float | None = None
    grade: str | None = None
    eligible: int = 0
    scored: int = 0
    extra: dict[str, float] | None = None
    report_html: str | None = None
    report_json: str | None = None
    seconds: dict[str, float] | None = None  # wall time per stage (features, training, writing)
    #: ltv: counting events up to as_of whose amount is present but not a number (they count as
    #: purchases; their amount is unknown), and those with no amount at all.
    amounts_unreadable: int = 0
    amounts_missing: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictReport:
    """What ``profiles predict`` did, per prediction."""

    as_of: datetime
    predictions: tuple[PredictionSummary, ...]
    load_seconds: float = 0.0
    config_path: str | None = None  # for the message when no prediction is defined

    @property
    def scored(self) -> int:
        return sum(p.status == "scored" for p in self.predictions)

    @property
    def skipped(self) -> int:
        return sum(p.status == "skipped" for p in self.predictions)

    def __rich__(self) -> Group | Text:
        if not self.predictions:
            return Text(f"no predictions are defined in {self.config_path or 'the project file'} "
                        "(add a [[predictions]] table: docs/predictions.md)")
        table = Table(title=f"Predictions as of {self.as_of:%Y-%m-%d %H:%M:%S} UTC", title_justify="left")
        for col in ("prediction", "type", "model", "holdout", "baseline", "grade", "scored"):
            table.add_column(col, justify="right" if col in ("holdout", "baseline", "scored") else "left")
        notes: list[Text] = []
        for p in self.predictions:
            if p.status == "scored":
                metric = (p.metric or "").upper() if p.metric == "auc" else p.metric
                table.add_row(p.name, p.type, p.model or "", f"{metric} {p.value:.3f}",
                              "" if p.baseline_value is None else f"{p.baseline_value:.3f}",
                              p.grade or "", f"{p.scored:,} / {p.eligible:,}")
                notes.append(Text(f"{p.name}: {p.reason}. Report: {p.report_html}"))
                if p.amounts_unreadable:
                    notes.append(Text(
                        f"{p.name}: {p.amounts_unreadable:,} purchases up to as_of have an unreadable amount; "
                        "they count as purchases, their amounts are unknown (left out of monetary value; "
                        f"{(p.extra or {}).get('label_unknown', 0):,.0f} training rows with an unknown label skipped)",
                        style="yellow"))
            else:
                table.add_row(p.name, p.type, "-", "-", "-", "-", "skipped")
                notes.append(Text(f"{p.name}: skipped: {p.reason}", style="yellow"))
        return Group(table, *notes)


def _profiles_sql(store: Store) -> str | None:
    sources = [f"SELECT profile_id FROM {t}" for t in ("profiles", "event_profiles") if store.has_table(t)]
    if sources and store.has_table("event_profiles") and has_joined_column(store):
        # merged-away profiles too: a training row at a cutoff is keyed by the profile then
        sources.append("SELECT joined_profile_id FROM event_profiles")
    return " UNION ".join(sources) if sources else None


def _derived_columns(predictions: tuple[Prediction, ...]) -> list[DerivedColumn]:
    """The typed property columns the predictions read (conditions and LTV amounts), once each."""
    out: dict[str, DerivedColumn] = {}
    for p in predictions:
        wanted = [c for cond in p.conditions for c in cond.derived_columns()]
        if p.property:
            wanted += [VALUE_TYPES["number"].column(p.property), kind_column(p.property)]
        for col in wanted:
            out.setdefault(col.name, col)
    return list(out.values())


def _condition_sql(p: Prediction, as_of: datetime) -> str:
    """The prediction's conditions over the event row ``e`` (``true`` when there are none)."""
    if not p.conditions:
        return "true"
    joiner = " AND " if p.match == "all" else " OR "
    return "(" + joiner.join(c.sql(lambda kind, path: "e." + ref(kind, path), as_of) for c in p.conditions) + ")"


def load_events(store: Store, predictions: tuple[Prediction, ...], *, as_of: datetime) -> tuple[pl.DataFrame, dict[int, str]]:
    """One DuckDB query: every resolved event up to ``as_of`` with its profile as of ``as_of``
    (``pid``), the profile it joined when resolved (``jid``: :func:`at_instant` follows it to the
    profile at an earlier instant), each prediction's flag (``c<i>``), amount (``a<i>``) and
    whether that amount is present but unreadable (``u<i>``).

    ``_pred_profiles(profile_id, pid, current)`` numbers every profile id, merged-away ones
    included; ``current`` marks the profiles as of ``as_of`` (those that get scores).
    Rows come in no particular order (a parallel join): the pure modules do not depend on it.
    """
    con = store.con
    emap = event_map(store, as_of)
    current = "true" if emap.latest else f"profile_id IN (SELECT profile_id FROM {emap.profiles})"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _pred_profiles AS SELECT profile_id, "
        f"(row_number() OVER (ORDER BY profile_id) - 1)::BIGINT AS pid, {current} AS current "
        f"FROM ({_profiles_sql(store)}) WHERE profile_id IS NOT NULL"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _pred_names AS SELECT event, "
        "(row_number() OVER (ORDER BY event) - 1)::INTEGER AS code "
        "FROM (SELECT DISTINCT event FROM events WHERE event IS NOT NULL)"
    )
    names = dict((int(c), str(e)) for e, c in con.execute("SELECT event, code FROM _pred_names").fetchall())
    store.ensure_derived_columns(_derived_columns(predictions))
    cols = []
    params: list[Any] = []
    for i, p in enumerate(predictions):
        cols.append(f"coalesce(e.event = ? AND {_condition_sql(p, as_of)}, false) AS c{i}")
        params.append(p.event)
        amount = f"e.{ref('number', p.property)}" if p.property else "NULL::DOUBLE"
        cols.append(f"{amount} AS a{i}")
        # present but not a number (the traits' "rejected": a JSON null is missing, not unreadable)
        unreadable = (f"coalesce(e.{ref('kind', p.property)} <> 'NULL' AND {amount} IS NULL, false)"
                      if p.property else "false")
        cols.append(f"{unreadable} AS u{i}")
    mapped = "" if emap.latest else f" JOIN {emap.relation} m ON m.message_id = e.message_id"
    query = (
        "SELECT p.pid, j.pid AS jid, e.timestamp AS ts, n.code AS ev" + "".join(", " + c for c in cols) +
        f" FROM events e JOIN event_profiles ep ON ep.message_id = e.message_id{mapped} "
        f"JOIN _pred_profiles p ON p.profile_id = {'ep' if emap.latest else 'm'}.profile_id "
        f"JOIN _pred_profiles j ON j.profile_id = {joined_sql(store, 'ep')} "
        "LEFT JOIN _pred_names n ON n.event = e.event WHERE e.timestamp <= ?"
    )
    try:
        frame = con.sql(query, params=[*params, as_of]).pl()
    finally:
        drop_temps(store)
    return frame.with_columns(pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
                              pl.col("ev").cast(pl.Int32)), names


def profile_roots(store: Store, instant: datetime) -> pl.DataFrame:
    """``jid -> root``: each profile merged away by ``instant`` and the profile it had become
    then, as ``_pred_profiles`` numbers (after :func:`load_events`)."""
    try:
        build_roots(store, instant)
        return store.con.sql(
            """SELECT a.pid AS jid, b.pid AS root FROM _asof_roots r
            JOIN _pred_profiles a ON a.profile_id = r.profile_id
            JOIN _pred_profiles b ON b.profile_id = r.root"""
        ).pl()
    finally:
        drop_temps(store)


def at_instant(events: pl.DataFrame, roots: pl.DataFrame, instant: datetime) -> pl.DataFrame:
    """The events up to ``instant`` with ``pid`` their profile as of ``instant`` (identity then:
    the profile each joined, followed through the merges up to ``instant``, ``roots``)."""
    return (
        events.filter(pl.col("ts") <= instant)
        .join(roots, on="jid", how="left")
        .with_columns(pid=pl.coalesce("root", "jid"))
        .drop("root")
    )


def later_profiles(frame: pl.DataFrame, roots: pl.DataFrame) -> pl.Series:
    """The profile each ``pid`` of ``frame`` had become by the instant of ``roots``."""
    return (
        frame.select("pid")
        .join(roots.rename({"jid": "pid"}), on="pid", how="left", maintain_order="left")
        .select(pl.coalesce("root", "pid").alias("later"))["later"]
    )


def _training_rows(ev: pl.DataFrame, cutoffs: list[datetime], spec: FeatureSpec, horizon_days: int,
                   sample: pl.Series | None, roots_at: Any, as_of: datetime) -> pl.DataFrame:
    """Training rows: per cutoff ``c``, the features of the profiles as of ``c`` (identity then:
    an event after ``c``, a merge included, cannot change a row), of the ``sample`` of profiles
    (``None``: all), and the label of the profile it had become by ``as_of`` (events in ``(c, c + H]``)."""
    later = roots_at(as_of)
    labels = build_labels(ev.drop("jid"), cutoffs=cutoffs, horizon_days=horizon_days)
    parts = []
    for c in cutoffs:
        at_c = at_instant(ev, roots_at(c), c).drop("jid")
        if sample is not None:
            at_c = at_c.filter(pl.col("pid").is_in(sample))
        feats = build_features(at_c, cutoffs=[c], spec=spec)
        parts.append(feats.with_columns(later=later_profiles(feats, later)))
    rows = pl.concat(parts, how="diagonal_relaxed").sort("cutoff", "pid")
    keyed = attach_labels(rows.rename({"pid": "_pid", "later": "pid"}), labels)
    return keyed.drop("pid").rename({"_pid": "pid"}).select(["pid", *[c for c in keyed.columns if c not in ("pid", "_pid")]])


def _sampled_profiles(store: Store, max_profiles: int) -> pl.Series | None:
    """The ``pid`` of a deterministic sample of about ``max_profiles`` of ``_pred_profiles``
    (``None``: there are no more, all train). Membership hashes the profile id itself, so more
    profiles (e.g. ones created after a cutoff) only lower the share sampled: they never swap
    which of the others are in."""
    n_profiles = store.first_row("SELECT count(*) FROM _pred_profiles")[0]
    if n_profiles <= max_profiles:
        return None
    threshold = int(2**32 * max_profiles / n_profiles)
    return store.con.sql(
        "SELECT pid FROM _pred_profiles WHERE ('0x' || left(md5(profile_id), 8))::UBIGINT < ?",
        params=[threshold],
    ).pl()["pid"]


def _trait_features(store: Store, config: Any, cutoffs: list[datetime]) -> pl.DataFrame | None:
    """Numeric and boolean computed traits as of each cutoff (``trait_<name>``), when available."""
    if not getattr(config, "traits", None):
        return None
    from engine.compute import trait_frame

    ids = store.con.sql("SELECT profile_id, pid FROM _pred_profiles").pl()
    frames = []
    for c in cutoffs:
        tf = trait_frame(store, config.traits, as_of=c)
        keep = [n for n, d in tf.schema.items() if n != "profile_id" and (d.is_numeric() or d == pl.Boolean)]
        frames.append(
            tf.select("profile_id", *[pl.col(n).cast(pl.Float64).alias(f"trait_{n}") for n in keep])
            .join(ids, on="profile_id").drop("profile_id")
            .with_columns(pl.lit(c, dtype=pl.Datetime("us", "UTC")).alias("cutoff"))
        )
    return pl.concat(frames, how="diagonal") if frames else None


def _with_traits(frame: pl.DataFrame, traits: pl.DataFrame | None) -> pl.DataFrame:
    return frame if traits is None else frame.join(traits, on=["pid", "cutoff"], how="left", maintain_order="left")


def _semantic(p: Prediction) -> dict[str, Any]:
    return {"type": p.type, "event": p.event, "horizon_days": p.horizon_days, "match": p.match,
            "property": p.property, "conditions": [[c.property, c.operator, c.value] for c in p.conditions]}


def _write_scores(store: Store, pred: Prediction, outcome: Outcome | None, *, as_of: datetime) -> None:
    con = store.con
    with store.transaction():
        con.execute("DELETE FROM prediction_scores WHERE prediction = ?", [pred.name])
        if outcome is None:
            return
        con.register("_pred_scores", outcome.scores.to_arrow())
        try:
            con.execute(
                "INSERT INTO prediction_scores SELECT ?, p.profile_id, s.score, s.percentile, "
                "CASE WHEN s.score IS NULL THEN NULL ELSE ? END, ? "
                "FROM _pred_profiles p LEFT JOIN _pred_scores s ON s.pid = p.pid WHERE p.current "
                "ORDER BY p.profile_id",
                [pred.name, outcome.model, as_of],
            )
        finally:
            con.unregister("_pred_scores")


def _write_run(store: Store, pred: Prediction, summary: PredictionSummary, *, as_of: datetime,
               metrics: dict[str, Any] | None) -> None:
    with store.transaction() as con:
        con.execute("DELETE FROM prediction_runs WHERE prediction = ?", [pred.name])
        con.execute(
            "INSERT INTO prediction_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [pred.name, as_of, summary.status, summary.model, summary.reason,
             definition_hash(_semantic(pred)),
             None if metrics is None else json.dumps(clean_json(metrics), default=str),
             summary.report_html, summary.report_json],
        )


def _amount_counts(ev: pl.DataFrame) -> dict[str, int]:
    """Counting events up to as_of whose amount is unreadable, or absent (principle 4: counted, reported)."""
    counting = ev.filter(pl.col("counting") & pl.col("amount").is_null())
    unreadable = int(counting["unreadable"].sum())
    return {"amounts_unreadable": unreadable, "amounts_missing": counting.height - unreadable}


def _no_counting_events(pred: Prediction, as_of: datetime) -> str:
    what = f"{pred.event!r} events" + (" matching the conditions" if pred.conditions else "")
    return (f"no {what} up to as_of {as_of:%Y-%m-%d %H:%M:%S} UTC: the {pred.type} prediction "
            f"has nothing to learn from (is the event name spelled as in the data?)")


def _summarise(outcome: Outcome, paths: tuple[Path, Path]) -> PredictionSummary:
    best = outcome.holdout[outcome.model]
    base = outcome.holdout.get("baseline", {})
    keys = ("log_loss", "brier", "lift_top_10", "lift_top_20") if outcome.metric_name == "auc" else (
        "mae", "rmse", "top_decile_value_share")
    extra = ({k: best[k] for k in keys} | {f"baseline_{k}": base[k] for k in keys if k in base}
             | {"label_unknown": outcome.counts.get("label_unknown", 0)})
    return PredictionSummary(
        name=outcome.prediction.name, type=outcome.prediction.type, status="scored", reason=outcome.why,
        model=outcome.model, metric=outcome.metric_name, value=best[outcome.metric_name],
        baseline_value=base.get(outcome.metric_name), grade=outcome.grade,
        eligible=outcome.counts["eligible"], scored=outcome.counts["scored"], extra=extra,
        report_html=str(paths[0]), report_json=str(paths[1]),
    )


def run_predictions(store: Store, config: Any, *, as_of: datetime,
                    progress: Progress = Progress()) -> PredictReport:
    """Train and score every prediction of ``config``; write scores, runs and reports.

    A prediction without enough data is reported as skipped with what is missing; the others run.
    """
    preds: tuple[Prediction, ...] = tuple(config.predictions)
    reports = Path(config.reports_dir)
    summaries: list[PredictionSummary] = []
    path = getattr(config, "path", None)
    source = None if path is None else str(path)
    if not preds:
        return PredictReport(as_of=as_of, predictions=(), config_path=source)
    if _profiles_sql(store) is None or not store.has_table("event_profiles"):
        reason = "no identity resolution yet (no event_profiles table): run 'profiles resolve' first"
        return PredictReport(as_of=as_of, predictions=tuple(
            PredictionSummary(name=p.name, type=p.type, status="skipped", reason=reason) for p in preds),
            config_path=source)
    started = time.perf_counter()
    with progress.step("Loading events for predictions"):
        events, names = load_events(store, preds, as_of=as_of)
    load_seconds = time.perf_counter() - started
    sample = _sampled_profiles(store, MAX_TRAIN_PROFILES)
    first = events["ts"].min() if events.height else None
    roots: dict[datetime, pl.DataFrame] = {}

    def roots_at(instant: datetime) -> pl.DataFrame:
        if instant not in roots:
            roots[instant] = profile_roots(store, instant)
        return roots[instant]
    with progress.step("Training predictions", total=len(preds)) as step:
        for i, pred in enumerate(preds):
            task = TASKS[pred.type]
            slim = ["pid", "jid", "ts", "ev", pl.col(f"c{i}").alias("counting"), pl.col(f"a{i}").alias("amount"),
                    pl.col(f"u{i}").alias("unreadable")]
            ev = events.select(slim)
            amounts = _amount_counts(ev) if pred.property else {}
            clock = {"start": time.perf_counter()}
            try:
                if not ev["counting"].any():
                    raise DataError(_no_counting_events(pred, as_of))
                cutoffs = training_cutoffs(as_of, pred.horizon_days, first)
                spec = FeatureSpec(vocabulary=choose_vocabulary(ev, names, before=min(cutoffs)),
                                   horizon_days=pred.horizon_days, with_rfm=task.with_rfm)
                traits = _trait_features(store, config, [*cutoffs, as_of])
                train = _with_traits(_training_rows(ev, cutoffs, spec, pred.horizon_days, sample,
                                                    roots_at, as_of), traits)
                score = _with_traits(build_features(ev.drop("jid"), cutoffs=[as_of], spec=spec), traits)
                clock["features"] = time.perf_counter()
                outcome = run_prediction(pred, task, train=train, score=score, as_of=as_of, cutoffs=cutoffs)
            except DataError as exc:
                json_path = write_skipped(pred, str(exc), reports, as_of=as_of)
                summary = PredictionSummary(name=pred.name, type=pred.type, status="skipped",
                                            reason=str(exc), report_json=str(json_path))
                _write_scores(store, pred, None, as_of=as_of)
                _write_run(store, pred, summary, as_of=as_of, metrics=None)
                summaries.append(summary)
                step.advance()
                continue
            clock["training"] = time.perf_counter()
            outcome = dataclasses.replace(outcome, counts=outcome.counts | amounts)
            paths = write_report(outcome, reports)
            _write_scores(store, pred, outcome, as_of=as_of)
            clock["writing"] = time.perf_counter()
            stages = list(clock)
            summary = dataclasses.replace(_summarise(outcome, paths), seconds={
                k: round(clock[k] - clock[prev], 3) for prev, k in zip(stages, stages[1:])}, **amounts)
            _write_run(store, pred, summary, as_of=as_of, metrics={"counts": outcome.counts,
                                                                  "holdout": _headline(outcome)})
            summaries.append(summary)
            step.advance()
    store.con.execute("DROP TABLE IF EXISTS _pred_profiles")
    store.con.execute("DROP TABLE IF EXISTS _pred_names")
    return PredictReport(as_of=as_of, predictions=tuple(summaries), load_seconds=round(load_seconds, 3),
                         config_path=source)


def _headline(outcome: Outcome) -> dict[str, dict[str, float]]:
    return {name: {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for name, m in outcome.holdout.items()}

