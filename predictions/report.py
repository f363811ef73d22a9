"""The evaluation report of one prediction: an HTML page with plots and the same figures as JSON.

Writes ``<reports>/<prediction>.html`` and ``<reports>/<prediction>.json``. Plots are matplotlib
PNGs embedded as base64, written without timestamps so that the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from predictions.definitions import Prediction  # noqa: E402
from predictions.evaluate import AUC_GRADES, SPEARMAN_GRADES  # noqa: E402
from predictions.pipeline import Outcome  # noqa: E402


def clean_json(value: Any) -> Any:
    """JSON-safe: NaN/inf become null (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def report_data(outcome: Outcome) -> dict[str, Any]:
    """Everything the report shows, as plain data (the JSON file)."""
    p = outcome.prediction
    thresholds = AUC_GRADES if outcome.metric_name == "auc" else SPEARMAN_GRADES
    return clean_json({
        "prediction": p.name,
        "type": p.type,
        "event": p.event,
        "property": p.property,
        "horizon_days": p.horizon_days,
        "status": "scored",
        "model": outcome.model,
        "model_description": outcome.model_title,
        "why": outcome.why,
        "candidates": outcome.candidates,
        "selection_rule": outcome.selection_rule,
        "metric": outcome.metric_name,
        "grade": outcome.grade,
        "grade_thresholds": {name: bound for bound, name in thresholds if math.isfinite(bound)},
        "counts": outcome.counts,
        "cutoffs": outcome.cutoffs,
        "holdout": outcome.holdout,
        "failed_candidates": outcome.failures,
        "top_features": outcome.top_features,
    })


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(data: dict[str, Any]) -> list[tuple[str, str]]:
    model = data["model"]
    best = data["holdout"][model]
    base = data["holdout"].get("baseline")
    out = []
    if data["metric"] == "auc":
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, m in ((model, best), ("baseline", base)):
            if m:
                ax.plot([c["mean_predicted"] for c in m["calibration"]], [c["observed_rate"] for c in m["calibration"]],
                        marker="o", label=name)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect")
        ax.set(xlabel="mean predicted probability (score decile)", ylabel="observed rate", title="Calibration")
        ax.legend()
        out.append(("Calibration curve (holdout)", _png(fig)))
        fig, ax = plt.subplots(figsize=(5, 4))
        width = 0.4
        for k, (name, m) in enumerate(((model, best), ("baseline", base))):
            if m:
                ax.bar([c["decile"] + 1 + (k - 0.5) * width for c in m["lift_chart"]],
                       [c["lift"] or 0 for c in m["lift_chart"]], width=width, label=name)
        ax.axhline(1.0, ls="--", color="grey")
        ax.set(xlabel="score decile (1 = top 10%)", ylabel="lift over base rate", title="Lift by decile")
        ax.legend()
        out.append(("Lift chart (holdout)", _png(fig)))
    else:
        fig, ax = plt.subplots(figsize=(5, 4))
        dec = best["deciles"]
        xs = [d["decile"] + 1 for d in dec]
        ax.bar([x - 0.2 for x in xs], [d["mean_predicted"] for d in dec], width=0.4, label="predicted")
        ax.bar([x + 0.2 for x in xs], [d["mean_actual"] for d in dec], width=0.4, label="actual")
        ax.set(xlabel="predicted decile (1 = top 10%)", ylabel="mean value in the horizon",
               title="Predicted vs actual by decile")
        ax.legend()
        out.append(("Predicted vs actual (holdout)", _png(fig)))
    feats = data["top_features"]
    if feats:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(feats) + 1))
        ax.barh([f["feature"] for f in feats][::-1], [f["importance"] or 0 for f in feats][::-1])
        ax.set(xlabel=f"drop in holdout {data['metric']} when shuffled", title="Top features")
        out.append(("Top features (permutation importance)", _png(fig)))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def render_html(data: dict[str, Any]) -> str:
    """The HTML page for :func:`report_data`'s dictionary."""
    keys = (["auc", "log_loss", "brier", "lift_top_10", "lift_top_20", "positive_rate"] if data["metric"] == "auc"
            else ["spearman", "mae", "rmse", "top_decile_value_share", "mean_actual"])
    header = "".join(f"<th>{html.escape(k)}</th>" for k in ["model", *keys])
    rows = "".join(
        f"<tr><td>{html.escape(name)}{' (chosen)' if name == data['model'] else ''}</td>"
        + "".join(f"<td>{_fmt(m.get(k))}</td>" for k in keys) + "</tr>"
        for name, m in data["holdout"].items()
    )
    counts = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:,}</td></tr>" for k, v in data["counts"].items())
    plots = "".join(f"<h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'>"
                    for t, b in _plots(data))
    failed = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in data["failed_candidates"].items())
    grades = ", ".join(f"{k} &ge; {v}" for k, v in data["grade_thresholds"].items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(data['prediction'])}: prediction report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(data['prediction'])} ({html.escape(data['type'])}, {data['horizon_days']} days)</h1>
<p>Counting event: <b>{html.escape(data['event'])}</b>{' amount: <b>' + html.escape(data['property']) + '</b>' if data['property'] else ''}.
As of {html.escape(data['cutoffs']['as_of'])}; holdout evaluated at {html.escape(data['cutoffs']['holdout_evaluation'])}.</p>
<h2>Grade: {html.escape(data['grade'])}</h2><p>From the holdout {html.escape(data['metric'])} ({grades}; below: Poor).</p>
<h2>Model: {html.escape(data['model'])}</h2><p>{html.escape(data['model_description'])}.</p><p>{html.escape(data['why'])}.</p>
<p>Candidates: {html.escape(', '.join(data['candidates']))}; naive baseline reported beside them. Rule: {html.escape(data['selection_rule'])}.</p>
{'<p>Candidates that failed:</p><ul>' + failed + '</ul>' if failed else ''}
<h2>Holdout metrics</h2><table><tr>{header}</tr>{rows}</table>
<h2>Counts</h2><table>{counts}</table>
<h2>Plots</h2>{plots}
</body></html>
"""


def write_report(outcome: Outcome, folder: Path) -> tuple[Path, Path]:
    """Write the HTML and JSON reports; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    data = report_data(outcome)
    name = outcome.prediction.name
    json_path, html_path = folder / f"{name}.json", folder / f"{name}.html"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    html_path.write_text(render_html(data), encoding="utf-8")
    return html_path, json_path


def write_skipped(pred: Prediction, reason: str, folder: Path, *, as_of: datetime) -> Path:
    """A JSON report saying the prediction was skipped and why (and no stale HTML beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pred.name}.json"
    data = {"prediction": pred.name, "type": pred.type, "status": "skipped", "reason": reason,
            "as_of": as_of.isoformat(), "horizon_days": pred.horizon_days}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / f"{pred.name}.html").unlink(missing_ok=True)
    return path
