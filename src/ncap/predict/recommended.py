"""ncap's recommended ranking score, as chosen by the pre-registered studies (bench-v3 today).

docs/benchmark-v3-protocol.md (section 3.5) fixes how: the default is the study's adopted score at
the study budget (2.5, 5, 10 or 20% of the full budget T) nearest the run's in log f, with the
study's note where nothing beat the last observed accuracy reliably; with T unknown, the 10% choice
is used and the output says so. A study that decided per budget bin (bench-v2's protocol: ``early``
= 2.5-5%, ``late`` = 10-20%, split at sqrt(0.05 * 0.1) ~ 7.07%) is still read per bin.
``tests/predict/test_recommended.py`` checks these constants against the committed study
(``benchmarks/results/bench-v3-study/``). :func:`resolve_trial_score` gives the score that predicts
one run's final accuracy (the framework integrations).

A score is parsed once (:func:`parse_score`) into a frozen object: a per-run score
(:mod:`ncap.predict.scores`: extrapolation, dynamics feature, baseline), a :class:`RankAverage` of
several (``ravg/...``) or a shipped :class:`Fitted` model (``fit/...``); a dynamics feature carries
its orientation (``sign``, fixed on the study's selection half).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

from ncap.exceptions import ConfigError
from ncap.predict.features import logit, sigmoid
from ncap.predict.scores import BASELINE_SCORES, PROXY_SCORES, DynamicsFeature, RunScoreSpec
from ncap.predict.scores import parse_score as parse_run_score
from ncap.predict.shipped import (
    nearest_budget,
    recommended_settings,
    shipped_fits,
    shipped_residuals,
)
from ncap.predict.trust import Empirical

__all__ = [
    "EARLY_LATE_BOUNDARY",
    "PAPER",
    "RECOMMENDED",
    "RECOMMENDED_BY_BUDGET",
    "RECALIBRATION",
    "SIGMA",
    "Fitted",
    "RankAverage",
    "Score",
    "parse_score",
    "predicts_one_run",
    "empirical_prediction",
    "predicted_interval",
    "run_parts",
    "recalibration_factor",
    "resolve_score",
    "resolve_trial_score",
]

PAPER = "nc/interval/signed/linear/b0/identity"  # the paper's reading: --score paper
EARLY_LATE_BOUNDARY = math.sqrt(0.05 * 0.1)

_SHIPPED = recommended_settings()  # ncap/predict/data/recommended.json (ncap.predict.shipped)

# The orientation of the beta_eff dynamics features, frozen on the study's selection half
# (benchmarks/results/bench-v3-study/selection.json, "sigma"); +1: higher is better.
SIGMA: dict[str, float] = dict(_SHIPPED["sigma"])

# The adopted default per bin (bench-v2's study; for bench-v3's, the default at the bin's first
# budget, kept for readers of the older format).
RECOMMENDED: dict[str, str] = dict(_SHIPPED["recommended"])

# The adopted default per budget fraction when the study decided per budget (bench-v3's protocol,
# section 3.5: ``{f: {"score": name, "note": text or None}}``; the note says when nothing beat the
# last observed accuracy reliably there); empty for a study that decided per bin (bench-v2).
RECOMMENDED_BY_BUDGET: dict[float, dict[str, str | None]] = {
    float(f): dict(d) for f, d in (_SHIPPED.get("recommended_by_budget") or {}).items()
}

# Split-conformal factors k of the predicted accuracy's interval (m ± k z sd in link space), per
# predictor and budget fraction, fixed on the selection half
# (benchmarks/results/bench-v3-study/selection.json, "recalibration"; fit/base's from bench-v2's).
RECALIBRATION: dict[str, dict[float, dict[str, float]]] = {
    name: {float(f): dict(k) for f, k in per.items()}
    for name, per in _SHIPPED["recalibration"].items()
}
Z = {"68": 0.994, "95": 1.960}

# Components of the rank averages the study evaluated (docs/benchmark-v2-protocol.md, D1).
_RAVG = {
    "lo": "last-observed",
    "params": "param-count",
    "tse-e1": "tse-e1",
    "logme": "logme",
}


@dataclass(frozen=True)
class RankAverage:
    """``ravg/a+b[+c]``: the mean of the components' normalised ranks among the candidates
    (:func:`ncap.ranking.scoring.score_candidates`); each component is a per-run score, oriented
    by its ``sign``.

    >>> parse_score("ravg/lo+params").components
    ('last-observed', 'param-count')
    """

    name: str
    parts: tuple[RunScoreSpec, ...]
    kind: ClassVar[str] = "ravg"
    predicts_accuracy: ClassVar[bool] = False

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    @property
    def signs(self) -> tuple[float, ...]:
        return tuple(p.sign for p in self.parts)

    @property
    def training_free(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for p in self.parts for v in p.training_free))


@dataclass(frozen=True)
class Fitted:
    """``fit/...``: a model fitted across the benchmark's targets that ncap ships
    (:mod:`ncap.predict.shipped`), on the early ``features`` of each candidate.

    >>> parse_score("fit/base").components[0]
    'lo'
    """

    name: str
    features: tuple[str, ...]
    kind: ClassVar[str] = "fit"
    predicts_accuracy: ClassVar[bool] = True
    parts: ClassVar[tuple[()]] = ()

    @property
    def components(self) -> tuple[str, ...]:
        return self.features

    @property
    def signs(self) -> tuple[float, ...]:
        return (1.0,) * len(self.features)

    @property
    def training_free(self) -> tuple[str, ...]:
        free = {
            "logme": "logme",
            "log10_parameters": "parameters",
            "logit_source": "source_accuracy",
        }
        return tuple(free[f] for f in self.features if f in free)


Score = RunScoreSpec | RankAverage | Fitted


def run_parts(score: Score) -> tuple[RunScoreSpec, ...]:
    """The per-run scores a ranking by ``score`` computes for each candidate (none for a fitted
    score, which reads features)."""
    if isinstance(score, RankAverage):
        return score.parts
    if isinstance(score, Fitted):
        return ()
    return (score,)


def _oriented(spec: RunScoreSpec) -> RunScoreSpec:
    """A dynamics feature with the orientation frozen on the study's selection half."""
    if isinstance(spec, DynamicsFeature):
        return replace(spec, sign=SIGMA.get(spec.name, 1.0))
    return spec


def _component(name: str) -> RunScoreSpec:
    if name in _RAVG:
        name = _RAVG[name]
    elif name.startswith("dyn/") and name.count("/") == 2:  # ravg/lo+dyn/{m}/{v}: the slope
        name += "/slope"
    elif name.startswith("nc/") and name.count("/") == 1:  # ravg/lo+nc/{m}: the current default
        name += "/abs-mean/quadratic/b0/logit"
    return _oriented(_parse_run(name))


def _parse_run(name: str) -> RunScoreSpec:
    try:
        return parse_run_score(name)
    except ConfigError as err:
        if name.startswith(("nc/", "dyn/")):
            raise
        raise ConfigError(
            f"unknown score {name!r}; choose 'recommended', 'paper', one of "
            f"{', '.join(BASELINE_SCORES)}, a zero-cost proxy ({', '.join(PROXY_SCORES)}), "
            "nc/{measurement}/{variant}/{features}/"
            "b{burn_in}/{link}, dyn/{measurement}/{variant}/{feature} or ravg/a+b "
            "(docs/benchmark.md lists them)."
        ) from err


def parse_score(name: str) -> Score:
    """A ranking score by name, parsed once: a per-run score
    (:func:`ncap.predict.scores.parse_score`), ``paper``, ``ravg/a+b[+c]`` (e.g.
    ``ravg/lo+params+dyn/interval/abs-mean``) or a shipped ``fit/...``."""
    if name == "paper":
        name = PAPER
    if name.startswith("ravg/"):
        parts = name[len("ravg/") :].split("+")
        return RankAverage(name, tuple(_component(p) for p in parts))
    if name.startswith("fit/"):
        if name not in shipped_fits():
            raise ConfigError(
                f"{name!r} is a model fitted across the benchmark's targets that ncap does not "
                f"ship (it was not adopted); the shipped one(s): {', '.join(shipped_fits())}."
            )
        return Fitted(name, shipped_fits()[name])
    return _oriented(_parse_run(name))


def resolve_score(
    name: str | None,
    budget_fraction: float | None,
    *,
    by_budget: dict[float, dict[str, str | None]] | None = None,
) -> tuple[Score, str | None]:
    """The score to rank by and a note for the output (or None).

    ``name`` None or "recommended" gives the study's default: per budget (``by_budget``, default
    :data:`RECOMMENDED_BY_BUDGET`) at the study's budget nearest ``budget_fraction`` in log f, 10%
    of T when T is unknown; else per bin (bench-v2's study).
    """
    if name not in (None, "recommended"):
        return parse_score(name), None
    by_budget = RECOMMENDED_BY_BUDGET if by_budget is None else by_budget
    if by_budget:
        return _resolve_by_budget(by_budget, budget_fraction)
    if budget_fraction is None:
        if RECOMMENDED["early"] == RECOMMENDED["late"]:  # the bin does not matter
            return parse_score(RECOMMENDED["late"]), None
        return parse_score(RECOMMENDED["late"]), (
            "the full budget T is unknown (pass --target-epochs): the recommended score for "
            "budgets of 10-20% of T is used"
        )
    bin_ = "early" if budget_fraction < EARLY_LATE_BOUNDARY else "late"
    note = None
    if not 0.025 <= budget_fraction <= 0.2:
        note = (
            f"the budget is {100 * budget_fraction:.3g}% of the full budget; the recommended "
            "score was chosen for 2.5-20%, so this is extrapolated"
        )
    return parse_score(RECOMMENDED[bin_]), note


def _resolve_by_budget(
    by_budget: dict[float, dict[str, str | None]], fraction: float | None
) -> tuple[Score, str | None]:
    budgets = sorted(by_budget)
    nearest = nearest_budget(budgets, fraction if fraction is not None else 0.1)
    chosen = by_budget[nearest]
    notes = []
    if fraction is None:
        notes.append(
            "the full budget T is unknown (pass --target-epochs): the recommended score for "
            f"{100 * nearest:g}% of T is used"
        )
    elif not budgets[0] <= fraction <= budgets[-1]:
        notes.append(
            f"the budget is {100 * fraction:.3g}% of the full budget; the recommended score was "
            f"chosen for {100 * budgets[0]:g}-{100 * budgets[-1]:g}%, so this is extrapolated "
            f"(the {100 * nearest:g}% choice is used)"
        )
    if chosen.get("note"):
        notes.append(str(chosen["note"]))
    return parse_score(str(chosen["score"])), "; ".join(notes) or None


def predicts_one_run(score: Score) -> bool:
    """Whether ``score`` predicts one run's final accuracy on its own: a shipped fitted score or a
    per-run score that predicts an accuracy (an extrapolation, the last observed accuracy); not a
    rank average, LogME, a zero-cost proxy or a dynamics feature, which only order candidates
    against each other."""
    if isinstance(score, Fitted):
        return True
    return not isinstance(score, RankAverage) and bool(score.predicts_accuracy)


def resolve_trial_score(name: str | None, budget_fraction: float | None) -> Score:
    """The score that predicts one training run's final accuracy (the framework integrations'
    callbacks and pruners, :mod:`ncap.integrations.curve`).

    ``name`` when given (it must predict one run's accuracy, :func:`predicts_one_run`); by default
    the recommended score at that budget (:func:`resolve_score`) when it does, else the last
    observed accuracy, whose predictive distribution the study ships (its residuals,
    :func:`ncap.predict.shipped.shipped_residuals`). On bench-v3 the defaults at 2.5-10% of T
    (LogME, a rank average) order candidates against each other and predict no run's accuracy;
    at 20% the default is the last observed accuracy itself.

    >>> resolve_trial_score(None, 0.2).name, resolve_trial_score("fit/base", 0.05).name
    ('last-observed', 'fit/base')
    """
    if name not in (None, "recommended"):
        spec = parse_score(str(name))
        if not predicts_one_run(spec):
            raise ConfigError(
                f"score={name!r} orders candidates against each other and predicts no run's final "
                "accuracy, which a callback or pruner needs; pass a score that does "
                "('last-observed', 'fit/base', an nc/... extrapolation such as 'paper') or None "
                "(the default)."
            )
        return spec
    spec, _ = resolve_score(None, budget_fraction)
    return spec if predicts_one_run(spec) else parse_score("last-observed")


def recalibration_factor(predictor: str, budget_fraction: float | None) -> dict[str, float] | None:
    """The study's factors ``{"68": k, "95": k}`` for ``predictor`` at the budget nearest
    ``budget_fraction`` (in log f); None when it has none or the budget is unknown."""
    factors = RECALIBRATION.get(predictor)
    if not factors or budget_fraction is None or not budget_fraction > 0:
        return None
    nearest = min(factors, key=lambda f: abs(math.log(f) - math.log(budget_fraction)))
    return factors[nearest]


def predicted_interval(
    predictor: str,
    link: str,
    link_mean: float,
    link_sd: float,
    budget_fraction: float | None,
) -> dict[str, object]:
    """The 68% and 95% intervals of a predicted final accuracy: ``m ± k z sd`` in link space,
    mapped back (sigmoid for the logit link, clipped to [0, 1] for identity), with the study's
    recalibration factor ``k`` of the nearest budget (in log f); ``k = 1`` and ``calibrated``
    False when the study has none for this predictor or the budget is unknown."""
    k = recalibration_factor(predictor, budget_fraction)
    from scipy.special import expit  # lazy: scipy, only for the interval

    out: dict[str, object] = {"calibrated": k is not None}
    for q, z in Z.items():
        half = (k[q] if k else 1.0) * z * link_sd
        lo, hi = link_mean - half, link_mean + half
        if link == "logit":
            lo, hi = float(expit(lo)), float(expit(hi))  # (no overflow at any value)
        else:
            lo, hi = min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)
        out[q] = [lo, hi]
    return out


def empirical_prediction(
    name: str,
    value: float,
    budget_fraction: float | None,
    *,
    residuals=shipped_residuals,
) -> dict[str, object] | None:
    """The predicted final accuracy of a score without an sd whose residuals the study ships (the
    last observed accuracy, bench-v3): ``sigmoid(logit(value) + r)``, r the residuals
    ``logit(final) - logit(LO)`` of the study budget nearest ``budget_fraction``; ``accuracy`` is
    its median and "68"/"95" its central quantiles, ``calibrated`` True (they are the benchmark's
    own spread) and ``budget_fraction`` the study budget read. None when none are shipped
    (``residuals(name, fraction)`` -> ``(budget, residuals)`` or None; a replay passes its own).

    >>> p = empirical_prediction("last-observed", 0.5, 0.2)
    >>> p["budget_fraction"], p["95"][0] < 0.5 < p["accuracy"] < p["95"][1]
    (0.2, True)
    """
    shipped = residuals(name, budget_fraction)
    if shipped is None or not math.isfinite(value):
        return None
    dist = Empirical(name, float(logit(float(value))), shipped[1])
    return {
        "accuracy": float(sigmoid(dist.mean)),
        "calibrated": True,
        "budget_fraction": shipped[0],
    } | {level: list(dist.interval(level)) for level in Z}
