"""Feature success prediction: will a feature reach the adoption threshold, judged before it is known?

Target: `usage.feature_adoption.adopted` — the feature's users in the 28 UTC days after its release
reached the adoption threshold (default 5 %) of that window's active users. It is known only once
the window has closed (`window_end` + 1 day).

Signals, all measured before the feature's cutoff (its release; now, for a feature not yet released),
so nothing the release itself reveals leaks in:

| group | signal |
|---|---|
| size | `issues` (stories, tasks and bugs created), `merged_prs`, `commits_per_pr` (median) |
| lead time | `pr_cycle_hours` (median first commit → merge), `age_days` (epic created → cutoff) |
| review depth | `reviews_per_pr` (mean), `first_review_hours` (median PR opened → first review) |
| test health | `bugs_per_issue` (bugs reported before the cutoff per issue) |
| team history | `team_prior_rate`, `team_prior_features` (the same Jira project's earlier features whose |
|  | outcome was known by the cutoff), `org_prior_rate` (all projects) |

Model: scikit-learn's logistic regression (L2, C = 0.5) after median imputation and standardisation.
Training sets are tens of features at most, so a linear model with regularisation towards the base
rate is what they can support; its coefficients also say which signal moved a probability. With
fewer than `MIN_TRAIN` features of known outcome there is no prediction; when they are all of one
class, the prediction is their Laplace-smoothed base rate.

Backtest (time-ordered, held out): each feature whose outcome is known is predicted as of its own
release by a model trained only on features whose outcome was known by then (released at least 29
days earlier). Accuracy is counted over those held-out predictions only, beside the accuracy of
always predicting the training set's majority class, and the sample size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, time
from typing import Any

import numpy as np
import polars as pl

MIN_TRAIN = 8
"""Features of known outcome a model needs: fewer cannot carry eleven signals even with regularisation."""
REGULARISATION_C = 0.5
"""Inverse L2 strength: stronger than scikit-learn's default 1.0, as training sets are tiny."""
DECISION = 0.5
"""Probability at or above which a feature is predicted to reach the threshold."""
MODEL = "logistic_regression"

SIGNALS: dict[str, str] = {
    "issues": "Stories, tasks and bugs of the feature created before the cutoff (size).",
    "merged_prs": "The feature's pull requests merged before the cutoff (size).",
    "commits_per_pr": "Median commits per merged pull request (size of a change).",
    "pr_cycle_hours": "Median hours from a pull request's first commit to its merge (lead time).",
    "age_days": "Days from the epic's creation to the cutoff (lead time of the feature).",
    "reviews_per_pr": "Mean reviews per merged pull request (review depth).",
    "first_review_hours": "Median hours from a pull request opened to its first review (review depth).",
    "bugs_per_issue": "Bugs reported before the cutoff per issue (test health).",
    "team_prior_rate": "Laplace-smoothed share of the same project's earlier features that reached the threshold, "
    "among those whose outcome was known by the cutoff (team history).",
    "team_prior_features": "How many such earlier features of the same project (team history).",
    "org_prior_rate": "The same share over all projects (history).",
}


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(), tzinfo=UTC)


def _in_utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Every zoned timestamp column in the zone `UTC` (DuckDB may hand back `Etc/UTC`), so they compare."""
    zoned = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    return frame.with_columns(pl.col(zoned).dt.convert_time_zone("UTC")) if zoned else frame


def feature_table(frames: dict[str, pl.DataFrame], as_of: datetime) -> pl.DataFrame:
    """One row per feature that can be predicted or scored: cutoff, outcome (if known) and signals.

    `frames` holds mart frames named as in `pipelines.kpis.compute.MART_QUERIES`: `features`,
    `issues`, `pull_requests`, `adoption`. Features done in Jira but never released in the data
    (delivered before its history starts) are left out: there is nothing to predict.
    """
    as_of = _utc(as_of)
    frames = {name: _in_utc(frame) for name, frame in frames.items()}
    features = frames["features"].select(
        "feature_key", "project_key", "summary", "status", "created_at", released_at=pl.col("first_released_at")
    )
    features = features.filter(pl.col("released_at").is_not_null() | (pl.col("status") != "done"))
    adoption = frames["adoption"].select(
        "feature_key",
        "window_complete",
        "adoption_rate",
        label=pl.when(pl.col("window_complete")).then(pl.col("adopted")),
        known_at=(pl.col("window_end") + pl.duration(days=1)).cast(pl.Datetime("us", "UTC")),
    )
    base = features.join(adoption, on="feature_key", how="left").with_columns(
        cutoff=pl.coalesce(pl.col("released_at"), pl.lit(as_of)).cast(pl.Datetime("us", "UTC")),
    )
    keys = base.select("feature_key", "cutoff")

    issues = (
        frames["issues"]
        .filter((pl.col("issue_type") != "Epic") & pl.col("epic_key").is_not_null())
        .join(keys, left_on="epic_key", right_on="feature_key")
        .filter(pl.col("created_at") < pl.col("cutoff"))
        .group_by(pl.col("epic_key").alias("feature_key"))
        .agg(issues=pl.len(), bugs=(pl.col("issue_type") == "Bug").sum())
    )
    prs = (
        frames["pull_requests"]
        .filter(pl.col("merged_at").is_not_null() & pl.col("feature_key").is_not_null())
        .join(keys, on="feature_key")
        .filter(pl.col("merged_at") < pl.col("cutoff"))
        .group_by("feature_key")
        .agg(
            merged_prs=pl.len(),
            commits_per_pr=pl.col("commit_count").median(),
            pr_cycle_hours=((pl.col("merged_at") - pl.col("first_commit_at")).dt.total_seconds() / 3600).median(),
            reviews_per_pr=pl.col("review_count").mean(),
            first_review_hours=pl.col("time_to_first_review_hours").median(),
        )
    )
    known = base.filter(pl.col("label").is_not_null()).select(
        "project_key", prior_key="feature_key", prior_label="label", prior_known_at="known_at"
    )
    priors = (
        keys.join(base.select("feature_key", "project_key"), on="feature_key")
        .join(known, how="cross", suffix="_prior")
        .filter((pl.col("prior_known_at") <= pl.col("cutoff")) & (pl.col("prior_key") != pl.col("feature_key")))
        .group_by("feature_key")
        .agg(
            org_n=pl.len(),
            org_k=pl.col("prior_label").sum(),
            team_n=(pl.col("project_key") == pl.col("project_key_prior")).sum(),
            team_k=(pl.col("prior_label") & (pl.col("project_key") == pl.col("project_key_prior"))).sum(),
        )
    )
    table = (
        base.join(issues, on="feature_key", how="left")
        .join(prs, on="feature_key", how="left")
        .join(priors, on="feature_key", how="left")
        .with_columns(
            pl.col("issues", "bugs", "merged_prs", "org_n", "org_k", "team_n", "team_k").fill_null(0),
        )
        .with_columns(
            age_days=(pl.col("cutoff") - pl.col("created_at")).dt.total_seconds() / 86400,
            bugs_per_issue=pl.when(pl.col("issues") > 0).then(pl.col("bugs") / pl.col("issues")).otherwise(0.0),
            team_prior_rate=(pl.col("team_k") + 1) / (pl.col("team_n") + 2),
            team_prior_features=pl.col("team_n"),
            org_prior_rate=(pl.col("org_k") + 1) / (pl.col("org_n") + 2),
        )
    )
    return table.with_columns(pl.col(list(SIGNALS)).cast(pl.Float64)).sort("cutoff", "feature_key")


def _fit_predict(train: pl.DataFrame, row: dict[str, Any]) -> dict[str, Any]:
    """Probability for `row` from a model trained on `train` (signals + `label`), with what it rests on."""
    n = train.height
    k = int(train["label"].sum()) if n else 0
    out: dict[str, Any] = {"training_features": n, "training_adopted": k, "trained_on": train["feature_key"].to_list()}
    if n < MIN_TRAIN:
        reason = f"only {n} earlier features with a known outcome (a model needs {MIN_TRAIN})"
        return {**out, "probability": None, "model": None, "drivers": None, "null_reason": reason}
    out["baseline_prediction"] = k * 2 > n  # the majority class of the training set (ties: not adopted)
    if k in (0, n):
        return {**out, "probability": (k + 1) / (n + 2), "model": "base_rate", "drivers": None, "null_reason": None}
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = train.select(list(SIGNALS)).fill_nan(None).to_numpy().astype(float)
    y = train["label"].cast(pl.Int8).to_numpy()
    pipe = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=REGULARISATION_C, max_iter=1000),
    )
    pipe.fit(x, y)
    xr = np.array([[np.nan if row[s] is None else row[s] for s in SIGNALS]], dtype=float)
    probability = float(pipe.predict_proba(xr)[0, 1])
    scaled = pipe[:-1].transform(xr)[0]
    contributions = pipe[-1].coef_[0] * scaled  # log-odds each signal adds at this feature's value
    order = np.argsort(-np.abs(contributions))[:3]
    names = list(SIGNALS)
    drivers = [
        {"signal": names[i], "value": row[names[i]], "log_odds": round(float(contributions[i]), 3)} for i in order
    ]
    return {**out, "probability": probability, "model": MODEL, "drivers": drivers, "null_reason": None}


def predictions(frames: dict[str, pl.DataFrame], as_of: datetime) -> pl.DataFrame:
    """`kpi.feature_success_predictions`: held-out backtest rows, then the open features' predictions."""
    table = feature_table(frames, as_of)
    labelled = table.filter(pl.col("label").is_not_null())
    rows: list[dict[str, Any]] = []
    for row in labelled.to_dicts():
        train = labelled.filter((pl.col("known_at") <= row["cutoff"]) & (pl.col("feature_key") != row["feature_key"]))
        rows.append(_row(row, _fit_predict(train, row), "backtest"))
    scored = [r for r in rows if r["probability"] is not None]
    summary = accuracy_summary(scored)
    open_features = table.filter(pl.col("label").is_null() & pl.col("window_complete").fill_null(False).not_())
    for row in open_features.to_dicts():
        train = labelled.filter(pl.col("known_at") <= row["cutoff"])
        rows.append(_row(row, _fit_predict(train, row), "open"))
    for r in rows:
        r.update({f"backtest_{k}": v for k, v in summary.items()})
        r["explanation"] = explain(r, as_of)
    return pl.DataFrame(rows, schema=PREDICTION_SCHEMA)


def _row(row: dict[str, Any], fitted: dict[str, Any], kind: str) -> dict[str, Any]:
    probability = fitted["probability"]
    predicted = None if probability is None else probability >= DECISION
    actual = row["label"] if kind == "backtest" else None
    baseline = fitted.get("baseline_prediction")
    return {
        "feature_key": row["feature_key"],
        "project_key": row["project_key"],
        "summary": row["summary"],
        "prediction_kind": kind,
        "released_at": row["released_at"],
        "predicted_as_of": row["cutoff"],
        "probability": probability,
        "predicted_adopted": predicted,
        "adopted": actual,
        "correct": None if actual is None or predicted is None else predicted == actual,
        "baseline_correct": None if actual is None or predicted is None or baseline is None else baseline == actual,
        "adoption_rate": row["adoption_rate"] if kind == "backtest" else None,
        "model": fitted["model"],
        "training_features": fitted["training_features"],
        "training_adopted": fitted["training_adopted"],
        "trained_on": fitted["trained_on"],
        "drivers": None if fitted["drivers"] is None else json.dumps(fitted["drivers"]),
        **{s: row[s] for s in SIGNALS},
        "null_reason": fitted["null_reason"],
    }


def accuracy_summary(scored: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Held-out accuracy, its sample size and the majority-class baseline's accuracy on the same features."""
    scored = [r for r in scored if r["correct"] is not None]
    n = len(scored)
    return {
        "sample": n,
        "accuracy": sum(r["correct"] for r in scored) / n if n else None,
        "baseline_accuracy": sum(bool(r["baseline_correct"]) for r in scored) / n if n else None,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def explain(r: dict[str, Any], as_of: datetime) -> str:
    """What was predicted, from what, and how good such predictions have been — all from the row's figures."""
    key = r["feature_key"]
    if r["released_at"] is None:
        when = "not yet released"
    else:
        days = (_utc(as_of) - _utc(r["released_at"])).days
        when = f"released {r['released_at']:%Y-%m-%d}"
        if r["prediction_kind"] == "open":
            when += f", {days} days ago"
    if r["probability"] is None:
        return f"{key} ({when}): no prediction — {r['null_reason']}."
    basis = (
        f"a logistic regression on {r['training_features']} earlier features ({r['training_adopted']} reached it)"
        if r["model"] == MODEL
        else f"the base rate of {r['training_features']} earlier features ({r['training_adopted']} reached it)"
    )
    drivers = ""
    if r["drivers"]:
        parts = [f"{d['signal']} = {d['value']:.3g} ({d['log_odds']:+.2f} log-odds)" for d in json.loads(r["drivers"])
                 if d["value"] is not None]  # fmt: skip
        drivers = f" Strongest signals: {', '.join(parts)}."
    outcome = ""
    if r["prediction_kind"] == "backtest":
        outcome = (
            f" Actual adoption {_pct(r['adoption_rate'])}: "
            f"{'reached' if r['adopted'] else 'missed'} the threshold, "
            f"prediction {'right' if r['correct'] else 'wrong'}."
        )
    record = (
        f" Held-out accuracy so far: {_pct(r['backtest_accuracy'])} over {r['backtest_sample']} later features "
        f"(always predicting the majority: {_pct(r['backtest_baseline_accuracy'])})."
    )
    return (
        f"{key} ({when}): {r['probability'] * 100:.0f}% chance of reaching the adoption threshold, from {basis}."
        f"{drivers}{outcome}{record}"
    )


PREDICTION_SCHEMA: dict[str, Any] = {
    "feature_key": pl.String, "project_key": pl.String, "summary": pl.String, "prediction_kind": pl.String,
    "released_at": pl.Datetime("us", "UTC"), "predicted_as_of": pl.Datetime("us", "UTC"),
    "probability": pl.Float64, "predicted_adopted": pl.Boolean, "adopted": pl.Boolean, "correct": pl.Boolean,
    "baseline_correct": pl.Boolean, "adoption_rate": pl.Float64, "model": pl.String,
    "training_features": pl.Int64, "training_adopted": pl.Int64, "trained_on": pl.List(pl.String),
    "drivers": pl.String, **dict.fromkeys(SIGNALS, pl.Float64), "null_reason": pl.String,
    "backtest_sample": pl.Int64, "backtest_accuracy": pl.Float64, "backtest_baseline_accuracy": pl.Float64,
    "explanation": pl.String,
}  # fmt: skip


# --- the success metric ------------------------------------------------------------------------------


def prediction_accuracy_figures(
    frames: dict[str, pl.DataFrame], as_of: datetime, periods: Iterable[Any]
) -> dict[Any, tuple[float | None, int, str | None]]:
    """Per period: (accuracy, sample, reason) over the held-out predictions of features released in it.

    `periods` are `pipelines.kpis.compute.Period`s (whole UTC days, both ends included).
    """
    needed = ("features", "issues", "pull_requests", "adoption")
    held_out = pl.DataFrame(schema=PREDICTION_SCHEMA)
    if all(name in frames for name in needed):
        held_out = predictions(frames, as_of).filter(
            (pl.col("prediction_kind") == "backtest") & pl.col("correct").is_not_null()
        )
    out = {}
    for p in periods:
        rows = held_out.filter(pl.col("released_at").dt.date().is_between(p.start, p.end))
        if rows.height == 0:
            out[p] = (None, 0, "no feature released in the period has a held-out prediction and a known outcome")
        else:
            out[p] = (float(rows["correct"].mean()), rows.height, None)  # type: ignore[arg-type]
    return out
