"""One candidate's part of a successive-halving rung: continue from its checkpoint to the rung's
step, write the checkpoint there, and return its record so far."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ncap.exceptions import ConfigError
from ncap.ranking.jobs import CandidateJob
from ncap.ranking.runner import TrainingJob, candidate_record, train_candidate
from ncap.ranking.store import file_stem
from ncap.results import CandidateRecord

__all__ = ["checkpoint_path", "run_segment"]


def checkpoint_path(checkpoint_dir: str | Path, name: str) -> Path:
    return Path(checkpoint_dir) / f"{file_stem(name)}.pt"


def run_segment(
    name: str,
    job: CandidateJob,
    *,
    on_step: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> CandidateRecord:
    """Train ``name`` from its checkpoint (or from the start) to ``job.rung.stop_at``.

    ``job.config`` describes the whole run (its budget is the maximum budget), so the points equal
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
    rung, config = job.rung, job.config
    if rung is None:
        raise ConfigError(
            "run_segment trains one halving rung: give the job a rung (CandidateJob(..., "
            "rung=RungJob(...))), or call run_candidate for a whole run."
        )
    ckpt = checkpoint_path(rung.checkpoint_dir, name)
    resume = ckpt.exists()
    if rung.rung > 0 and not resume and log:
        log(f"{name}: no checkpoint in {rung.checkpoint_dir}; training from the start")
    training = TrainingJob(
        init_seed=config.seed,
        model_options=job.model_options or {},
        runtime=job.runtime,
        logme=job.logme and rung.rung == 0,  # the pretrained weights, whatever a redo finds on disk
        extra_eval_steps=rung.eval_steps,
        evaluate_test=True,
        stop_at=rung.stop_at,
        resume_from=ckpt if resume else None,
        checkpoint_to=ckpt,
        checkpoint_owner=name,
    )
    run = train_candidate(name, job.dataset, config, training, on_step=on_step, log=log)
    record = candidate_record(run, job.predictor, budget_steps=None)
    # fine-tuning and evaluation, not building the backbone (the whole time when it failed)
    record["segment_seconds"] = run.trajectory.seconds if run.ok else run.seconds
    return record
