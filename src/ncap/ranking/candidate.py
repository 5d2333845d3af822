"""One candidate of a ranking, start to finish: :func:`ncap.ranking.runner.train_candidate` (to the
budget, or on to the full budget for the hold-out check), then its record; a halving rung's part
goes to :func:`ncap.ranking.segment.run_segment`."""

from __future__ import annotations

from collections.abc import Callable

from ncap.ranking.jobs import CandidateJob
from ncap.ranking.runner import TrainingJob, candidate_record, train_candidate
from ncap.ranking.segment import run_segment
from ncap.results import CandidateRecord
from ncap.training.config import FinetuneConfig

__all__ = ["run_candidate"]


def run_candidate(
    name: str,
    job: CandidateJob,
    *,
    on_step: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> CandidateRecord:
    """Fine-tune one candidate and return its record (``status`` "failed" with a reason on error).

    The test split, when the dataset has one, is evaluated once at the end of the run and reported
    as ``test_accuracy`` (never used for the prediction). A candidate fails on an
    :class:`~ncap.exceptions.NcapError` (a bad setting, missing weights, a diverged run, an error
    raised inside its own model code) and on running out of memory, except a
    :class:`~ncap.exceptions.StorageError` (the run's disk), which stops the run; any other
    exception is a bug and propagates.

    With ``job.rung`` (successive halving) only that rung's part of the run is trained, from and
    to the candidate's checkpoint (:func:`ncap.ranking.segment.run_segment`). With ``job.logme``,
    LogME of the pretrained backbone's features is computed first (``record["backbone"]["logme"]``; a
    failure is recorded as ``logme_error`` and does not fail the candidate).
    """
    if job.rung is not None:
        return run_segment(name, job, on_step=on_step, log=log)
    dataset, config, full_epochs = job.dataset, job.config, job.full_epochs
    n_train = len(dataset.y_train)
    budget_steps = config.total_steps(n_train)
    run_config = config
    if full_epochs is not None:  # laid out for the budget, so the early run is its prefix
        run_config = FinetuneConfig(
            **(
                config.__dict__
                | {
                    "epochs": full_epochs,
                    "steps": None,
                    "eval_anchor": config.anchor_steps(n_train),
                }
            )
        )
    training = TrainingJob(
        init_seed=config.seed,
        model_options=job.model_options or {},
        runtime=job.runtime,
        logme=job.logme,
        proxies=job.proxies,
        extra_eval_steps=(budget_steps,),
        evaluate_test=True,
    )
    run = train_candidate(name, dataset, run_config, training, on_step=on_step, log=log)
    record = candidate_record(
        run, job.predictor, budget_steps=budget_steps, full_run=full_epochs is not None
    )
    if record["cost_seconds"] is None:  # failed: the time it took to fail
        record["cost_seconds"] = run.seconds
    return record
