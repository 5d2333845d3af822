"""Rank candidate models by the final accuracy neural capacitance predicts from early fine-tuning.

:func:`run_ranking` runs a :class:`~ncap.ranking.spec.RunSpec` with a strategy
(:mod:`ncap.ranking.strategies`: fixed budget or successive halving) while it holds the output
folder's lock; :func:`rank` is the keyword front of it (it loads the data by name and builds the
spec and the strategy). Each finished candidate is written to ``OUT/candidates/<name>.json``
atomically the moment it finishes, so an interrupted run loses nothing finished and
``resume=True`` skips what is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ncap.data.dataset import ImageDataset
from ncap.exceptions import ConfigError
from ncap.models.objects import PREFIX as OBJECT_PREFIX
from ncap.models.objects import candidate_names
from ncap.predict.capacitance import PredictorSettings
from ncap.ranking.executors import Executor, make_executor
from ncap.ranking.halving import HalvingSettings
from ncap.ranking.preflight import check_output_dir, check_strategy
from ncap.ranking.source_accuracy import check_source_accuracy, read_file
from ncap.ranking.spec import RunContext, RunSpec
from ncap.ranking.strategies import STRATEGIES, Fixed, Strategy, make_strategy
from ncap.results import RankResult
from ncap.storage import directory_lock
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime

__all__ = ["STRATEGIES", "rank", "run_ranking"]


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
    source_accuracy: Mapping[str, float] | str | Path | None = None,
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
    source_accuracy : mapping or path, optional
        Candidates' accuracies on their pretraining task as fractions in (0, 1] (e.g.
        ``{"timm:resnet50": 0.761}`` for an ImageNet top-1 of 76.1%), or a CSV/JSON file of them
        (:func:`ncap.ranking.source_accuracy.read_file`). Read only by scores that read a source
        accuracy (``fit/base``; ncap's own zoo records one, other models have none); a value
        given replaces a recorded one. ``results.json`` records them in
        ``settings.source_accuracy``. Checked (names, range) before the data is loaded.
    """
    chosen = make_strategy(strategy, halving)  # the cheap checks before the data is loaded
    models = candidate_names(models)  # nn.Modules and factories -> obj:<name>
    if getattr(executor, "name", executor) != "local" and any(
        m.startswith(f"{OBJECT_PREFIX}:") for m in models
    ):
        raise ConfigError(
            "candidates given as Python objects run in this process only; use executor='local', "
            "or name them as py:<module>:<factory> for Ray."
        )
    if isinstance(source_accuracy, (str, Path)):
        source_accuracy = read_file(source_accuracy)
    source_accuracy = check_source_accuracy(source_accuracy, models)
    check_output_dir(out_dir, resume=resume, overwrite=overwrite)
    check_strategy(out_dir, strategy, resume=resume)
    spec = RunSpec.load(
        models,
        data,
        n_train=n_train,
        n_val=n_val,
        data_root=data_root,
        config=config,
        predictor=predictor,
        full_epochs=full_epochs,
        target_epochs=target_epochs,
        score=score,
        model_options=model_options,
        extra_settings=extra_settings,
        source_accuracy=source_accuracy,
    )
    return run_ranking(
        spec,
        chosen,
        out_dir=out_dir,
        runtime=runtime,
        executor=executor,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        log=log,
    )


def run_ranking(
    spec: RunSpec,
    strategy: Strategy | None = None,
    *,
    out_dir: str | Path,
    runtime: Runtime | None = None,
    executor: str | Executor = "local",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> RankResult:
    """Run ``spec`` with ``strategy`` (default :class:`~ncap.ranking.strategies.Fixed`) into
    ``out_dir``, holding its lock; the checks that would fail every candidate come first."""
    runtime = runtime or Runtime()
    out_dir = check_output_dir(out_dir, resume=resume, overwrite=overwrite)
    executor = make_executor(executor) if isinstance(executor, str) else executor
    if executor.name == "local":  # (Ray workers may have GPUs this process lacks)
        runtime.torch_device()  # an unavailable device fails now, not once per candidate
    _check_predictor(spec.predictor, spec.config)
    ctx = RunContext(Path(out_dir), runtime, executor, resume, overwrite, progress, log)
    with directory_lock(out_dir):
        return (strategy or Fixed()).run(spec, ctx)


def _check_predictor(predictor: PredictorSettings, config: FinetuneConfig) -> None:
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
