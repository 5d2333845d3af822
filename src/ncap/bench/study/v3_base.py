"""What both stages of the bench-v3 study share (docs/benchmark-v3-protocol.md): the data with its
dataset and model families, the candidates, the two-way bootstrap draws (models from
``default_rng(26)``, targets from ``default_rng(27)``), the cross-fittings, and Kendall summaries
with their two-way intervals and p-values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ncap.bench.stats import bootstrap_p_value, percentile_interval
from ncap.bench.study.bootstrap import draw_counts
from ncap.bench.study.candidates import candidates_v3
from ncap.bench.study.combine import CrossFit
from ncap.bench.study.halves import HalfEval, evaluate_half, keep_masks
from ncap.bench.study.table import ScoreTable, build_table, measurements_of
from ncap.exceptions import ConfigError

__all__ = [
    "BUDGETS",
    "FORMAT_V3",
    "LO",
    "PROTOCOL_V3",
    "Q1_BUDGETS",
    "StudyV3",
    "budget_key",
    "is_v3",
    "kendall_summary",
    "summary",
]

PROTOCOL_V3 = "docs/benchmark-v3-protocol.md"
FORMAT_V3 = "ncap-study-v3/1"
BUDGETS = (0.025, 0.05, 0.1, 0.2)
Q1_BUDGETS = (0.025, 0.05, 0.1)
REPLICATES = 2000
MODEL_SEED, TARGET_SEED = 26, 27  # section 4
# the family-cluster bootstrap's draws (section 4 leaves them open; Deviations, item 3)
ARCH_FAMILY_SEED, DATA_FAMILY_SEED = 30, 31
LO = "last-observed"


def is_v3(results: Mapping[str, Any]) -> bool:
    """Whether a results file is a bench-v3 build (every target names its dataset family)."""
    targets = results["plan"]["targets"]
    return bool(targets) and all(t.get("family") for t in targets) and "zoo" in results


def budget_key(f: float) -> str:
    return str(f)


class StudyV3:
    """What both stages share: the data, its families, the candidates, the draws, the fits."""

    def __init__(self, results: dict[str, Any], *, replicates: int = REPLICATES) -> None:
        plan = results["plan"]
        self.results = results
        self.seeds = list(plan["seeds"])
        if len(self.seeds) != 2:
            raise ConfigError(
                f"the study needs exactly 2 seeds per (target, model) (got {self.seeds}); "
                "build the benchmark with seeds 0 and 1."
            )
        if not is_v3(results):
            raise ConfigError(
                "the bench-v3 study needs every target's dataset family (plan.targets[].family) "
                "and the zoo's model families; build the benchmark with `--plan v3`."
            )
        self.models = list(plan["models"])
        self.targets = [t["key"] for t in plan["targets"]]
        self.target_family = {t["key"]: t["family"] for t in plan["targets"]}
        zoo = results["zoo"]
        missing = [m for m in self.models if not zoo.get(m, {}).get("family")]
        if missing:
            raise ConfigError(f"the zoo of the results file names no family for {missing}.")
        self.model_family = [zoo[m]["family"] for m in self.models]
        self.source_task = [zoo[m].get("source_task") or "unknown" for m in self.models]
        self.measurements = measurements_of(results)
        self.cands = candidates_v3(self.measurements)
        self.by_name = {c.name: c for c in self.cands}
        self.replicates = replicates
        self.model_counts = draw_counts(len(self.models), replicates, MODEL_SEED)
        self.target_counts = draw_counts(len(self.targets), replicates, TARGET_SEED)
        self.crossfit = CrossFit(self.target_family, tuple((g,) for g in self.model_family))
        self.strictest = CrossFit(
            self.target_family,
            tuple(zip(self.model_family, self.source_task)),
            name="strictest",
        )

    def table(self, seed: int, workers: int | None, progress) -> ScoreTable:
        table = build_table(
            self.results, seeds=[seed], budgets=BUDGETS, workers=workers, progress=progress
        )
        if table.targets != self.targets or table.models != self.models:
            raise ConfigError("the score table's targets or models differ from the plan's.")
        return table

    def keep(self, table: ScoreTable) -> dict[str, np.ndarray]:
        return keep_masks(table, self.seeds)

    def half(self, table, seed, sigma, keep, cands=None, *, crossfit="primary", boot_all=()):
        fit = {"primary": self.crossfit, "strictest": self.strictest, "loto": None}[crossfit]
        return evaluate_half(
            table, cands if cands is not None else self.cands, seed=seed,
            truth_seed=[s for s in self.seeds if s != seed][0], sigma=sigma, keep=keep,
            counts=self.model_counts, boot_all=boot_all, crossfit=fit,
        )  # fmt: skip

    # -- the two-way bootstrap (section 4) -------------------------------------------------------

    def two_way(self, per_target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Replicates of the mean over drawn targets of a ``(targets, B)`` array of per-target
        replicates (each computed on the drawn models); ``weights`` masks targets out."""
        tc = self.target_counts * (1.0 if weights is None else weights[None, :])
        with np.errstate(invalid="ignore", divide="ignore"):
            return (tc * per_target.T).sum(axis=1) / tc.sum(axis=1)


def _kendall_of(half: HalfEval, name: str, fs: Sequence[float]) -> np.ndarray:
    """Per-target point Kendall averaged over ``fs``."""
    return np.mean([half.kendall(name, f) for f in fs], axis=0)


def _kboot_of(half: HalfEval, name: str, fs: Sequence[float]) -> np.ndarray:
    return np.mean([half.kendall_boot[name][f] for f in fs], axis=0)


def summary(point: float | None, boot: np.ndarray) -> dict[str, Any]:
    return {"value": point, "ci95": percentile_interval(boot)}


def kendall_summary(
    study: StudyV3, half: HalfEval, name: str, fs: Sequence[float], minus: str | None = None,
    targets: np.ndarray | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Mean Kendall over the targets (``targets``: a 0/1 mask) and ``fs`` of ``name`` (minus
    ``minus``'s), with its two-way interval, the models-only interval and the two-way p-value."""
    per = _kendall_of(half, name, fs)
    boot = _kboot_of(half, name, fs)
    if minus is not None:
        per = per - _kendall_of(half, minus, fs)
        boot = boot - _kboot_of(half, minus, fs)
    w = np.ones(len(half.targets)) if targets is None else targets.astype(float)
    point = float((per * w).sum() / w.sum())
    two = study.two_way(boot, w)
    models_only = (boot * w[:, None]).sum(axis=0) / w.sum()
    return {
        "value": point,
        "ci95": percentile_interval(two),
        "p": bootstrap_p_value(two),
        "models_only_ci95": percentile_interval(models_only),
    }
