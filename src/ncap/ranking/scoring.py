"""Rank a run's finished candidates by a score (:mod:`ncap.predict.recommended`) and attach each
candidate's predicted final accuracy with its interval.

Three kinds of score (:class:`~ncap.predict.recommended.ScoreSpec`):

- a per-run score (``last-observed``, ``nc/...``, ``dyn/...``, ...): each candidate on its own;
- a rank average (``ravg/...``): the mean of the components' normalised ranks
  ``(rank - 1) / (n - 1)`` among the successful candidates;
- a shipped fitted score (``fit/base``, the study's adopted default): each candidate's early
  features (:func:`ncap.predict.features.base_features`) through the Bayesian ridge fitted on
  bench-v2's runs (:func:`ncap.predict.shipped.fitted_gain`) at the study budget nearest this one.
  The model is fitted on the features that *every* successful candidate has, so all are scored
  alike; a feature missing for some (``logit_source`` outside ncap's own zoo, ``logme`` when it
  was not computed) is left out of the fit, and the ranking's notes say so. Its value is the
  predicted final accuracy ``sigmoid(lo + gain)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ncap.predict.caveats import apply_flags, candidate_flags
from ncap.predict.features import base_features, sigmoid
from ncap.predict.recommended import ScoreSpec, predicted_interval, recalibration_factor
from ncap.predict.scores import nc_name, run_score
from ncap.predict.settings import PredictorSettings

__all__ = [
    "RANKING_FIELDS",
    "add_predictions",
    "assumed_note",
    "budget_fraction",
    "score_candidates",
    "target_or_assumed",
    "trust_of",
]

# set on the records of a ranking (results.json), not in candidates/*.json: a rank average depends
# on the other candidates, and the interval on the budget's share of the full budget
RANKING_FIELDS = ("score", "prediction", "flags")

_WHY_MISSING = {
    "logit_source": "no source accuracy (only ncap's own zoo records one)",
    "logme": "no finite LogME (see backbone.logme_error; records from before ncap computed it)",
    "lo_slope": "fewer than two evaluation points after epoch 0 within the budget",
    "tse_e1": "no training loss within the budget",
    "log10_parameters": "no parameter count",
    "log2_features": "no feature width",
    "lo": "no evaluation point within the budget",
}


def budget_fraction(
    budget_steps: int, steps_per_epoch: float, full_epochs: float | None
) -> float | None:
    """The budget's share of the full budget (None when the full budget is unknown)."""
    if full_epochs is None or not full_epochs > 0:
        return None
    return budget_steps / (full_epochs * steps_per_epoch)


def target_or_assumed(
    target_epochs: float | None, full_epochs: float | None, budget_epochs: float
) -> tuple[float, bool]:
    """The full budget T the prediction is for, and whether it is assumed: ``target_epochs``,
    else ``full_epochs``, else the budget / :data:`~ncap.predict.shipped.UNKNOWN_BUDGET` (the
    budget taken as 10% of T, the share the recommended score then uses). One rule for the
    command line, the demo and the Python API.

    >>> target_or_assumed(None, None, 1.0), target_or_assumed(20.0, None, 1.0)
    ((10.0, True), (20.0, False))
    """
    from ncap.predict.shipped import UNKNOWN_BUDGET

    for epochs in (target_epochs, full_epochs):
        if epochs is not None:
            return float(epochs), False
    return budget_epochs / UNKNOWN_BUDGET, True


def assumed_note(target_epochs: float, fraction: float | None) -> str:
    """The note that says T was assumed, and which flag sets it."""
    share = "" if fraction is None else f" (the budget = {100 * fraction:.3g}% of T)"
    return (
        f"T = {target_epochs:.3g} epochs is assumed{share}: predictions are for a model trained "
        "to T; pass --target-epochs (target_epochs=) with the epochs you would really train"
    )


def _context(record: dict[str, Any], steps_per_epoch: float, full_epochs: float | None):
    backbone = record.get("backbone") or {}
    return {
        "steps_per_epoch": steps_per_epoch,
        "target_epoch": full_epochs if full_epochs is not None else math.nan,
        "curve_starts": 3,
        "parameters": backbone.get("parameters"),
        "source_accuracy": backbone.get("source_accuracy"),
        "logme": backbone.get("logme"),
        "proxies": backbone.get("proxies"),
    }


def _per_run(ok, spec: ScoreSpec, budget_steps, steps_per_epoch, full_epochs):
    values = np.full((len(spec.components), len(ok)), np.nan)
    reasons: list[list[str]] = [[] for _ in ok]
    extra: list[dict[str, Any]] = [{} for _ in ok]
    for i, r in enumerate(ok):
        context = _context(r, steps_per_epoch, full_epochs)
        for j, (name, sign) in enumerate(zip(spec.components, spec.signs)):
            sc = run_score(name, r["trajectory"], budget_steps, context, sign=sign)
            if sc.value is None:
                reasons[i].append(f"{name}: {sc.reason}")
                continue
            values[j, i] = sc.value
            if not spec.is_rank_average and sc.predicted is not None:
                extra[i] = {"predicted": sc.predicted, "link": sc.link,
                            "link_mean": sc.link_mean, "link_sd": sc.link_sd}  # fmt: skip
    if spec.is_rank_average:
        from scipy.stats import rankdata

        n = max(len(ok) - 1, 1)
        ranks = [
            (rankdata(np.where(np.isfinite(v), v, -np.inf), method="average") - 1) / n
            for v in values
        ]
        combined = np.mean(ranks, axis=0)
        combined[~np.isfinite(values).all(axis=0)] = np.nan  # a failed component fails
    else:
        combined = values[0]
    return combined, reasons, extra, []


def _fitted(ok, spec: ScoreSpec, budget_steps, steps_per_epoch, full_epochs):
    from ncap.predict.shipped import fitted_gain

    rows = []
    for r in ok:
        context = _context(r, steps_per_epoch, full_epochs)
        traj = r["trajectory"]
        lo = run_score("last-observed", traj, budget_steps, context).value
        tse = run_score("tse-e1", traj, budget_steps, context).value
        free = (r.get("backbone") or {}) | {"parameters": context["parameters"]}
        rows.append(base_features(traj, budget_steps, free, last_observed=lo, tse_e1=tse))
    notes = []
    x = np.array([[row[f] for f in spec.components] for row in rows], dtype=np.float64)
    x = x.reshape(len(ok), len(spec.components))
    have = np.isfinite(x).all(axis=0) if len(ok) else np.zeros(len(spec.components), bool)
    required = ("lo",)  # without the last observed accuracy there is nothing to add a gain to
    used = [f for f, h in zip(spec.components, have) if h or f in required]
    dropped = [f for f in spec.components if f not in used]
    for f in dropped:
        missing = [
            r["name"] for r, v in zip(ok, x[:, spec.components.index(f)]) if not np.isfinite(v)
        ]
        notes.append(
            f"{spec.name}: feature {f} left out of the fit ({_WHY_MISSING.get(f, 'undefined')}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})"
        )
    fraction = budget_fraction(budget_steps, steps_per_epoch, full_epochs)
    fit = fitted_gain(spec.name, used, fraction)
    cols = [spec.components.index(f) for f in fit.model.features]
    gain, sd = fit.model.predict(x[:, cols]) if len(ok) else (np.array([]), np.array([]))
    lo = x[:, spec.components.index("lo")]
    link_mean = lo + gain
    combined = sigmoid(link_mean)
    reasons: list[list[str]] = [[] for _ in ok]
    extra: list[dict[str, Any]] = [{} for _ in ok]
    outside: dict[str, list[str]] = {}
    for i, r in enumerate(ok):
        if not np.isfinite(combined[i]):
            bad = [f for f in fit.model.features if not np.isfinite(rows[i][f])]
            reasons[i].append(f"{spec.name}: undefined feature(s) {', '.join(bad)}")
            continue
        feats = {f: rows[i][f] for f in fit.model.features}
        beyond = []
        for f, v in feats.items():
            low, high = fit.ranges[f]
            if not low <= v <= high:
                outside.setdefault(f, []).append(r["name"])
                beyond.append(f)
        extra[i] = {
            "predicted": float(combined[i]),
            "link": "logit",
            "link_mean": float(link_mean[i]),
            "link_sd": float(sd[i]),
            "features": feats,
            "outside": beyond,
            "fit": {
                "budget_fraction": fit.budget,
                "features": list(fit.model.features),
                "rows": fit.model.n_rows,
            },  # fmt: skip
        }
    for f, names in outside.items():
        notes.append(
            f"{spec.name}: {f} of {', '.join(names[:5])}{' ...' if len(names) > 5 else ''} lies "
            f"outside the range the shipped model was fitted on [{fit.ranges[f][0]:.3g}, "
            f"{fit.ranges[f][1]:.3g}] (bench-v2); its prediction there is an extrapolation"
        )
    if fraction is None:
        notes.append(
            f"{spec.name}: the full budget is unknown (pass --target-epochs); the model fitted at "
            f"{100 * fit.budget:g}% of the full budget is used"
        )
    return combined, reasons, extra, notes


def score_candidates(
    records: Sequence[dict[str, Any]],
    spec: ScoreSpec,
    *,
    budget_steps: int,
    steps_per_epoch: float,
    full_epochs: float | None,
    notes: list[str] | None = None,
) -> list[str]:
    """Set ``record["score"]`` on every successful record and return the ranking (best first;
    a candidate the score cannot rate comes after the rated ones, with the reason recorded; ties
    go to the candidate named first). A score that predicts an accuracy also records
    ``predicted`` (and, with a regression behind it, ``link``, ``link_mean``, ``link_sd``).
    Remarks on the ranking as a whole (features left out, extrapolation) are appended to
    ``notes``."""
    ok = [r for r in records if r["status"] == "ok"]
    scorer = _fitted if spec.is_fitted else _per_run
    combined, reasons, extra, remarks = scorer(ok, spec, budget_steps, steps_per_epoch, full_epochs)
    if notes is not None:
        notes.extend(remarks)
    for i, r in enumerate(ok):
        value = float(combined[i]) if np.isfinite(combined[i]) else None
        r["score"] = {
            "name": spec.name,
            "value": value,
            "components": list(spec.components),
            "reason": "; ".join(reasons[i]) or None,
        } | (extra[i] if value is not None else {})
    index = {r["name"]: i for i, r in enumerate(ok)}
    return sorted(
        index,
        key=lambda n: (
            ok[index[n]]["score"]["value"] is None,
            -(ok[index[n]]["score"]["value"] or 0.0),
            index[n],
        ),
    )


def add_predictions(
    records: Sequence[dict[str, Any]],
    predictor: PredictorSettings,
    budget_fraction: float | None,
    *,
    classes: int | None = None,
    budget_steps: int | None = None,
) -> None:
    """``record["prediction"]``: each successful record's predicted final accuracy, from the
    ranking score when it predicts one (``by``: its name), else from the run's own extrapolation
    to beta_eff = 0 (``by``: the predictor's name), with its 68% and 95% intervals (recalibrated
    on the study's selection half where factors exist; ``calibrated`` says whether).

    A candidate at chance, with too few points or outside the score's fitted range
    (:mod:`ncap.predict.caveats`; ``classes`` is the task's class count) keeps its point value
    but not its interval, and its ``flags`` (also set without a prediction) name why."""
    extrapolation = nc_name(predictor)
    for r in records:
        if r["status"] != "ok":
            continue
        score = r.get("score") or {}
        fraction = budget_fraction
        if score.get("predicted") is not None:
            by, accuracy = score["name"], score["predicted"]
            link, mean, sd = score.get("link"), score.get("link_mean"), score.get("link_sd")
            if "fit" in score:  # a fitted score's factors: those of the budget it was fitted at
                fraction = score["fit"]["budget_fraction"]
        else:
            fit = r.get("fit") or {}
            by, accuracy = extrapolation, r.get("predicted_accuracy")
            link, mean, sd = fit.get("link"), fit.get("link_mean"), fit.get("link_std")
        flags = candidate_flags(r, classes=classes, budget_steps=budget_steps)
        r["flags"] = flags
        if accuracy is None:
            continue
        prediction: dict[str, Any] = {"by": by, "accuracy": accuracy}
        if link is not None and mean is not None and sd is not None and math.isfinite(sd):
            prediction |= predicted_interval(by, link, mean, sd, fraction)
        r["prediction"] = apply_flags(prediction, list(flags))


def trust_of(ranked: Sequence[dict[str, Any]], budget_fraction: float | None) -> dict[str, Any]:
    """The trust statement (:mod:`ncap.predict.trust`) of a ranking's top pick: ``ranked`` are the
    successful records, best first, after :func:`add_predictions`. Each candidate's predictive
    distribution is its ranking score's link-space mean and sd, the sd times the shipped 95%
    recalibration factor (the table's); a flagged candidate, or one without a factor, is not
    calibrated, nor is a statement whose score failed (or never had) the calibration check
    (:data:`ncap.predict.trust.CHECKED`, whose note says how it errs: ``calibration``). Candidates whose score gives no distribution (a failed score, or a score that
    predicts no accuracy with an sd: ``last-observed``, rank averages) are left out; with fewer
    than two left there is no statement (``p_best`` None and a ``reason``)."""
    from ncap.predict.trust import CHECKED, Predictive, trust_statement

    usable, left_out = [], []
    for r in ranked:
        score, prediction = r.get("score") or {}, r.get("prediction") or {}
        mean, sd, link = score.get("link_mean"), score.get("link_sd"), score.get("link")
        if link is None or mean is None or sd is None or not math.isfinite(sd):
            left_out.append(r["name"])
            continue
        fraction = budget_fraction
        if "fit" in score:
            fraction = score["fit"]["budget_fraction"]
        k = recalibration_factor(score["name"], fraction)
        interval = prediction.get("68")
        usable.append(
            Predictive(
                r["name"],
                link,
                float(mean),
                float(sd) * (k["95"] if k else 1.0),
                calibrated=k is not None and not r.get("flags"),
                interval68=tuple(interval) if interval else None,
            )
        )
    if len(usable) < 2 or ranked[0]["name"] != usable[0].name:
        name = (ranked[0].get("score") or {}).get("name") if ranked else None
        return {
            "p_best": None,
            "expected_regret": None,
            "warnings": [],
            "calibrated": False,
            "reason": (
                f"the score {name} gives no predictive distribution for "
                f"{', '.join(left_out[:5])}{' ...' if len(left_out) > 5 else ''}"
                if left_out
                else "fewer than two candidates"
            ),
        }
    notes = [f"left out (no predictive distribution): {', '.join(left_out)}"] if left_out else []
    out = trust_statement(usable, notes=notes).to_dict()
    check = CHECKED.get(ranked[0]["score"]["name"])
    out["calibrated"] = bool(out["calibrated"] and check and check["calibrated"])
    out["calibration"] = (
        check["note"] if check else "this score's trust statement was never checked for calibration"
    )
    return out
