"""Rung scores: what successive halving ranks the candidates by at each rung.

At each rung the surviving candidates are scored on their trajectories so far, higher is better;
a candidate the score cannot rate (None) ranks below every scored one. :data:`DEFAULT_RUNG_SCORE`
is the one ``ncap rank --strategy halving`` uses unless told: ``recommended``, the score the
bench-v2 study adopted (:mod:`ncap.predict.recommended`; ``fit/base``), as for a fixed budget.
Any score ``ncap rank --score`` accepts works (:func:`score_rung`, via
:func:`ncap.ranking.scoring.score_candidates` on the rung's records, so a fitted score sees the
rung's budget as a share of ``--target-epochs``), plus:

- ``last-observed``: the last observed validation accuracy (what ASHA / Hyperband rank by);
- ``predicted``: the run's own extrapolation to beta_eff = 0
  (:func:`ncap.predict.capacitance.predict_from_points` with the run's predictor settings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ncap.exceptions import ConfigError
from ncap.predict.caveats import candidate_flags
from ncap.predict.settings import PredictorSettings  # (no scikit-learn: the CLI reads the names)

__all__ = [
    "DEFAULT_RUNG_SCORE",
    "RUNG_SCORES",
    "RungScore",
    "check_rung_score",
    "make_rung_score",
    "min_points",
    "needs_logme",
    "reads_source_accuracy",
    "score_rung",
]

RungScore = Callable[[Sequence[dict[str, Any]], float], float | None]

# The one place that names the default: the study's recommended score (issue 14).
DEFAULT_RUNG_SCORE = "recommended"


def _last_observed(points: Sequence[dict[str, Any]], fraction: float) -> float | None:
    return float(points[-1]["val_accuracy"]) if points else None


def _predicted(predictor: PredictorSettings) -> RungScore:
    from ncap.predict.capacitance import predict_from_points  # lazy: scikit-learn

    def score(points: Sequence[dict[str, Any]], fraction: float) -> float | None:
        if not points:
            return None
        try:
            value = predict_from_points(points, predictor, points[-1]["step"])["predicted_accuracy"]
        except ValueError:  # too few usable points, beta_eff undefined throughout
            return None
        return float(value) if value is not None and math.isfinite(value) else None

    return score


# name -> (factory of the score given the run's predictor settings, description)
RUNG_SCORES: dict[str, tuple[Callable[[PredictorSettings], RungScore], str]] = {
    "last-observed": (lambda predictor: _last_observed, "the last observed validation accuracy"),
    "predicted": (_predicted, "neural capacitance's predicted final accuracy"),
}


def check_rung_score(name: str) -> None:
    """A ConfigError naming the choices when ``name`` is no rung score (before any training)."""
    if name in RUNG_SCORES:
        return
    from ncap.predict.recommended import resolve_score  # lazy: numpy, keeps ncap --help fast

    try:
        resolve_score(name, None)
    except ConfigError as err:
        raise ConfigError(
            f"unknown rung score {name!r}: {err} (or {', '.join(sorted(RUNG_SCORES))})"
        ) from None


def needs_logme(name: str) -> bool:
    """Whether the rung score reads LogME (the candidates then compute it before training)."""
    if name in RUNG_SCORES:
        return False
    from ncap.predict.recommended import resolve_score  # lazy: numpy, keeps ncap --help fast

    return "logme" in resolve_score(name, None)[0].training_free


def reads_source_accuracy(name: str, fractions: Sequence[float | None]) -> bool:
    """Whether the rung score reads a source accuracy at any of the rungs' budget ``fractions``
    of T (``recommended`` resolves per budget)."""
    if name in RUNG_SCORES:
        return False
    from ncap.predict.recommended import resolve_score  # lazy: numpy, keeps ncap --help fast

    return any("source_accuracy" in resolve_score(name, f)[0].training_free for f in fractions)


def score_rung(
    name: str,
    records: Sequence[dict[str, Any]],
    predictor: PredictorSettings,
    *,
    budget_steps: int,
    steps_per_epoch: float,
    full_epochs: float | None,
    fraction_of_max: float,
    notes: list[str] | None = None,
    classes: int | None = None,
    evidence: dict[str, dict[str, Any]] | None = None,
    source_accuracy: dict[str, float] | None = None,
) -> dict[str, float | None]:
    """The rung's score of each record (None: failed or unrated). ``records`` are not changed.
    ``source_accuracy``: values the user gave (:mod:`ncap.ranking.source_accuracy`).

    ``evidence``, when given, receives per successful record what the score saw: ``score`` (the
    score's record, as a fixed ranking stores it), ``prediction`` (with its interval, withheld
    when flagged) and ``flags`` (:mod:`ncap.predict.caveats`; ``classes``: the task's classes).
    """
    if name in RUNG_SCORES:
        score = make_rung_score(name, predictor)
        values = {
            r["name"]: score(r["trajectory"], fraction_of_max) if r["status"] == "ok" else None
            for r in records
        }
        for r in records if evidence is not None else ():
            if r["status"] == "ok":
                evidence[r["name"]] = {
                    "score": {"name": name, "value": values[r["name"]]},
                    "flags": candidate_flags(r, classes=classes, budget_steps=budget_steps),
                }
        return values
    from ncap.predict.recommended import resolve_score  # lazy: numpy, keeps ncap --help fast
    from ncap.ranking.scoring import (  # lazy: scipy, keeps ncap --help fast
        add_predictions,
        budget_fraction,
        score_candidates,
    )

    fraction = budget_fraction(budget_steps, steps_per_epoch, full_epochs)
    spec, note = resolve_score(name, fraction)
    copies = [dict(r) for r in records]
    score_candidates(copies, spec, budget_steps=budget_steps, steps_per_epoch=steps_per_epoch,
                     full_epochs=full_epochs, notes=notes,
                     source_accuracy=source_accuracy)  # fmt: skip
    if note and notes is not None:
        notes.insert(0, note)
    if evidence is not None:
        add_predictions(copies, predictor, fraction, classes=classes, budget_steps=budget_steps)
        for r in copies:
            if r["status"] == "ok":
                evidence[r["name"]] = {
                    key: r[key] for key in ("score", "prediction", "flags") if key in r
                }
    return {r["name"]: (r.get("score") or {}).get("value") for r in copies}


def make_rung_score(name: str, predictor: PredictorSettings) -> RungScore:
    """The rung score called ``name`` (:data:`RUNG_SCORES`)."""
    if name not in RUNG_SCORES:
        raise ConfigError(f"unknown rung score {name!r}; choose one of {sorted(RUNG_SCORES)}.")
    return RUNG_SCORES[name][0](predictor)


def min_points(name: str, predictor: PredictorSettings) -> int:
    """Evaluation points the first rung needs for the score to be defined."""
    if name != "predicted":
        return 1
    coefficients = 2 if predictor.features == "quadratic" else 1  # (the predictor's own rule)
    return predictor.burn_in + max(predictor.min_points, coefficients + 2, 2)
