"""The pre-registered list of candidate scores (docs/benchmark-v2-protocol.md, section 1).

Each :class:`Candidate` says how it is computed (``kind``), whether it reads beta_eff (``nc``), its
simplicity ``level`` (the selection rule prefers lower levels within a margin), its ``control``
(the same score without beta_eff) and, for the cell-level scores, its components or features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from ncap.capacitance.variants import VARIANTS
from ncap.predict.dynamics import DYNAMICS
from ncap.predict.features import BASE_FEATURES
from ncap.predict.scores import (
    BURN_INS,
    DYNAMICS_VARIANTS,
    DynamicsFeature,
    Extrapolation,
    dynamics_name,
    nc_name,
    parse_score,
)
from ncap.predict.settings import FEATURE_MAPS, LINKS, PredictorSettings

__all__ = [
    "BASE_FEATURES",
    "Candidate",
    "D2_DYNAMICS",
    "LEVEL0_BASELINES",
    "PORTABLE_FEATURES",
    "candidates",
    "candidates_v3",
    "current_default",
    "paper_form",
]

LEVEL0_BASELINES = ("last-observed", "logme", "param-count", "source-accuracy")
LEVEL1_BASELINES = ("tse", "tse-e1", "learning-curve")
D2_DYNAMICS = ("slope", "curv", "drop-peak", "level")
# what any user's candidate has (docs/benchmark-v3-protocol.md, section 2, D2)
PORTABLE_FEATURES = ("lo", "lo_slope", "tse_e1", "logme")
SIZE_FEATURES = ("log10_parameters", "log2_features")


def paper_form(measurement: str = "interval") -> str:
    """The paper's reading: signed beta_eff, accuracy linear in it, no burn-in, no link."""
    return nc_name(PredictorSettings("signed", "linear", 0, "identity", measurement=measurement))


def current_default(measurement: str = "interval") -> str:
    """ncap's default before the study (selected on bench-v1's selection half)."""
    return nc_name(PredictorSettings("abs-mean", "quadratic", 0, "logit", measurement=measurement))


@dataclass(frozen=True)
class Candidate:
    """One candidate score of the study.

    ``kind``: "run" (scored run by run: families A, B, C), "ravg" (rank average of
    ``components``, D1) or "fit" (cross-target Bayesian ridge on ``features``, D2).
    ``components`` of a rank average are run-score names; a ``dyn/`` component is used with the
    orientation frozen on the selection half. ``features`` of a fitted model are names of
    :data:`BASE_FEATURES` or ``dyn/...`` (raw) or ``nc-gain/{measurement}``.
    """

    name: str
    family: str
    level: int
    nc: bool
    control: str | None = None
    kind: str = "run"
    components: tuple[str, ...] = field(default=())
    features: tuple[str, ...] = field(default=())

    @property
    def run_score(self):
        """The per-run score (:func:`ncap.predict.scores.parse_score`) of a "run" candidate."""
        return parse_score(self.name) if self.kind == "run" else None

    @property
    def predicts_accuracy(self) -> bool:
        return self.kind == "fit" or (self.kind == "run" and self.run_score.predicts_accuracy)

    @property
    def has_sd(self) -> bool:
        """Whether it predicts an accuracy with a standard deviation (extrapolations, fits)."""
        return self.kind == "fit" or isinstance(self.run_score, Extrapolation)

    @property
    def oriented(self) -> bool:
        """Whether its sign is chosen on the selection half (the raw dynamics features)."""
        return isinstance(self.run_score, DynamicsFeature)


def candidates(measurements: Sequence[str] = ("interval", "fixed")) -> list[Candidate]:
    """The finite candidate list: 122 with both measurements (bench-v2), 66 with one (bench-v1)."""
    out: list[Candidate] = []
    for m in measurements:  # A: extrapolations
        for v in VARIANTS:
            for f in FEATURE_MAPS:
                for b in BURN_INS:
                    for lk in LINKS:
                        s = PredictorSettings(v, f, b, lk, measurement=m)
                        out.append(Candidate(nc_name(s), f"A-{m}", 1, True, "last-observed"))
    for name in LEVEL0_BASELINES + LEVEL1_BASELINES:  # B
        out.append(Candidate(name, "B", 0 if name in LEVEL0_BASELINES else 1, False))
    for m in measurements:  # C: dynamics
        for v in DYNAMICS_VARIANTS:
            for f in DYNAMICS:
                out.append(Candidate(dynamics_name(m, v, f), f"C-{m}", 1, True, "last-observed"))
    # D1: rank averages
    lo, params = "last-observed", "param-count"
    out.append(Candidate("ravg/lo+params", "D1", 2, False, kind="ravg", components=(lo, params)))
    out.append(Candidate("ravg/lo+tse-e1", "D1", 2, False, kind="ravg", components=(lo, "tse-e1")))
    for m in measurements:
        for v in DYNAMICS_VARIANTS:
            slope = dynamics_name(m, v, "slope")
            out.append(
                Candidate(f"ravg/lo+dyn/{m}/{v}", "D1", 2, True, "ravg/lo+params", "ravg",
                          (lo, slope))
            )  # fmt: skip
            out.append(
                Candidate(f"ravg/lo+params+dyn/{m}/{v}", "D1", 3, True, "ravg/lo+params",
                          "ravg", (lo, params, slope))
            )  # fmt: skip
    for m in measurements:
        out.append(
            Candidate(f"ravg/lo+nc/{m}", "D1", 2, True, "ravg/lo+params", "ravg",
                      (lo, current_default(m)))
        )  # fmt: skip
    # D2: fitted across candidates, leave one target out
    out.append(Candidate("fit/base", "D2", 4, False, kind="fit", features=BASE_FEATURES))
    for m in measurements:
        for v in DYNAMICS_VARIANTS:
            dyn = tuple(dynamics_name(m, v, f) for f in D2_DYNAMICS)
            out.append(
                Candidate(f"fit/dyn/{m}/{v}", "D2", 4, True, "fit/base", "fit",
                          features=BASE_FEATURES + dyn)
            )  # fmt: skip
    for m in measurements:
        out.append(
            Candidate(f"fit/nc/{m}", "D2", 4, True, "fit/base", "fit",
                      features=BASE_FEATURES + (f"nc-gain/{m}",))
        )  # fmt: skip
    return out


def candidates_v3(measurements: Sequence[str] = ("interval", "fixed")) -> list[Candidate]:
    """bench-v3's list (docs/benchmark-v3-protocol.md, section 2): bench-v2's candidates plus the
    portable rank averages and fitted models, each beta_eff-using one with its no-beta control."""
    # section 6's families of scores: D2 splits into the portable fits and those with source or size
    out = [
        dataclasses.replace(c, family="D2-source-or-size") if c.family == "D2" else c
        for c in candidates(measurements)
    ]
    lo, logme, tse_e1 = "last-observed", "logme", "tse-e1"
    out.append(Candidate("ravg/lo+logme", "D1", 2, False, kind="ravg", components=(lo, logme)))
    out.append(
        Candidate("ravg/lo+tse-e1+logme", "D1", 3, False, kind="ravg",
                  components=(lo, tse_e1, logme))
    )  # fmt: skip
    for m in measurements:
        for v in DYNAMICS_VARIANTS:
            slope = dynamics_name(m, v, "slope")
            out.append(
                Candidate(f"ravg/lo+logme+dyn/{m}/{v}", "D1", 3, True, "ravg/lo+logme", "ravg",
                          (lo, logme, slope))
            )  # fmt: skip
    portable, size = PORTABLE_FEATURES, PORTABLE_FEATURES + SIZE_FEATURES
    out.append(Candidate("fit/portable", "D2-portable", 4, False, kind="fit", features=portable))
    out.append(
        Candidate("fit/portable+size", "D2-source-or-size", 4, False, kind="fit", features=size)
    )
    out.append(
        Candidate("fit/portable+source", "D2-source-or-size", 4, False, kind="fit",
                  features=portable + ("logit_source",))
    )  # fmt: skip
    for base, control in ((portable, "fit/portable"), (size, "fit/portable+size")):
        for m in measurements:
            for v in DYNAMICS_VARIANTS:
                dyn = tuple(dynamics_name(m, v, f) for f in D2_DYNAMICS)
                family = "D2-portable" if base == portable else "D2-source-or-size"
                out.append(
                    Candidate(f"{control}+dyn/{m}/{v}", family, 4, True, control, "fit",
                              features=base + dyn)
                )  # fmt: skip
    return out
