"""Every per-run score by name: one interface for the extrapolations, the baselines and beta_eff's
dynamics (the candidate scores of docs/benchmark-v2-protocol.md, families A, B and C).

A score reads one run's early trajectory (the points with ``step <= max_step``) and a context of
per-run values, and returns a :class:`RunScore`: "higher is better", ``None`` with a reason when it
cannot score the run. Names:

- ``nc/{measurement}/{variant}/{features}/b{burn_in}/{link}``: the final accuracy extrapolated to
  beta_eff = 0 (:class:`~ncap.predict.capacitance.CapacitancePredictor`); also predicts an accuracy
  with a standard deviation, in accuracy and in link space;
- ``last-observed``, ``learning-curve`` (both predict an accuracy), ``tse``, ``tse-e1``,
  ``param-count``, ``source-accuracy``, ``logme`` (:mod:`ncap.predict.baselines`; ``logme`` is read
  from the context);
- a zero-cost proxy of the untrained network (:data:`PROXY_SCORES`, e.g. ``fisher``; read from
  the context's ``proxies``);
- ``dyn/{measurement}/{variant}/{feature}``: a raw feature of beta_eff's decay
  (:mod:`ncap.predict.dynamics`), oriented by ``sign`` (the caller's choice, +1 by default).

``context`` keys: ``steps_per_epoch`` and ``target_epoch`` (the full budget in epochs) for the
baselines, ``curve_starts`` (optional), and the training-free values ``parameters``,
``source_accuracy``, ``logme``, ``proxies``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ncap.capacitance.variants import VARIANTS
from ncap.exceptions import ConfigError
from ncap.predict.settings import FEATURE_MAPS, LINKS, MEASUREMENT_CHOICES, PredictorSettings

__all__ = [
    "BASELINE_SCORES",
    "PREDICTS_ACCURACY",
    "PROXY_SCORES",
    "RunScore",
    "dynamics_name",
    "nc_name",
    "parse_nc",
    "run_score",
    "score_names",
    "score_variant",
    "untracked_reason",
]

BASELINE_SCORES = (
    "last-observed",
    "learning-curve",
    "tse",
    "tse-e1",
    "logme",
    "param-count",
    "source-accuracy",
)
# the zero-cost proxies of an untrained network (ncap.predict.proxies, plus flops), read from the
# context's "proxies"; a test checks the names against ncap.predict.proxies.PROXIES
PROXY_SCORES = (
    "grad_norm",
    "snip",
    "grasp",
    "fisher",
    "fisher_channel",
    "synflow",
    "jacob_cov",
    "naswot",
    "flops",
)
PREDICTS_ACCURACY = frozenset({"last-observed", "learning-curve"})  # and every nc/ score
BURN_INS = (0, 1, 2)
DYNAMICS_VARIANTS = ("abs-mean", "mean-abs")  # signed changes sign: its log is undefined


@dataclass(frozen=True)
class RunScore:
    """One score of one run. ``value`` is "higher is better" (``None``: failed, see ``reason``).

    Scores that predict the final accuracy also fill ``predicted`` (= ``value``), and the
    extrapolations its posterior ``sd`` and the link-space mean and sd (``link``: "logit" or
    "identity") from which a calibrated interval is built.
    """

    value: float | None
    reason: str | None = None
    predicted: float | None = None
    sd: float | None = None
    link: str | None = None
    link_mean: float | None = None
    link_sd: float | None = None


def nc_name(settings: PredictorSettings) -> str:
    s = settings
    return f"nc/{s.measurement}/{s.variant}/{s.features}/b{s.burn_in}/{s.link}"


def dynamics_name(measurement: str, variant: str, feature: str) -> str:
    return f"dyn/{measurement}/{variant}/{feature}"


def parse_nc(name: str) -> PredictorSettings:
    """The predictor settings an ``nc/...`` name stands for (``ConfigError`` if malformed)."""
    parts = name.split("/")
    if len(parts) != 6 or parts[0] != "nc" or not parts[4].startswith("b"):
        raise ConfigError(
            f"malformed extrapolation score {name!r}; the form is "
            "nc/{measurement}/{variant}/{features}/b{burn_in}/{link}, e.g. "
            "nc/interval/abs-mean/quadratic/b0/logit."
        )
    _, measurement, variant, features, burn, link = parts
    try:
        burn_in = int(burn[1:])
    except ValueError:
        raise ConfigError(f"burn-in {burn!r} in {name!r} is not b<integer>.") from None
    return PredictorSettings(
        variant=variant, features=features, burn_in=burn_in, link=link, measurement=measurement
    )


def score_names(measurements: Sequence[str] = MEASUREMENT_CHOICES) -> list[str]:
    """The per-run candidate scores (families A, B, C) for the given beta_eff measurements."""
    from ncap.predict.dynamics import DYNAMICS

    nc = [
        nc_name(PredictorSettings(variant=v, features=f, burn_in=b, link=lk, measurement=m))
        for m in measurements
        for v in VARIANTS
        for f in FEATURE_MAPS
        for b in BURN_INS
        for lk in LINKS
    ]
    dyn = [
        dynamics_name(m, v, f) for m in measurements for v in DYNAMICS_VARIANTS for f in DYNAMICS
    ]
    return nc + list(BASELINE_SCORES) + dyn


def score_variant(name: str) -> tuple[str, str] | None:
    """``(measurement, variant)`` of beta_eff an ``nc/`` or ``dyn/`` score reads (None for the
    others; the name is not validated here)."""
    parts = name.split("/")
    if parts[0] in ("nc", "dyn") and len(parts) >= 3:
        return parts[1], parts[2]
    return None


def untracked_reason(measurement: str, variant: str) -> str:
    """Why a score cannot read beta_eff ``variant``: the run did not record it, and how to."""
    if measurement == "fixed":
        how = (
            f"measure it on a fixed batch at evaluation points with --fixed-batch 256 (it measures "
            f"the variants not in --variants, so leave {variant} out of --variants)"
        )
    else:
        how = (
            f"track it per step with --variants (e.g. --variants signed,mean-abs,{variant}), or "
            "measure it on a fixed batch at evaluation points with --fixed-batch 256"
        )
    return f"beta_eff {variant!r} ({measurement} measurement) was not recorded in this run; {how}"


def _recorded(
    points: Sequence[Mapping[str, Any]], max_step: int, measurement: str, variant: str, *, nc: bool
) -> bool:
    """Whether any point within the budget holds ``variant`` (an nc fit also reads an interval
    variant from ``beta_eff_fixed`` when it was not tracked per step)."""
    fields = ["beta_eff_fixed"] if measurement == "fixed" else ["beta_eff"]
    if measurement != "fixed" and nc:
        fields.append("beta_eff_fixed")
    return any(
        variant in (p.get(field) or {}) for p in points if p["step"] <= max_step for field in fields
    )


def run_score(
    name: str,
    points: Sequence[Mapping[str, Any]],
    max_step: int,
    context: Mapping[str, Any],
    *,
    sign: float = 1.0,
) -> RunScore:
    """Score one run by ``name`` (module docstring); never raises for a run it cannot score."""
    source = score_variant(name)
    if source is not None and source[0] in MEASUREMENT_CHOICES:
        within = any(p["step"] <= max_step for p in points)
        if within and not _recorded(points, max_step, *source, nc=name.startswith("nc/")):
            return RunScore(None, untracked_reason(*source))
    if name.startswith("nc/"):
        return _extrapolation(parse_nc(name), points, max_step)
    if name.startswith("dyn/"):
        return _dynamics(name, points, max_step, context, sign)
    if name == "logme":
        value = context.get("logme")
        if value is None or not math.isfinite(float(value)):
            return RunScore(None, "LogME is unknown for this run")
        return RunScore(float(value))
    if name in PROXY_SCORES:
        value = (context.get("proxies") or {}).get(name)
        if value is None or not math.isfinite(float(value)):
            return RunScore(None, f"the zero-cost proxy {name} is unknown for this run")
        return RunScore(float(value))
    from ncap.predict.baselines import BASELINES

    if name not in BASELINES:
        raise ConfigError(
            f"unknown score {name!r}; choose one of {', '.join(BASELINE_SCORES)}, "
            "nc/{measurement}/{variant}/{features}/b{burn_in}/{link} or "
            "dyn/{measurement}/{variant}/{feature}."
        )
    try:
        value, info = BASELINES[name](points, max_step, context)
    except ValueError as err:
        return RunScore(None, str(err))
    if value is None:
        return RunScore(None, str(info.get("reason") or info.get("failures")))
    value = float(value)
    return RunScore(value, predicted=value if name in PREDICTS_ACCURACY else None)


def _extrapolation(
    settings: PredictorSettings, points: Sequence[Mapping[str, Any]], max_step: int
) -> RunScore:
    from ncap.predict.capacitance import predict_from_points

    try:
        out = predict_from_points(points, settings, max_step)
    except ValueError as err:  # ConfigError is a ValueError: too few points, all-zero beta
        return RunScore(None, str(err).split(";")[0])
    pred = out["predicted_accuracy"]
    if not math.isfinite(pred):
        return RunScore(None, f"the extrapolation is not finite ({pred})")
    return RunScore(
        pred,
        predicted=pred,
        sd=out["predicted_std"],
        link=settings.link,
        link_mean=out["fit"]["link_mean"],
        link_sd=out["fit"]["link_std"],
    )


def _dynamics(
    name: str,
    points: Sequence[Mapping[str, Any]],
    max_step: int,
    context: Mapping[str, Any],
    sign: float,
) -> RunScore:
    from ncap.predict.dynamics import DYNAMICS, beta_series, dynamics_feature

    parts = name.split("/")
    if (
        len(parts) != 4
        or parts[1] not in MEASUREMENT_CHOICES
        or parts[2] not in DYNAMICS_VARIANTS
        or parts[3] not in DYNAMICS
    ):
        raise ConfigError(
            f"malformed dynamics score {name!r}; the form is dyn/{{measurement}}/{{variant}}/"
            f"{{feature}} with measurement in {MEASUREMENT_CHOICES}, variant in "
            f"{DYNAMICS_VARIANTS} and feature in {DYNAMICS}."
        )
    _, measurement, variant, feature = parts
    epochs, betas = beta_series(points, max_step, measurement=measurement, variant=variant)
    budget_epoch = max_step / float(context["steps_per_epoch"])
    try:
        value = dynamics_feature(feature, epochs, betas, budget_epoch=budget_epoch)
    except ValueError as err:
        return RunScore(None, str(err))
    return RunScore(sign * value)
