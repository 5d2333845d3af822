"""One candidate's part of a successive-halving rung: continue from its checkpoint to the rung's
step, write the checkpoint there, and return its record so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncap.data.dataset import ImageDataset
from ncap.predict.capacitance import PredictorSettings
from ncap.ranking.runner import TrainingJob, candidate_record, train_candidate
from ncap.ranking.store import file_stem
from ncap.results import CandidateRecord
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime

__all__ = ["RungJob", "checkpoint_path", "run_segment"]


@dataclass(frozen=True)
class RungJob:
    """Where a rung stops: train to ``stop_at``; evaluate at every rung's step (``eval_steps``);
    checkpoints in ``checkpoint_dir`` (a folder every worker can read and write)."""

    rung: int
    stop_at: int
    eval_steps: tuple[int, ...]
    checkpoint_dir: str


def checkpoint_path(checkpoint_dir: str | Path, name: str) -> Path:
    return Path(checkpoint_dir) / f"{file_stem(name)}.pt"


def run_segment(
    name: str,
    dataset: ImageDataset,
    config: FinetuneConfig,
    predictor: PredictorSettings,
    rung: RungJob,
    *,
    runtime: Runtime | None = None,
    model_options: dict[str, Any] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    logme: bool = False,
) -> CandidateRecord:
    """Train ``name`` from its checkpoint (or from the start) to ``rung.stop_at``.

    ``config`` describes the whole run (its budget is the maximum budget), so the points equal
    those of one uninterrupted run. The record holds every point so far, ``steps`` (the step
    reached) and ``segment_seconds`` (this part's fine-tuning and evaluation time; the whole wall time when it
    failed);
    ``status`` is "failed" with a reason on an :class:`~ncap.exceptions.NcapError` or when out of
    memory, as for :func:`ncap.ranking.candidate.run_candidate`; a
    :class:`~ncap.exceptions.StorageError` (the checkpoint cannot be written: a full disk) stops
    the run instead, since it is no fault of the candidate. A checkpoint that cannot continue the
    candidate (:class:`~ncap.exceptions.CheckpointError`) is deleted and the candidate trained
    from the start to the same step, which gives the same record (training is seeded;
    :func:`ncap.ranking.runner.train_candidate` does it).
    """
    ckpt = checkpoint_path(rung.checkpoint_dir, name)
    resume = ckpt.exists()
    if rung.rung > 0 and not resume and log:
        log(f"{name}: no checkpoint in {rung.checkpoint_dir}; training from the start")
    job = TrainingJob(
        init_seed=config.seed,
        model_options=model_options or {},
        runtime=runtime,
        logme=logme and rung.rung == 0,  # the pretrained weights, whatever a redo finds on disk
        extra_eval_steps=rung.eval_steps,
        evaluate_test=True,
        stop_at=rung.stop_at,
        resume_from=ckpt if resume else None,
        checkpoint_to=ckpt,
        checkpoint_owner=name,
    )
    run = train_candidate(name, dataset, config, job, on_step=on_step, log=log)
    record = candidate_record(run, predictor, budget_steps=None)
    # fine-tuning and evaluation, not building the backbone (the whole time when it failed)
    record["segment_seconds"] = run.trajectory.seconds if run.ok else run.seconds
    return record
