"""One candidate's part of a successive-halving rung: continue from its checkpoint to the rung's
step, write the checkpoint there, and return its record so far."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ncap.data.dataset import ImageDataset
from ncap.exceptions import CheckpointError, NcapError, StorageError
from ncap.models.registry import create_backbone
from ncap.predict.capacitance import PredictorSettings, predict_from_points
from ncap.ranking.store import file_stem
from ncap.ranking.training_free import training_free_scores
from ncap.results import CandidateRecord, failed_record
from ncap.training.config import FinetuneConfig
from ncap.training.loop import finetune
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
    from the start to the same step, which gives the same record (training is seeded).
    """
    record = failed_record(name)
    start = time.perf_counter()
    seconds = None
    ckpt = checkpoint_path(rung.checkpoint_dir, name)

    def build():
        with torch.random.fork_rng():  # the same initial weights in every process
            torch.manual_seed(config.seed)
            return create_backbone(name, log=log, **(model_options or {}))

    def train(backbone, resume: bool):
        return finetune(
            backbone.module,
            backbone.num_features,
            dataset,
            config,
            input_spec=backbone.input_spec,
            runtime=runtime,
            on_step=on_step,
            extra_eval_steps=rung.eval_steps,
            evaluate_test=True,
            stop_at=rung.stop_at,
            resume_from=ckpt if resume else None,
            checkpoint_to=ckpt,
            checkpoint_owner=name,
        )

    try:
        backbone = build()
        record["backbone"] = {"num_features": backbone.num_features} | backbone.info
        if logme and rung.rung == 0:  # the pretrained weights, whatever a redo finds on disk
            record["backbone"] |= training_free_scores(backbone, dataset, config, runtime, log)
        if rung.rung > 0 and not ckpt.exists() and log:
            log(f"{name}: no checkpoint in {rung.checkpoint_dir}; training from the start")
        try:
            traj = train(backbone, ckpt.exists())
        except CheckpointError as err:  # damaged, another candidate's, past this rung: recompute
            if log:
                log(f"{name}: {err} Training it from the start instead (same result).")
            ckpt.unlink(missing_ok=True)
            traj = train(build(), False)
        seconds = traj.seconds  # fine-tuning and evaluation, not building the backbone
        record["backbone"]["num_features"] = traj.num_features
        record["runtime"] = traj.runtime
        if traj.test is not None:
            record["test_accuracy"] = traj.test["test_accuracy"]
            record["test"] = traj.test
        record["trajectory"] = traj.points
        record["steps"] = traj.last_step
        if traj.points:
            record["observed_accuracy"] = traj.points[-1]["val_accuracy"]
            record["beta_eff_end"] = traj.points[-1]["beta_eff"]
            try:
                record |= predict_from_points(traj.points, predictor, traj.last_step)
            except ValueError as err:  # too few points for the fit: no prediction, not a failure
                record["fit"] = {"error": str(err)}
        record["status"] = "ok"
    except StorageError:  # the run's own disk (a checkpoint not written): stop, --resume later
        raise
    except NcapError as err:
        record["reason"] = str(err)
    except torch.OutOfMemoryError as err:
        record["reason"] = out_of_memory_reason(err)
    record["segment_seconds"] = time.perf_counter() - start if seconds is None else seconds
    return record


def out_of_memory_reason(err: BaseException) -> str:
    """A failed candidate's one-line reason after running out of memory, with the fix."""
    return (
        f"out of memory ({str(err).splitlines()[0]}); lower --batch-size or --input-size, or "
        "give each candidate a larger GPU."
    )
