"""Rank a run's finished candidates by a score (:mod:`ncap.predict.recommended`) and attach each
candidate's predicted final accuracy with its interval.

Three kinds of score (:func:`ncap.predict.recommended.parse_score`):

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

A source accuracy the user gave (``source_accuracy``, :mod:`ncap.ranking.source_accuracy`) is what
every score reads as the candidate's source accuracy, in place of the recorded one (if any).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from ncap.predict.caveats import apply_flags, candidate_flags
from ncap.predict.features import base_features, logit, sigmoid
from ncap.predict.recommended import (
    Fitted,
    RankAverage,
    Score,
    empirical_prediction,
    predicted_interval,
    recalibration_factor,
    run_parts,
)
from ncap.predict.scores import Baseline, nc_name, run_score
from ncap.predict.settings import PredictorSettings
from ncap.predict.shipped import UNKNOWN_BUDGET, fit_budgets, fitted_gain, shipped_residuals
from ncap.predict.trust import CHECKED, Empirical, Predictive, trust_statement

__all__ = [
    "RANKING_FIELDS",
    "add_predictions",
    "assumed_note",
    "budget_fraction",
    "budget_to_separate",
    "score_candidates",
    "separation_note",
    "target_or_assumed",
    "trust_of",
]

# set on the records of a ranking (results.json), not in candidates/*.json: a rank average depends
# on the other candidates, and the interval on the budget's share of the full budget
RANKING_FIELDS = ("score", "prediction", "flags")

_WHY_MISSING = {
    "logit_source": "no source accuracy; only ncap's own zoo records one, give it with "
    "--source-accuracy NAME=VALUE or source_accuracy= in Python",
    "logme": "no finite LogME (see backbone.logme_error; records from before ncap computed it)",
    "lo_slope": "fewer than two evaluation points after epoch 0 within the budget",
    "tse_e1": "no training loss within the budget",
    "log10_parameters": "no parameter count",
    "log2_features": "no feature width",
    "lo": "no evaluation point within the budget",
}


_LAST_OBSERVED, _TSE_E1 = Baseline("last-observed"), Baseline("tse-e1")


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


def _context(record: dict[str, Any], steps_per_epoch: float, full_epochs: float | None,
             given: Mapping[str, float]):  # fmt: skip
    backbone = record.get("backbone") or {}
    return {
        "steps_per_epoch": steps_per_epoch,
        "target_epoch": full_epochs if full_epochs is not None else math.nan,
        "curve_starts": 3,
        "parameters": backbone.get("parameters"),
        "source_accuracy": given.get(record["name"], backbone.get("source_accuracy")),
        "logme": backbone.get("logme"),
        "proxies": backbone.get("proxies"),
    }


def _per_run(ok, spec: Score, budget_steps, steps_per_epoch, full_epochs, given):
    parts = run_parts(spec)
    average = isinstance(spec, RankAverage)
    values = np.full((len(parts), len(ok)), np.nan)
    reasons: list[list[str]] = [[] for _ in ok]
    extra: list[dict[str, Any]] = [{} for _ in ok]
    for i, r in enumerate(ok):
        context = _context(r, steps_per_epoch, full_epochs, given)
        for j, part in enumerate(parts):
            sc = part.score(r["trajectory"], budget_steps, context)
            if sc.value is None:
                reasons[i].append(f"{part.name}: {sc.reason}")
                continue
            values[j, i] = sc.value
            if not average and sc.predicted is not None:
                extra[i] = {"predicted": sc.predicted, "link": sc.link,
                            "link_mean": sc.link_mean, "link_sd": sc.link_sd}  # fmt: skip
    if average:
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


def _fitted(ok, spec: Fitted, budget_steps, steps_per_epoch, full_epochs, given):
    rows = []
    for r in ok:
        context = _context(r, steps_per_epoch, full_epochs, given)
        traj = r["trajectory"]
        lo = _LAST_OBSERVED.score(traj, budget_steps, context).value
        tse = _TSE_E1.score(traj, budget_steps, context).value
        free = (r.get("backbone") or {}) | {
            key: context[key] for key in ("parameters", "source_accuracy")
        }
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
    spec: Score,
    *,
    budget_steps: int,
    steps_per_epoch: float,
    full_epochs: float | None,
    notes: list[str] | None = None,
    source_accuracy: Mapping[str, float] | None = None,
) -> list[str]:
    """Set ``record["score"]`` on every successful record and return the ranking (best first;
    a candidate the score cannot rate comes after the rated ones, with the reason recorded; ties
    go to the candidate named first). A score that predicts an accuracy also records
    ``predicted`` (and, with a regression behind it, ``link``, ``link_mean``, ``link_sd``).
    Remarks on the ranking as a whole (features left out, extrapolation) are appended to
    ``notes``. ``source_accuracy`` (name -> fraction, checked: :mod:`ncap.ranking.source_accuracy`)
    is read in place of a candidate's recorded source accuracy."""
    ok = [r for r in records if r["status"] == "ok"]
    scorer = _fitted if isinstance(spec, Fitted) else _per_run
    combined, reasons, extra, remarks = scorer(
        ok, spec, budget_steps, steps_per_epoch, full_epochs, source_accuracy or {}
    )
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
    ranking score when it predicts one (``by``: its name), else from the last observed accuracy
    within the budget (``by``: "last-observed"; the score one run's prediction uses,
    :func:`ncap.predict.recommended.resolve_trial_score`), else (no residuals shipped) from the
    run's own extrapolation to beta_eff = 0 (``by``: the predictor's name), with its 68% and 95%
    intervals (recalibrated on the study's selection half where factors exist; ``calibrated``
    says whether). A score without an sd whose residuals the study ships (the last observed
    accuracy) predicts the median of its empirical distribution, with its central quantiles
    (:func:`ncap.predict.recommended.empirical_prediction`).

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
        elif (lo := _lo_prediction(r, fraction, budget_steps)) is not None:  # LO's distribution
            by, accuracy = "last-observed", lo
            link = mean = sd = None
        else:
            fit = r.get("fit") or {}
            by, accuracy = extrapolation, r.get("predicted_accuracy")
            link, mean, sd = fit.get("link"), fit.get("link_mean"), fit.get("link_std")
        flags = candidate_flags(r, classes=classes, budget_steps=budget_steps)
        r["flags"] = flags
        if accuracy is None:
            continue
        prediction: dict[str, Any] = {"by": by, "accuracy": accuracy}
        empirical = empirical_prediction(by, accuracy, fraction) if link is None else None
        if empirical is not None:  # LO: the benchmark's residuals (its median and quantiles)
            prediction |= {k: v for k, v in empirical.items() if k != "budget_fraction"}
        elif link is not None and mean is not None and sd is not None and math.isfinite(sd):
            prediction |= predicted_interval(by, link, mean, sd, fraction)
        r["prediction"] = apply_flags(prediction, list(flags))


def _lo_prediction(
    record: dict[str, Any], fraction: float | None, budget_steps: int | None
) -> float | None:
    """The last observed accuracy within the budget when LO's residuals are shipped (its
    prediction is then :func:`ncap.predict.recommended.empirical_prediction`), else None."""
    if shipped_residuals("last-observed", fraction) is None:
        return None
    points = record.get("trajectory") or []
    if not points:
        return None
    max_step = budget_steps if budget_steps is not None else points[-1]["step"]
    return run_score("last-observed", points, max_step, {}).value  # None: no finite LO


def budget_to_separate(
    leader: dict[str, Any], other: dict[str, Any], target_epochs: float | None
) -> dict[str, Any] | None:
    """The smallest study budget at which a fitted score's 95% intervals of two candidates would
    no longer overlap, if their predicted accuracies stayed where they are now: each interval is
    rebuilt from the shipped model fitted at that budget (its predictive sd for the candidate's
    current features) and that budget's recalibration factor. None when the score is not a
    fitted one or a candidate is flagged; ``{"budget_fraction": None}`` when not even the largest
    study budget would separate them. An estimate, not a promise: more training also moves the
    predictions."""
    scores = [r.get("score") or {} for r in (leader, other)]
    if any("fit" not in s or s.get("link_mean") is None for s in scores) or any(
        r.get("flags") for r in (leader, other)
    ):
        return None
    name, used = scores[0]["name"], scores[0]["fit"]["features"]
    now = scores[0]["fit"]["budget_fraction"]
    for fraction in (f for f in fit_budgets(name) if f > now):
        fit = fitted_gain(name, used, fraction)
        intervals = []
        for s in scores:
            x = np.array([[s["features"][f] for f in fit.model.features]])
            sd = float(fit.model.predict(x)[1][0])
            intervals.append(predicted_interval(name, "logit", s["link_mean"], sd, fraction)["95"])
        if intervals[1][1] < intervals[0][0]:
            epochs = None if target_epochs is None else fraction * target_epochs
            return {"budget_fraction": fraction, "epochs": epochs}
    return {"budget_fraction": None, "epochs": None}


def separation_note(verdict: dict[str, Any], records: dict[str, dict[str, Any]],
                    target_epochs: float | None) -> None:  # fmt: skip
    """Add to a verdict that cannot tell the leader from the runner-up the budget that would
    (:func:`budget_to_separate`), in ``verdict["budget_to_separate"]`` and its statement."""
    tied = verdict.get("tied") or []
    if verdict.get("separated") or len(tied) < 2:
        return
    estimate = budget_to_separate(records[tied[0]], records[tied[1]], target_epochs)
    if estimate is None:
        return
    verdict["budget_to_separate"] = estimate
    if estimate["budget_fraction"] is None:
        verdict["statement"] += (
            f"; even at the largest budget the score was fitted at (20% of T) {tied[0]} and "
            f"{tied[1]} would still overlap, if their predictions stayed as they are"
        )
    else:
        epochs = estimate["epochs"]
        verdict["statement"] += (
            f"; {tied[0]} and {tied[1]} would separate at about "
            f"{100 * estimate['budget_fraction']:g}% of T"
            + ("" if epochs is None else f" ({epochs:.3g} epochs)")
            + " if their predictions stayed as they are (the shipped score's intervals at that "
            "budget)"
        )


def _empirical(
    name: str, score: dict[str, Any], fraction: float | None, *, flagged: bool
) -> Empirical | None:
    """A candidate's empirical predictive distribution from its score's shipped residuals."""
    value = score.get("value")
    shipped = shipped_residuals(score.get("name") or "", fraction) if value is not None else None
    if shipped is None or not math.isfinite(float(value)):
        return None
    return Empirical(name, float(logit(float(value))), shipped[1], calibrated=not flagged)


def trust_of(ranked: Sequence[dict[str, Any]], budget_fraction: float | None) -> dict[str, Any]:
    """The trust statement (:mod:`ncap.predict.trust`) of a ranking's top pick: ``ranked`` are the
    successful records, best first, after :func:`add_predictions`. Each candidate's predictive
    distribution is its ranking score's link-space mean and sd, the sd times the shipped 95%
    recalibration factor (the table's); a flagged candidate, or one without a factor, is not
    calibrated, nor is a statement whose score failed (or never had) the calibration check
    (:data:`ncap.predict.trust.CHECKED`, whose note says how it errs: ``calibration``). Candidates whose score gives no distribution (a failed score, or a score that
    predicts no accuracy with an sd and has no shipped residuals: rank averages) are left out;
    with fewer than two left there is no statement (``p_best`` None and a ``reason``). A score
    with shipped residuals (``last-observed``, bench-v3) gives ``logit(value) + r``, r drawn from
    the residuals of the study budget nearest ``budget_fraction`` (:class:`Empirical`)."""
    usable: list[Predictive | Empirical] = []
    left_out = []
    for r in ranked:
        score, prediction = r.get("score") or {}, r.get("prediction") or {}
        mean, sd, link = score.get("link_mean"), score.get("link_sd"), score.get("link")
        if link is None or mean is None or sd is None or not math.isfinite(sd):
            empirical = _empirical(r["name"], score, budget_fraction, flagged=bool(r.get("flags")))
            if empirical is None:
                left_out.append(r["name"])
            else:
                usable.append(empirical)
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
