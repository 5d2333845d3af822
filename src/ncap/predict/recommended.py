"""ncap's recommended ranking score, as chosen by the pre-registered study on bench-v2.

docs/benchmark-v2-protocol.md fixes how: per budget bin (``early`` = 2.5-5% of the full budget T,
``late`` = 10-20%), the default is the study's adopted score for that bin; a budget fraction below
sqrt(0.05 * 0.1) ~ 7.07% uses ``early``, any other ``late``; with T unknown, ``late`` is used and the
output says so. ``tests/test_recommended.py`` checks these constants against the committed study
(``benchmarks/results/bench-v2-study/``).

A score is a :class:`ScoreSpec`: a per-run score (:mod:`ncap.predict.scores`) or a rank average of
several (``ravg/...``), each component oriented by its sign (the dynamics' orientation was fixed on
the study's selection half).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ncap.exceptions import ConfigError
from ncap.predict.shipped import recommended_settings, shipped_fits

__all__ = [
    "EARLY_LATE_BOUNDARY",
    "PAPER",
    "RECOMMENDED",
    "RECALIBRATION",
    "SIGMA",
    "ScoreSpec",
    "predicted_interval",
    "recalibration_factor",
    "resolve_score",
]

PAPER = "nc/interval/signed/linear/b0/identity"  # the paper's reading: --score paper
EARLY_LATE_BOUNDARY = math.sqrt(0.05 * 0.1)

_SHIPPED = recommended_settings()  # ncap/predict/data/recommended.json (ncap.predict.shipped)

# The orientation of the beta_eff dynamics features, frozen on bench-v2's selection half
# (benchmarks/results/bench-v2-study/selection.json, "sigma"); +1: higher is better.
SIGMA: dict[str, float] = dict(_SHIPPED["sigma"])

# The adopted default per bin (benchmarks/results/bench-v2-study/report.json, "defaults").
RECOMMENDED: dict[str, str] = dict(_SHIPPED["recommended"])

# Split-conformal factors k of the predicted accuracy's interval (m ± k z sd in link space), per
# predictor and budget fraction, fixed on the selection half
# (benchmarks/results/bench-v2-study/selection.json, "recalibration").
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
}


@dataclass(frozen=True)
class ScoreSpec:
    """A ranking score: one per-run score (``kind`` "run"), a rank average of several ("ravg"),
    or a shipped model fitted across the benchmark's targets ("fit"; ``components`` are then its
    features, :mod:`ncap.predict.shipped`)."""

    name: str
    components: tuple[str, ...]
    signs: tuple[float, ...]
    kind: str = "run"

    @property
    def is_rank_average(self) -> bool:
        return self.kind == "ravg"

    @property
    def is_fitted(self) -> bool:
        return self.kind == "fit"


def _component(name: str) -> str:
    if name in _RAVG:
        return _RAVG[name]
    if name.startswith("dyn/"):
        return name + "/slope" if name.count("/") == 2 else name
    if name.startswith("nc/") and name.count("/") == 1:  # ravg/lo+nc/{m}: the current default
        return f"{name}/abs-mean/quadratic/b0/logit"
    return name


def parse_score(name: str) -> ScoreSpec:
    """A score by name: a per-run score, ``paper``, or ``ravg/a+b[+c]`` (e.g.
    ``ravg/lo+params+dyn/interval/abs-mean``)."""
    from ncap.predict.scores import BASELINE_SCORES

    if name == "paper":
        name = PAPER
    if name.startswith("ravg/"):
        parts = name[len("ravg/") :].split("+")
        comps = tuple(_component(p) for p in parts)
        for c in comps:
            _check_run_score(c, BASELINE_SCORES)
        return ScoreSpec(name, comps, tuple(SIGMA.get(c, 1.0) for c in comps), "ravg")
    if name.startswith("fit/"):
        if name not in shipped_fits():
            raise ConfigError(
                f"{name!r} is a model fitted across the benchmark's targets that ncap does not "
                f"ship (it was not adopted); the shipped one(s): {', '.join(shipped_fits())}."
            )
        features = shipped_fits()[name]
        return ScoreSpec(name, features, (1.0,) * len(features), "fit")
    _check_run_score(name, BASELINE_SCORES)
    return ScoreSpec(name, (name,), (SIGMA.get(name, 1.0),))


def _check_run_score(name: str, baselines) -> None:
    from ncap.predict.scores import PROXY_SCORES, parse_nc

    if name.startswith("nc/"):
        parse_nc(name)
        return
    if name.startswith("dyn/") or name in baselines or name in PROXY_SCORES:
        return
    raise ConfigError(
        f"unknown score {name!r}; choose 'recommended', 'paper', one of {', '.join(baselines)}, "
        f"a zero-cost proxy ({', '.join(PROXY_SCORES)}), "
        "nc/{measurement}/{variant}/{features}/b{burn_in}/{link}, "
        "dyn/{measurement}/{variant}/{feature} or ravg/a+b (docs/benchmark.md lists them)."
    )


def resolve_score(name: str | None, budget_fraction: float | None) -> tuple[ScoreSpec, str | None]:
    """The score to rank by and a note for the output (or None).

    ``name`` None or "recommended" gives the study's default for the budget's bin.
    """
    if name not in (None, "recommended"):
        return parse_score(name), None
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
    from scipy.special import expit

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
