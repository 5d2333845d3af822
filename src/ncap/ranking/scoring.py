"""Rank a run's finished candidates by a score (:mod:`ncap.predict.recommended`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ncap.predict.recommended import ScoreSpec, predicted_interval
from ncap.predict.scores import nc_name, run_score
from ncap.predict.settings import PredictorSettings

__all__ = ["RANKING_FIELDS", "add_intervals", "score_candidates"]

# set on the records of a ranking (results.json), not in candidates/*.json: a rank average depends
# on the other candidates, and the interval on the budget's share of the full budget
RANKING_FIELDS = ("score", "predicted_interval")


def add_intervals(
    records: Sequence[dict[str, Any]], predictor: PredictorSettings, budget_fraction: float | None
) -> None:
    """``record["predicted_interval"]``: the (recalibrated) 68% and 95% intervals of each
    successful record's predicted final accuracy."""
    name = nc_name(predictor)
    for r in records:
        fit = r.get("fit") or {}
        if r["status"] != "ok" or fit.get("link_mean") is None:
            continue
        r["predicted_interval"] = predicted_interval(
            name, fit["link"], fit["link_mean"], fit["link_std"], budget_fraction
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
    }


def score_candidates(
    records: Sequence[dict[str, Any]],
    spec: ScoreSpec,
    *,
    budget_steps: int,
    steps_per_epoch: float,
    full_epochs: float | None,
) -> list[str]:
    """Set ``record["score"]`` on every successful record and return the ranking (best first;
    a candidate the score cannot rate comes after the rated ones, with the reason recorded; ties
    go to the candidate named first). A rank average's value is the mean of the components'
    normalised ranks ``(rank - 1) / (n - 1)`` among the successful candidates."""
    ok = [r for r in records if r["status"] == "ok"]
    values = np.full((len(spec.components), len(ok)), np.nan)
    reasons: list[list[str]] = [[] for _ in ok]
    for i, r in enumerate(ok):
        context = _context(r, steps_per_epoch, full_epochs)
        for j, (name, sign) in enumerate(zip(spec.components, spec.signs)):
            sc = run_score(name, r["trajectory"], budget_steps, context, sign=sign)
            if sc.value is None:
                reasons[i].append(f"{name}: {sc.reason}")
            else:
                values[j, i] = sc.value
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
    for i, r in enumerate(ok):
        value = float(combined[i]) if np.isfinite(combined[i]) else None
        r["score"] = {
            "name": spec.name,
            "value": value,
            "components": list(spec.components),
            "reason": "; ".join(reasons[i]) or None,
        }
    index = {r["name"]: i for i, r in enumerate(ok)}
    return sorted(
        index,
        key=lambda n: (
            ok[index[n]]["score"]["value"] is None,
            -(ok[index[n]]["score"]["value"] or 0.0),
            index[n],
        ),
    )
