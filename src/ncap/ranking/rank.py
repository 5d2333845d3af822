"""Rank candidate models by the final accuracy neural capacitance predicts from early fine-tuning.

For each candidate: build the (pretrained) backbone from the registry, fine-tune it briefly under a
frozen random probe, fit :class:`~ncap.predict.capacitance.CapacitancePredictor` on the early
``(beta_eff, validation accuracy)`` points and read the prediction at ``beta_eff = 0``. Each finished
candidate is written to ``OUT/candidates/<name>.json`` atomically the moment it finishes, so an
interrupted run loses nothing finished and ``resume=True`` skips what is done.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ncap._version import __version__
from ncap.data.dataset import ImageDataset
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.models.objects import PREFIX as OBJECT_PREFIX
from ncap.models.objects import candidate_names
from ncap.predict.capacitance import PredictorSettings
from ncap.predict.caveats import separation
from ncap.predict.recommended import resolve_score
from ncap.predict.scores import PROXY_SCORES, parse_nc, score_variant, untracked_reason
from ncap.ranking.cost import run_cost, spent_steps
from ncap.ranking.executors import CandidateJob, Executor, make_executor
from ncap.ranking.halving import HalvingSettings, run_halving
from ncap.ranking.preflight import (
    builtin_fit_problems,
    check_budget,
    check_burn_in,
    check_output_dir,
    check_strategy,
    clear_outputs,
)
from ncap.ranking.scoring import (
    add_predictions,
    assumed_note,
    budget_fraction,
    score_candidates,
    target_or_assumed,
    trust_of,
)
from ncap.ranking.store import candidate_path, load_finished, stale_files
from ncap.report import write_outputs
from ncap.report.progress import progress_bars
from ncap.results import RankResult, failed_record
from ncap.storage import atomic_write_json, directory_lock, to_jsonable
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime

__all__ = ["STRATEGIES", "rank"]

STRATEGIES = ("fixed", "halving")


def _settings(
    dataset: ImageDataset,
    config: FinetuneConfig,
    predictor: PredictorSettings,
    full_epochs: float | None,
) -> dict[str, Any]:
    return {
        "dataset": dataset.summary(),
        "finetune": config.to_dict(),
        "budget_epochs": config.epochs,
        "budget_steps": config.total_steps(len(dataset.y_train)),
        "full_epochs": full_epochs,
        # (the default measurement is left out, so runs of earlier versions still resume)
        "predictor": {
            k: v
            for k, v in asdict(predictor).items()
            if not (k == "measurement" and v == "interval")
        },
    }


def _environment() -> dict[str, Any]:
    return {
        "ncap": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def rank(
    models: Sequence[Any] | dict[str, Any],
    data: str | ImageDataset,
    *,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    predictor: PredictorSettings | None = None,
    full_epochs: float | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    data_root: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    extra_settings: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    executor: str | Executor = "local",
    model_options: dict[str, Any] | None = None,
    strategy: str = "fixed",
    halving: HalvingSettings | None = None,
    score: str | None = None,
    target_epochs: float | None = None,
) -> RankResult:
    """Fine-tune every candidate briefly, predict its final accuracy, and rank.

    Parameters
    ----------
    models : sequence of str, nn.Module or factory (or a mapping name -> object)
        Candidate names from the registry (:func:`ncap.models.builtin.list_models`, or
        ``prefix:name``), or Python objects: ``nn.Module``s, factories, ``functools.partial``s
        of factories with arguments, ``(name, object)`` pairs (:mod:`ncap.models.objects`).
    data : str or ImageDataset
        A built-in dataset name, an image-folder path, or a loaded dataset.
    out_dir : path
        Where ``candidates/*.json``, ``results.json``, ``results.csv`` and the plots go.
    config : FinetuneConfig
        Early fine-tuning settings; ``config.epochs`` is the budget.
    predictor : PredictorSettings
    full_epochs : float, optional
        Also fine-tune to this many epochs and record ``final_accuracy`` (the prediction still uses
        only the points within the budget).
    n_train, n_val : int, optional
        Training images kept and validation images held out (seeded by ``config.seed``).
    data_root : path, optional
        Where torchvision datasets are (or are downloaded to).
    resume : bool
        Reuse finished candidates in ``out_dir`` that were run with the same settings.
    overwrite : bool
        Discard earlier results in ``out_dir``. Without ``resume`` or ``overwrite``, existing results
        make this raise instead of silently replacing them.
    progress : bool
        Show progress bars (candidate and step) on stderr.
    extra_settings : dict, optional
        Further settings that define the run (e.g. a search space's width); recorded, and resume
        requires them to match.
    runtime : Runtime, optional
        Device (``auto``/``cpu``/``cuda[:i]``), mixed precision and loader workers. Recorded with
        each candidate; not part of the resume check.
    executor : "local", "ray" or an executor object
        Where candidates run (:mod:`ncap.ranking.executors`); the outputs are the same.
    model_options : dict, optional
        Options of every ``create_backbone`` call (e.g. a search space's ``width``, or ``pretrain``
        for the built-in zoo); they travel with the job, so Ray workers need no setup.
    strategy : "fixed" or "halving"
        "fixed": every candidate gets the budget ``config.epochs``. "halving": successive halving
        (:mod:`ncap.ranking.halving`, settings in ``halving``), whose maximum budget defaults to
        ``config.epochs``; ``full_epochs`` is then only the reference of the cost figure.
    score : str, optional
        What the fixed strategy ranks by (:mod:`ncap.predict.recommended`): None or
        "recommended" (the study's default for the budget's share of ``full_epochs``), "paper"
        (the paper's extrapolation), or any score by name. ``predicted_accuracy`` (the
        extrapolation of ``predictor``) and ``observed_accuracy`` are recorded either way.
    target_epochs : float, optional
        The full budget T the chosen model would be trained for (default: ``full_epochs``). The
        prediction is for T (a fitted score uses the budget's share of T), and the cost figure
        compares with training every candidate to T. Nothing is trained beyond the budget for it.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}.")
    models = candidate_names(models)  # nn.Modules and factories -> obj:<name>
    if getattr(executor, "name", executor) != "local" and any(
        m.startswith(f"{OBJECT_PREFIX}:") for m in models
    ):
        raise ConfigError(
            "candidates given as Python objects run in this process only; use executor='local', "
            "or name them as py:<module>:<factory> for Ray."
        )
    config = config or FinetuneConfig()
    predictor = predictor or PredictorSettings()
    runtime = runtime or Runtime()
    out_dir = check_output_dir(out_dir, resume=resume, overwrite=overwrite)
    check_strategy(out_dir, strategy, resume=resume)
    with directory_lock(out_dir):
        return _rank_locked(
            models, data, out_dir=out_dir, config=config, predictor=predictor,
            full_epochs=full_epochs, n_train=n_train, n_val=n_val, data_root=data_root,
            resume=resume, overwrite=overwrite, progress=progress, log=log,
            extra_settings=extra_settings, runtime=runtime, executor=executor,
            model_options=model_options, strategy=strategy, halving=halving, score=score,
            target_epochs=target_epochs,
        )  # fmt: skip


def _check_score_variants(components: Sequence[str], config: FinetuneConfig) -> None:
    """Refuse, before training, a score that reads a beta_eff variant the runs will not record."""
    for name in components:
        source = score_variant(name)
        if source is None:
            continue
        measurement, variant = source
        if measurement == "fixed":
            recorded = config.fixed_batch is not None and variant not in config.variants
        else:
            recorded = variant in config.variants or (
                name.startswith("nc/") and config.fixed_batch is not None
            )
        if not recorded:
            raise ConfigError(
                f"the score {name!r} cannot be computed: " + untracked_reason(*source)
            )


def _rank_locked(
    models, data, *, out_dir: Path, config: FinetuneConfig, predictor: PredictorSettings,
    full_epochs, n_train, n_val, data_root, resume, overwrite, progress, log, extra_settings,
    runtime: Runtime, executor, model_options, strategy: str = "fixed",
    halving: HalvingSettings | None = None, score: str | None = None,
    target_epochs: float | None = None,
) -> RankResult:  # fmt: skip
    """:func:`rank` while it holds the output directory's lock."""
    executor = make_executor(executor) if isinstance(executor, str) else executor
    if executor.name == "local":  # (Ray workers may have GPUs this process lacks)
        runtime.torch_device()  # an unavailable device fails now, not once per candidate
    if not models:
        raise ConfigError("no candidate models given; name at least one (see `ncap zoo`).")
    if predictor.variant == "signed" and len(config.probe_hidden) < 3:
        raise ConfigError(
            f"the signed beta_eff of a probe with {len(config.probe_hidden) + 1} weight layers is "
            "identically 0 under softmax cross-entropy (sum_k e_k = 0); use >= 3 hidden widths "
            "(e.g. 128,64,32) or another variant (mean-abs, abs-mean)."
        )
    if predictor.variant not in config.variants and config.fixed_batch is None:
        raise ConfigError(
            f"the prediction uses beta_eff {predictor.variant!r} but the run tracks only "
            f"{list(config.variants)}; add it to --variants, or measure it on a fixed batch at "
            "evaluation points with --fixed-batch 256."
        )
    if len(set(models)) != len(models):
        raise ConfigError(f"duplicate candidate names in {list(models)}; name each model once.")
    dataset = (
        data
        if isinstance(data, ImageDataset)
        else load_dataset(data, n_train=n_train, n_val=n_val, seed=config.seed, root=data_root)
    )
    n_seen = len(dataset.y_train)
    if strategy == "halving" and (halving or HalvingSettings()).score in PROXY_SCORES:
        raise ConfigError(
            f"successive halving cannot cut by the zero-cost proxy "
            f"{(halving or HalvingSettings()).score!r}: it does not change with training; rank "
            "by it with the fixed strategy (it needs no training at all)."
        )
    if strategy == "halving":
        return run_halving(
            models,
            dataset,
            config,
            predictor,
            halving or HalvingSettings(),
            out_dir=Path(out_dir),
            settings=_settings(dataset, config, predictor, full_epochs) | (extra_settings or {}),
            environment={
                "environment": _environment(),
                "runtime": runtime.to_dict() | executor.describe(),
            },
            full_epochs=target_epochs if target_epochs is not None else full_epochs,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            log=log,
            runtime=runtime,
            executor=executor,
            model_options=model_options or {},
        )
    budget_steps = config.total_steps(n_seen)
    spe = config.steps_per_epoch(n_seen)
    for epochs, flag in ((full_epochs, "--full-epochs"), (target_epochs, "--target-epochs")):
        if epochs is not None and epochs * spe < budget_steps:
            raise ConfigError(
                f"the full budget T ({epochs:g} epochs, {flag}) must cover the early budget "
                f"({budget_steps} steps = {budget_steps / spe:.3g} epochs)."
            )
    reference, assumed = target_or_assumed(target_epochs, full_epochs, budget_steps / spe)  # T
    fraction = budget_fraction(budget_steps, spe, reference)
    score_spec, score_note = resolve_score(score, fraction)  # a bad name fails before training
    for component in score_spec.components:  # a score that ranks by an extrapolation
        if component.startswith("nc/"):
            check_budget(config, parse_nc(component), n_seen)
    _check_score_variants(score_spec.components, config)
    check_burn_in(config, predictor, n_seen)
    settings = _settings(dataset, config, predictor, full_epochs) | (extra_settings or {})
    unfit = builtin_fit_problems(models, dataset, input_size=config.input_size)
    if len(unfit) == len(models):
        raise ConfigError("no candidate can take this dataset: " + " ".join(unfit.values()))
    if overwrite:
        clear_outputs(out_dir)
    finished = load_finished(
        out_dir,
        on_malformed=lambda path, problem: (
            log and log(f"{path} is malformed ({problem}); its candidate runs again")
        ),
    )
    # the settings as a candidate file stores them (tuples -> lists, non-finite -> null)
    stored_settings = json.loads(json.dumps(to_jsonable(settings)))
    records: dict[str, dict[str, Any]] = {}
    with progress_bars(progress, len(models), log=log) as bars:
        todo = []
        for name in models:
            done = finished.get(name)
            if done is not None and done["settings"] == stored_settings:
                if done["record"]["status"] == "ok":
                    records[name] = done["record"]
                    bars.candidate_done(name, skipped=True)
                    continue
            elif done is not None:
                raise ConfigError(
                    f"{candidate_path(out_dir, name)} was produced with different settings; "
                    "resume only with the same dataset, budget and predictor settings, or use "
                    "--overwrite / another output directory."
                )
            if name in unfit:  # failed before any compute (ranking/preflight.py)
                records[name] = failed_record(name, unfit[name]) | {"cost_seconds": 0.0}
                atomic_write_json(
                    {"settings": settings, "record": records[name]}, candidate_path(out_dir, name)
                )
                if log:
                    log(f"{name} failed: {unfit[name]}")
                continue
            todo.append(name)
        job = CandidateJob(dataset, config, predictor, full_epochs, runtime, model_options or {},
                           logme="logme" in score_spec.components,
                           proxies=tuple(c for c in score_spec.components
                                         if c in PROXY_SCORES))  # fmt: skip
        for record in executor.run(
            todo, job, on_start=bars.candidate_start, on_step=bars.step, log=log
        ):
            name = record["name"]
            atomic_write_json(
                {"settings": settings, "record": record}, candidate_path(out_dir, name)
            )
            for path in stale_files(out_dir, name):  # an earlier layout's file of this name
                path.unlink(missing_ok=True)
            records[name] = record
            bars.candidate_done(name)
            if log and record["status"] != "ok":
                log(f"{name} failed: {record['reason']}")
    # cost accounting (records reused from older runs lack "steps": derived, not written back)
    spent = [records[name] | {"steps": spent_steps(records[name], budget_steps)} for name in models]
    notes: list[str] = []
    order = score_candidates(
        [records[name] for name in models],
        score_spec,
        budget_steps=budget_steps,
        steps_per_epoch=spe,
        full_epochs=reference,
        notes=notes,
    )
    ranked = [records[name] for name in models]
    add_predictions(ranked, predictor, fraction, classes=dataset.num_classes,
                    budget_steps=budget_steps)  # fmt: skip
    verdict = separation([records[name] for name in order if records[name]["status"] == "ok"])
    trust = trust_of([records[name] for name in order if records[name]["status"] == "ok"], fraction)
    if score_note:
        notes.insert(0, score_note)
    if assumed:
        notes.insert(0, assumed_note(reference, fraction))
    for note in notes if log else ():
        log(f"note: {note}")
    result = RankResult(
        candidates=[records[name] for name in models],
        settings=settings
        | {
            "environment": _environment(),
            "runtime": runtime.to_dict() | executor.describe(),
            "score": {
                "name": score_spec.name,
                "requested": score or "recommended",
                "budget_fraction": fraction,
                "target_epochs": reference,
                "target_assumed": assumed,
                "notes": notes,
                "separation": verdict,
                "trust": trust,
            },
        },
        order=order,
        out_dir=out_dir,
        cost=run_cost(  # (an assumed T makes no cost figure: it would only restate it)
            spent,
            full_steps=None if assumed else round(reference * spe),
            full_epochs=None if assumed else reference,
        ),
    )
    result.files = write_outputs(result)
    return result
