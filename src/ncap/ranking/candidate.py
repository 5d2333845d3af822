"""One candidate, start to finish: create_backbone -> finetune -> predictor -> its record."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ncap.data.dataset import ImageDataset
from ncap.exceptions import CandidateError, NcapError, StorageError
from ncap.models.registry import create_backbone
from ncap.predict.capacitance import PredictorSettings, predict_from_points
from ncap.ranking.segment import RungJob, out_of_memory_reason, run_segment
from ncap.ranking.training_free import proxies_of, training_free_scores
from ncap.results import CandidateRecord, failed_record
from ncap.training.config import FinetuneConfig
from ncap.training.loop import finetune
from ncap.training.runtime import Runtime

__all__ = ["run_candidate"]


def run_candidate(
    name: str,
    dataset: ImageDataset,
    config: FinetuneConfig,
    predictor: PredictorSettings,
    *,
    full_epochs: float | None = None,
    runtime: Runtime | None = None,
    model_options: dict[str, Any] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    rung: RungJob | None = None,
    logme: bool = False,
    proxies: tuple[str, ...] = (),
) -> CandidateRecord:
    """Fine-tune one candidate and return its record (``status`` "failed" with a reason on error).

    The test split, when the dataset has one, is evaluated once at the end of the run and reported
    as ``test_accuracy`` (never used for the prediction). A candidate fails on an
    :class:`~ncap.exceptions.NcapError` (a bad setting, missing weights, a diverged run, an error
    raised inside its own model code) and on running out of memory, except a
    :class:`~ncap.exceptions.StorageError` (the run's disk), which stops the run; any other
    exception is a bug and propagates.

    With ``rung`` (successive halving) only that rung's part of the run is trained, from and to
    the candidate's checkpoint (:func:`ncap.ranking.segment.run_segment`). With ``logme``, LogME of
    the pretrained backbone's features is computed first (``record["backbone"]["logme"]``; a
    failure is recorded as ``logme_error`` and does not fail the candidate). With ``proxies``,
    those zero-cost proxies of the untrained network are computed first, as the NAS benchmark
    computes them (``record["backbone"]["proxies"]``, :func:`ncap.ranking.training_free.proxies_of`).
    """
    if rung is not None:
        return run_segment(
            name,
            dataset,
            config,
            predictor,
            rung,
            runtime=runtime,
            model_options=model_options,
            on_step=on_step,
            log=log,
            logme=logme,
        )
    record = failed_record(name)
    start = time.perf_counter()
    try:
        with torch.random.fork_rng():  # random initialisations are the same in every process
            torch.manual_seed(config.seed)
            backbone = create_backbone(name, log=log, **(model_options or {}))
        record["backbone"] = {"num_features": backbone.num_features} | backbone.info
        if logme:
            record["backbone"] |= training_free_scores(backbone, dataset, config, runtime, log)
        if proxies:
            record["backbone"] |= proxies_of(backbone, dataset, config, proxies)
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
        traj = finetune(
            backbone.module,
            backbone.num_features,
            dataset,
            run_config,
            input_spec=backbone.input_spec,
            runtime=runtime,
            on_step=on_step,
            extra_eval_steps=(budget_steps,),
            evaluate_test=True,
        )
        record["backbone"]["num_features"] = traj.num_features
        record["runtime"] = traj.runtime
        if traj.test is not None:
            record["test_accuracy"] = traj.test["test_accuracy"]
            record["test"] = traj.test
        points = traj.points
        record["trajectory"] = points
        early = [p for p in points if p["step"] <= budget_steps]
        if not early:
            raise CandidateError("no evaluation point within the budget; lower --eval-every.")
        record["observed_accuracy"] = early[-1]["val_accuracy"]
        record["beta_eff_end"] = early[-1]["beta_eff"]
        record["cost_seconds"] = early[-1]["wall_time"]
        if full_epochs is not None:
            record["final_accuracy"] = points[-1]["val_accuracy"]
            record["full_seconds"] = traj.seconds
        try:
            record |= predict_from_points(points, predictor, budget_steps)
        except ValueError as err:  # too few points for the extrapolation: none, not a failure
            record["fit"] = {"error": str(err)}
        record["steps"] = budget_steps  # spent on the ranking (cost_seconds: their time)
        record["status"] = "ok"
    except StorageError:  # the run's own disk, no fault of the candidate: stop, --resume later
        raise
    except NcapError as err:
        record["reason"] = str(err)
    except torch.OutOfMemoryError as err:
        record["reason"] = out_of_memory_reason(err)
    if record["cost_seconds"] is None:
        record["cost_seconds"] = time.perf_counter() - start
    return record
