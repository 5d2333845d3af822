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

Each name is parsed once, at the door, by :func:`parse_score` into a small frozen object
(:class:`Extrapolation`, :class:`DynamicsFeature`, :class:`Baseline`) that knows what it reads
(``reads``: the beta_eff measurement and variant, or None) and scores a run itself (``score``).
``nc_name``/``dynamics_name`` spell a name from its parts; there is one spelling per score.

``context`` keys: ``steps_per_epoch`` and ``target_epoch`` (the full budget in epochs) for the
baselines, ``curve_starts`` (optional), and the training-free values ``parameters``,
``source_accuracy``, ``logme``, ``proxies``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from ncap.capacitance.variants import VARIANTS
from ncap.exceptions import ConfigError
from ncap.predict.dynamics import DYNAMICS, beta_series, dynamics_feature
from ncap.predict.settings import FEATURE_MAPS, LINKS, MEASUREMENT_CHOICES, PredictorSettings

__all__ = [
    "BASELINE_SCORES",
    "PREDICTS_ACCURACY",
    "Baseline",
    "DynamicsFeature",
    "Extrapolation",
    "PROXY_SCORES",
    "Proxy",
    "RunScore",
    "RunScoreSpec",
    "parse_score",
    "try_parse_score",
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
_TRAINING_FREE = {
    "logme": ("logme",),
    "param-count": ("parameters",),
    "source-accuracy": ("source_accuracy",),
}
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
    """The name of the extrapolation with these settings (:attr:`Extrapolation.name`)."""
    return Extrapolation(settings).name


def dynamics_name(measurement: str, variant: str, feature: str) -> str:
    """The name of a beta_eff dynamics feature (:attr:`DynamicsFeature.name`)."""
    return DynamicsFeature(measurement, variant, feature).name


def _untracked(
    reads: tuple[str, str] | None, points: Sequence[Mapping[str, Any]], max_step: int, *, nc: bool
) -> RunScore | None:
    """A failed :class:`RunScore` when the run did not record the beta_eff a score reads."""
    if reads is None or not any(p["step"] <= max_step for p in points):
        return None
    if _recorded(points, max_step, *reads, nc=nc):
        return None
    return RunScore(None, untracked_reason(*reads))


@dataclass(frozen=True)
class Extrapolation:
    """``nc/{measurement}/{variant}/{features}/b{burn_in}/{link}``: the final accuracy extrapolated
    to beta_eff = 0 by :class:`~ncap.predict.capacitance.CapacitancePredictor` with ``settings``.

    >>> s = parse_score("nc/interval/abs-mean/quadratic/b0/logit")
    >>> s.reads, s.link, s.legacy_name
    (('interval', 'abs-mean'), 'logit', 'nc/abs-mean/quadratic/b0/logit')
    """

    settings: PredictorSettings
    kind: ClassVar[str] = "run"
    predicts_accuracy: ClassVar[bool] = True
    sign: ClassVar[float] = 1.0
    training_free: ClassVar[tuple[str, ...]] = ()  # the training-free values it reads

    @property
    def name(self) -> str:
        s = self.settings
        return f"nc/{s.measurement}/{s.variant}/{s.features}/b{s.burn_in}/{s.link}"

    @property
    def components(self) -> tuple[str, ...]:
        """What a ranking by this score lists as its components: itself."""
        return (self.name,)

    @property
    def legacy_name(self) -> str:
        """bench-v1's spelling (no measurement: interval), kept in its legacy reports."""
        s = self.settings
        return f"nc/{s.variant}/{s.features}/b{s.burn_in}/{s.link}"

    @property
    def reads(self) -> tuple[str, str]:
        """The beta_eff (measurement, variant) the score reads."""
        return self.settings.measurement, self.settings.variant

    @property
    def link(self) -> str:
        return self.settings.link

    def score(
        self,
        points: Sequence[Mapping[str, Any]],
        max_step: int,
        context: Mapping[str, Any],
        *,
        sign: float = 1.0,
    ) -> RunScore:
        """The run's extrapolation from its points within ``max_step`` (never raises)."""
        failed = _untracked(self.reads, points, max_step, nc=True)
        if failed is not None:
            return failed
        from ncap.predict.capacitance import predict_from_points  # lazy: scikit-learn

        try:
            out = predict_from_points(points, self.settings, max_step)
        except ValueError as err:  # ConfigError is a ValueError: too few points, all-zero beta
            return RunScore(None, str(err).split(";")[0])
        pred = out["predicted_accuracy"]
        if not math.isfinite(pred):
            return RunScore(None, f"the extrapolation is not finite ({pred})")
        return RunScore(
            pred,
            predicted=pred,
            sd=out["predicted_std"],
            link=self.link,
            link_mean=out["fit"]["link_mean"],
            link_sd=out["fit"]["link_std"],
        )


@dataclass(frozen=True)
class DynamicsFeature:
    """``dyn/{measurement}/{variant}/{feature}``: a raw feature of beta_eff's decay
    (:mod:`ncap.predict.dynamics`), times ``sign`` (its orientation; +1: higher is better).

    >>> parse_score("dyn/fixed/mean-abs/slope").reads
    ('fixed', 'mean-abs')
    """

    measurement: str
    variant: str
    feature: str
    sign: float = 1.0
    kind: ClassVar[str] = "run"
    predicts_accuracy: ClassVar[bool] = False
    link: ClassVar[None] = None
    training_free: ClassVar[tuple[str, ...]] = ()  # the training-free values it reads

    def __post_init__(self) -> None:
        if (
            self.measurement not in MEASUREMENT_CHOICES
            or self.variant not in DYNAMICS_VARIANTS
            or self.feature not in DYNAMICS
        ):
            raise ConfigError(
                f"malformed dynamics score {self.name!r}; the form is dyn/{{measurement}}/"
                f"{{variant}}/{{feature}} with measurement in {MEASUREMENT_CHOICES}, variant in "
                f"{DYNAMICS_VARIANTS} and feature in {DYNAMICS}."
            )

    @property
    def name(self) -> str:
        return f"dyn/{self.measurement}/{self.variant}/{self.feature}"

    @property
    def components(self) -> tuple[str, ...]:
        """What a ranking by this score lists as its components: itself."""
        return (self.name,)

    @property
    def reads(self) -> tuple[str, str]:
        return self.measurement, self.variant

    def score(
        self,
        points: Sequence[Mapping[str, Any]],
        max_step: int,
        context: Mapping[str, Any],
        *,
        sign: float = 1.0,
    ) -> RunScore:
        """The feature of the run's beta_eff series within ``max_step``, oriented by
        ``self.sign * sign`` (``context["steps_per_epoch"]`` converts steps to epochs)."""
        failed = _untracked(self.reads, points, max_step, nc=False)
        if failed is not None:
            return failed

        epochs, betas = beta_series(
            points, max_step, measurement=self.measurement, variant=self.variant
        )
        budget_epoch = max_step / float(context["steps_per_epoch"])
        try:
            value = dynamics_feature(self.feature, epochs, betas, budget_epoch=budget_epoch)
        except ValueError as err:
            return RunScore(None, str(err))
        return RunScore(self.sign * sign * value)


@dataclass(frozen=True)
class Baseline:
    """A score without beta_eff (:data:`BASELINE_SCORES`: :mod:`ncap.predict.baselines`; ``logme``
    is read from the context's training-free values).

    >>> parse_score("last-observed").predicts_accuracy, parse_score("logme").reads
    (True, None)
    """

    name: str
    kind: ClassVar[str] = "run"
    reads: ClassVar[None] = None
    link: ClassVar[None] = None
    sign: ClassVar[float] = 1.0

    def __post_init__(self) -> None:
        if self.name not in BASELINE_SCORES:
            raise ConfigError(
                f"unknown score {self.name!r}; choose one of {', '.join(BASELINE_SCORES)}, "
                f"a zero-cost proxy ({', '.join(PROXY_SCORES)}), "
                "nc/{measurement}/{variant}/{features}/b{burn_in}/{link} or "
                "dyn/{measurement}/{variant}/{feature}."
            )

    @property
    def components(self) -> tuple[str, ...]:
        """What a ranking by this score lists as its components: itself."""
        return (self.name,)

    @property
    def predicts_accuracy(self) -> bool:
        return self.name in PREDICTS_ACCURACY

    @property
    def training_free(self) -> tuple[str, ...]:
        """The training-free values (context keys) it reads: ``logme`` is computed only for a
        score that reads it."""
        return _TRAINING_FREE.get(self.name, ())

    def score(
        self,
        points: Sequence[Mapping[str, Any]],
        max_step: int,
        context: Mapping[str, Any],
        *,
        sign: float = 1.0,
    ) -> RunScore:
        """The baseline of the run (``sign`` is accepted for a uniform call and ignored)."""
        if self.name == "logme":
            value = context.get("logme")
            if value is None or not math.isfinite(float(value)):
                return RunScore(None, "LogME is unknown for this run")
            return RunScore(float(value))
        from ncap.predict.baselines import BASELINES  # lazy: scipy's curve fits

        try:
            value, info = BASELINES[self.name](points, max_step, context)
        except ValueError as err:
            return RunScore(None, str(err))
        if value is None:
            return RunScore(None, str(info.get("reason") or info.get("failures")))
        value = float(value)
        return RunScore(value, predicted=value if self.predicts_accuracy else None)


@dataclass(frozen=True)
class Proxy:
    """A zero-cost proxy of the untrained network (:data:`PROXY_SCORES`), read from the context's
    ``proxies``.

    >>> parse_score("fisher").training_free
    ('proxies',)
    """

    name: str
    kind: ClassVar[str] = "run"
    reads: ClassVar[None] = None
    link: ClassVar[None] = None
    sign: ClassVar[float] = 1.0
    predicts_accuracy: ClassVar[bool] = False
    training_free: ClassVar[tuple[str, ...]] = ("proxies",)

    @property
    def components(self) -> tuple[str, ...]:
        """What a ranking by this score lists as its components: itself."""
        return (self.name,)

    def score(
        self,
        points: Sequence[Mapping[str, Any]],
        max_step: int,
        context: Mapping[str, Any],
        *,
        sign: float = 1.0,
    ) -> RunScore:
        """The proxy's recorded value (``sign`` is accepted for a uniform call and ignored)."""
        value = (context.get("proxies") or {}).get(self.name)
        if value is None or not math.isfinite(float(value)):
            return RunScore(None, f"the zero-cost proxy {self.name} is unknown for this run")
        return RunScore(float(value))


RunScoreSpec = Extrapolation | DynamicsFeature | Baseline | Proxy


def try_parse_score(name: str, *, legacy: bool = False) -> RunScoreSpec | None:
    """:func:`parse_score`, or None when ``name`` is no per-run score (e.g. a fitted model's
    feature such as ``lo``, or ``nc-gain/interval``)."""
    try:
        return parse_score(name, legacy=legacy)
    except ConfigError:
        return None


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


@lru_cache(maxsize=4096)
def parse_score(name: str, *, legacy: bool = False) -> RunScoreSpec:
    """The per-run score ``name`` stands for, parsed once (``ConfigError`` naming the forms when
    it is none). ``legacy``: also read bench-v1's ``nc/{variant}/{features}/b{burn_in}/{link}``
    (interval measurement), the spelling of its legacy reports.

    Rank averages, ``paper`` and fitted scores: :func:`ncap.predict.recommended.parse_score`.
    """
    if name.startswith("nc/"):
        if legacy and name.count("/") == 4:
            name = "nc/interval/" + name[len("nc/") :]
        return Extrapolation(parse_nc(name))
    if name.startswith("dyn/"):
        parts = name.split("/")
        if len(parts) != 4:
            raise ConfigError(
                f"malformed dynamics score {name!r}; the form is dyn/{{measurement}}/"
                f"{{variant}}/{{feature}} with measurement in {MEASUREMENT_CHOICES}, variant in "
                f"{DYNAMICS_VARIANTS} and feature in {DYNAMICS}."
            )
        return DynamicsFeature(*parts[1:])
    if name in PROXY_SCORES:
        return Proxy(name)
    return Baseline(name)


def score_names(measurements: Sequence[str] = MEASUREMENT_CHOICES) -> list[str]:
    """The per-run candidate scores (families A, B, C) for the given beta_eff measurements."""
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
    """``(measurement, variant)`` of beta_eff the score ``name`` reads (None for the others)."""
    return parse_score(name).reads


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
    """Score one run by ``name`` (module docstring); never raises for a run it cannot score (a
    malformed name raises ``ConfigError``). The same as ``parse_score(name).score(...)``."""
    return parse_score(name).score(points, max_step, context, sign=sign)
