"""The one candidate pipeline: ``create_backbone -> (LogME) -> finetune``, and the one record
builder.

A ranking (:mod:`ncap.ranking.candidate`), a successive-halving segment (:mod:`ncap.ranking.segment`)
and the benchmark builder (:mod:`ncap.bench.build`) all train a candidate through
:func:`train_candidate`; what differs between them is a setting of the :class:`TrainingJob`, not a
copy of the pipeline. :func:`candidate_record` turns a :class:`TrainedCandidate` into the JSON
record of a ranking in one place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ncap.data.dataset import ImageDataset
from ncap.exceptions import CheckpointError, NcapError, StorageError
from ncap.models.backbone import Backbone
from ncap.models.registry import create_backbone
from ncap.predict.capacitance import PredictorSettings, predict_from_points
from ncap.ranking.training_free import proxies_of, training_free_scores
from ncap.results import CandidateRecord, Trajectory, failed_record
from ncap.training.callbacks import Callback
from ncap.training.checkpoint import Segment
from ncap.training.config import FinetuneConfig
from ncap.training.loop import finetune
from ncap.training.runtime import Runtime

__all__ = [
    "CANDIDATE_FAILURES",
    "TrainedCandidate",
    "TrainingJob",
    "build_backbone",
    "candidate_record",
    "out_of_memory_reason",
    "train_candidate",
]

# what fails one candidate of a ranking instead of the whole run (anything else is a bug)
CANDIDATE_FAILURES: tuple[type[BaseException], ...] = (NcapError, torch.OutOfMemoryError)


@dataclass(frozen=True)
class TrainingJob:
    """How one candidate is trained, besides its name, dataset and fine-tuning config.

    ``init_seed``: the seed of the backbone's construction (its random initialisation, the same in
    every process); None builds it under the process's current random state, as the benchmark
    plans' runs were built (kept so that a resumed build stays valid). ``logme``: compute LogME of
    the pretrained features first. ``failures``: the exceptions that fail the candidate (recorded
    as its reason) rather than propagate; the benchmark builder lets every error propagate.
    The remaining fields go to :func:`ncap.training.loop.finetune`.
    """

    init_seed: int | None
    model_options: dict[str, Any] = field(default_factory=dict)
    runtime: Runtime | None = None
    logme: bool = False
    proxies: tuple[str, ...] = ()  # zero-cost proxies of the untrained network, computed first
    backbone: Backbone | None = None  # built by the caller (None: built here)
    extra_eval_steps: Sequence[int] = ()
    evaluate_test: bool = False
    callbacks: Sequence[Callback] = ()
    stop_at: int | None = None
    resume_from: str | os.PathLike | None = None
    checkpoint_to: str | os.PathLike | None = None
    checkpoint_owner: str | None = None
    failures: tuple[type[BaseException], ...] = CANDIDATE_FAILURES


@dataclass(frozen=True)
class TrainedCandidate:
    """What :func:`train_candidate` produced: the backbone's description (``None`` when it could not
    be built), the trajectory (``None`` on failure), the failure's ``reason`` and the seconds spent
    (all of them; ``trajectory.seconds`` counts fine-tuning and evaluation only)."""

    name: str
    backbone: dict[str, Any] | None
    trajectory: Trajectory | None
    reason: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.trajectory is not None


def build_backbone(
    name: str,
    init_seed: int | None,
    model_options: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> Backbone:
    """``create_backbone(name, **model_options)``, seeded by ``init_seed`` (None: unseeded)."""
    if init_seed is None:
        return create_backbone(name, log=log, **(model_options or {}))
    with torch.random.fork_rng():  # random initialisations are the same in every process
        torch.manual_seed(init_seed)
        return create_backbone(name, log=log, **(model_options or {}))


def train_candidate(
    name: str,
    dataset: ImageDataset,
    config: FinetuneConfig,
    job: TrainingJob,
    *,
    on_step: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainedCandidate:
    """Build ``name``'s backbone, compute LogME when asked, fine-tune it under the probe."""
    start = time.perf_counter()
    backbone: dict[str, Any] | None = None
    try:
        model = job.backbone or build_backbone(name, job.init_seed, job.model_options, log)
        backbone = {"num_features": model.num_features} | model.info
        if job.logme:
            backbone |= training_free_scores(model, dataset, config, job.runtime, log)
        if job.proxies:
            backbone |= proxies_of(model, dataset, config, job.proxies)
        try:
            traj = _finetune(model, dataset, config, job, on_step, resume=True)
        except CheckpointError as err:  # damaged, another candidate's, past this rung: recompute
            if job.checkpoint_to is None:
                raise
            if log:
                log(f"{name}: {err} Training it from the start instead (same result).")
            Path(job.checkpoint_to).unlink(missing_ok=True)
            model = build_backbone(name, job.init_seed, job.model_options, log)
            traj = _finetune(model, dataset, config, job, on_step, resume=False)
    except StorageError:  # the run's own disk, no fault of the candidate: stop, --resume later
        raise
    except job.failures as err:
        reason = out_of_memory_reason(err) if isinstance(err, torch.OutOfMemoryError) else str(err)
        return TrainedCandidate(name, backbone, None, reason, time.perf_counter() - start)
    backbone["num_features"] = traj.num_features
    return TrainedCandidate(name, backbone, traj, None, time.perf_counter() - start)


def _finetune(model: Backbone, dataset, config, job: TrainingJob, on_step, *, resume: bool):
    return finetune(
        model.module,
        model.num_features,
        dataset,
        config,
        input_spec=model.input_spec,
        runtime=job.runtime,
        on_step=on_step,
        extra_eval_steps=job.extra_eval_steps,
        evaluate_test=job.evaluate_test,
        callbacks=job.callbacks,
        segment=Segment(
            stop_at=job.stop_at,
            resume_from=job.resume_from if resume else None,
            checkpoint_to=job.checkpoint_to,
            owner=job.checkpoint_owner,
        ),
    )


def candidate_record(
    run: TrainedCandidate,
    predictor: PredictorSettings,
    *,
    budget_steps: int | None,
    full_run: bool = False,
) -> CandidateRecord:
    """A ranking's record of one trained candidate (``status`` "failed" with the reason when it
    failed).

    ``budget_steps``: the points up to this step are the early run the observed accuracy and the
    extrapolation read (a fixed ranking's budget; None: every point, a halving segment's run so far,
    whose ``steps`` is then the step reached). ``full_run``: the trajectory went on to the full
    budget, whose last point gives ``final_accuracy``.
    """
    record = failed_record(run.name, run.reason)
    if run.backbone is not None:
        record["backbone"] = dict(run.backbone)
    traj = run.trajectory
    if traj is None:
        return record
    record["runtime"] = traj.runtime
    if traj.test is not None:
        record["test_accuracy"] = traj.test["test_accuracy"]
        record["test"] = traj.test
    points = traj.points
    record["trajectory"] = points
    steps = traj.last_step if budget_steps is None else budget_steps
    early = [p for p in points if p["step"] <= steps]
    if not early and budget_steps is not None:  # the run so far is kept with the reason
        record["reason"] = "no evaluation point within the budget; lower --eval-every."
        record["cost_seconds"] = run.seconds
        return record
    if early:
        record["observed_accuracy"] = early[-1]["val_accuracy"]
        record["beta_eff_end"] = early[-1]["beta_eff"]
    if budget_steps is not None:
        record["cost_seconds"] = early[-1]["wall_time"]
    if full_run:
        record["final_accuracy"] = points[-1]["val_accuracy"]
        record["full_seconds"] = traj.seconds
    if early:
        try:
            record |= predict_from_points(points, predictor, steps)
        except ValueError as err:  # too few points for the extrapolation: none, not a failure
            record["fit"] = {"error": str(err)}
    record["steps"] = steps  # spent on the ranking (cost_seconds: their time)
    record["status"] = "ok"
    return record


def out_of_memory_reason(err: BaseException) -> str:
    """A failed candidate's one-line reason after running out of memory, with the fix."""
    return (
        f"out of memory ({str(err).splitlines()[0]}); lower --batch-size or --input-size, or "
        "give each candidate a larger GPU."
    )
