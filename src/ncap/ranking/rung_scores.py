"""Rung scores: what successive halving ranks the candidates by at each rung.

At each rung the surviving candidates are scored on their trajectories so far, higher is better;
a candidate the score cannot rate (None) ranks below every scored one. :data:`DEFAULT_RUNG_SCORE`
is the one ``ncap rank --strategy halving`` uses unless told: ``recommended``, the score the
bench-v3 study adopted at the rung's budget (:mod:`ncap.predict.recommended`), as for a fixed
budget.
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
from dataclasses import dataclass, field
from typing import Any

from ncap.exceptions import ConfigError
from ncap.predict.caveats import candidate_flags
from ncap.predict.settings import PredictorSettings  # (no scikit-learn: the CLI reads the names)

__all__ = [
    "DEFAULT_RUNG_SCORE",
    "RUNG_SCORES",
    "RungScore",
    "RungScores",
    "RungScoring",
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


@dataclass(frozen=True)
class RungScoring:
    """How a rung's score reads the records: the rung's ``budget_steps`` (the points up to it),
    ``steps_per_epoch``, T (``full_epochs``), the rung's budget as a share of the maximum
    (``fraction_of_max``, read by the rung scores of :data:`RUNG_SCORES`), the task's ``classes``
    (the at-chance flag) and the ``source_accuracy`` values the user gave
    (:mod:`ncap.ranking.source_accuracy`)."""

    budget_steps: int
    steps_per_epoch: float
    full_epochs: float | None
    fraction_of_max: float
    classes: int | None = None
    source_accuracy: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RungScores:
    """A rung's scores: ``values`` per candidate (None: failed or unrated), the score's
    ``notes`` and, per successful record, the ``evidence`` the score saw: ``score`` (the score's
    record, as a fixed ranking stores it), ``prediction`` (with its interval, withheld when
    flagged) and ``flags`` (:mod:`ncap.predict.caveats`)."""

    values: dict[str, float | None]
    notes: list[str]
    evidence: dict[str, dict[str, Any]]


def score_rung(
    name: str,
    records: Sequence[dict[str, Any]],
    predictor: PredictorSettings,
    scoring: RungScoring,
) -> RungScores:
    """The rung score ``name`` of each record, with its notes and evidence; ``records`` are not
    changed."""
    if name in RUNG_SCORES:
        return _score_by_trajectory(name, records, predictor, scoring)
    from ncap.predict.recommended import resolve_score  # lazy: numpy, keeps ncap --help fast
    from ncap.ranking.scoring import (  # lazy: scipy, keeps ncap --help fast
        add_predictions,
        budget_fraction,
        score_candidates,
    )

    fraction = budget_fraction(scoring.budget_steps, scoring.steps_per_epoch, scoring.full_epochs)
    spec, note = resolve_score(name, fraction)
    copies = [dict(r) for r in records]
    notes: list[str] = []
    score_candidates(copies, spec, budget_steps=scoring.budget_steps,
                     steps_per_epoch=scoring.steps_per_epoch, full_epochs=scoring.full_epochs,
                     notes=notes, source_accuracy=scoring.source_accuracy)  # fmt: skip
    if note:
        notes.insert(0, note)
    add_predictions(
        copies, predictor, fraction, classes=scoring.classes, budget_steps=scoring.budget_steps
    )
    evidence = {
        r["name"]: {key: r[key] for key in ("score", "prediction", "flags") if key in r}
        for r in copies
        if r["status"] == "ok"
    }
    values = {r["name"]: (r.get("score") or {}).get("value") for r in copies}
    return RungScores(values, notes, evidence)


def _score_by_trajectory(
    name: str,
    records: Sequence[dict[str, Any]],
    predictor: PredictorSettings,
    scoring: RungScoring,
) -> RungScores:
    """A score of :data:`RUNG_SCORES` on each successful record's trajectory."""
    score = make_rung_score(name, predictor)
    values = {
        r["name"]: score(r["trajectory"], scoring.fraction_of_max) if r["status"] == "ok" else None
        for r in records
    }
    evidence = {
        r["name"]: {
            "score": {"name": name, "value": values[r["name"]]},
            "flags": candidate_flags(r, classes=scoring.classes, budget_steps=scoring.budget_steps),
        }
        for r in records
        if r["status"] == "ok"
    }
    return RungScores(values, [], evidence)


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
