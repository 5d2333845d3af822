"""What a candidate run receives besides its name, built once by a strategy and handed by an
executor to every candidate (:func:`ncap.ranking.candidate.run_candidate`): :class:`CandidateJob`,
and for a successive-halving rung :class:`RungJob` (:func:`ncap.ranking.segment.run_segment`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ncap.data.dataset import ImageDataset
from ncap.predict.capacitance import PredictorSettings
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime

__all__ = ["CandidateJob", "RungJob"]


@dataclass(frozen=True)
class RungJob:
    """Where a rung stops: train to ``stop_at``; evaluate at every rung's step (``eval_steps``);
    checkpoints in ``checkpoint_dir`` (a folder every worker can read and write)."""

    rung: int
    stop_at: int
    eval_steps: tuple[int, ...]
    checkpoint_dir: str


@dataclass(frozen=True)
class CandidateJob:
    """Everything a candidate run needs besides its name (what an executor hands every
    candidate of a ranking)."""

    dataset: ImageDataset
    config: FinetuneConfig
    predictor: PredictorSettings
    full_epochs: float | None
    runtime: Runtime
    model_options: dict[str, Any] = field(default_factory=dict)  # of every create_backbone call
    rung: RungJob | None = None  # successive halving: train only to this rung, via checkpoints
    logme: bool = False  # compute LogME of the pretrained backbone first (the score reads it)
    proxies: tuple[str, ...] = ()  # zero-cost proxies of the untrained network (the score reads)
