"""Rank candidate models by the final accuracy neural capacitance predicts from early fine-tuning.

:func:`run_ranking` runs a :class:`~ncap.ranking.spec.RunSpec` with a strategy
(:mod:`ncap.ranking.strategies`: fixed budget or successive halving) while it holds the output
folder's lock; :func:`rank` is the short front of it (nine parameters: it checks them, loads a
dataset given by name with the defaults, and builds the spec). Each finished candidate is written
to ``OUT/candidates/<name>.json`` atomically the moment it finishes, so an interrupted run loses
nothing finished and ``Execution(mode="resume")`` skips what is done.

What :func:`rank` does not take: the data loading knobs (``n_train``, ``n_val``, ``root``: call
:func:`ncap.data.registry.load_dataset` first and pass the dataset), and the settings only the
benchmark and the NAS search need (``model_options``, ``extra_settings``: build a
:class:`~ncap.ranking.spec.RunSpec` and call :func:`run_ranking`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ncap.data.dataset import ImageDataset
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.models.objects import PREFIX as OBJECT_PREFIX
from ncap.models.objects import candidate_names
from ncap.predict.capacitance import PredictorSettings
from ncap.ranking.preflight import check_output_dir, check_strategy
from ncap.ranking.source_accuracy import check_source_accuracy, read_file
from ncap.ranking.spec import Execution, Horizon, RunContext, RunSpec, check_models
from ncap.ranking.strategies import STRATEGIES, Strategy, make_strategy
from ncap.results import RankResult
from ncap.storage import directory_lock
from ncap.training.config import FinetuneConfig

__all__ = ["STRATEGIES", "rank", "run_ranking"]


def _optional(kind: type, hint: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value is None or isinstance(value, kind)), hint


# rank()'s parameters: what each accepts and the fix named when it does not (checked before any
# data is loaded; the objects check their own fields when they are built)
PARAMETER_CONSTRAINTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data": (
        lambda v: isinstance(v, (str, Path, ImageDataset)),
        "a dataset name, an image-folder path, or an ImageDataset (ncap.load_dataset(name, "
        "n_train=..., n_val=..., root=...))",
    ),
    "out_dir": (lambda v: isinstance(v, (str, Path)), "a folder path"),
    "config": _optional(FinetuneConfig, "an ncap.FinetuneConfig"),
    "predictor": _optional(PredictorSettings, "an ncap.PredictorSettings"),
    "strategy": (
        lambda v: isinstance(v, str) or callable(getattr(v, "run", None)),
        f"one of {STRATEGIES} or a strategy object (Halving(HalvingSettings(...)))",
    ),
    "score": _optional(str, "a score name (e.g. 'recommended', 'paper', 'last-observed')"),
    "horizon": _optional(Horizon, "an ncap.Horizon(target_epochs=..., full_epochs=...)"),
    "source_accuracy": (
        lambda v: v is None or isinstance(v, (Mapping, str, Path)),
        "a mapping name -> accuracy in (0, 1] or a CSV/JSON file of them",
    ),
    "execution": _optional(
        Execution, "an ncap.Execution(runtime=..., executor=..., mode=..., progress=..., log=...)"
    ),
}


def check_parameters(**values: Any) -> None:
    """Raise :class:`~ncap.exceptions.ConfigError` for the first value ``PARAMETER_CONSTRAINTS``
    refuses.

    >>> check_parameters(score=3)
    Traceback (most recent call last):
    ...
    ncap.exceptions.ConfigError: score must be a score name (e.g. 'recommended', 'paper', 'last-observed'); got 3.
    """
    for name, value in values.items():
        accepts, hint = PARAMETER_CONSTRAINTS[name]
        if not accepts(value):
            raise ConfigError(f"{name} must be {hint}; got {value!r}.")


def rank(
    models: Sequence[Any] | dict[str, Any],
    data: str | Path | ImageDataset,
    *,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    predictor: PredictorSettings | None = None,
    strategy: str | Strategy = "fixed",
    score: str | None = None,
    horizon: Horizon | None = None,
    source_accuracy: Mapping[str, float] | str | Path | None = None,
    execution: Execution | None = None,
) -> RankResult:
    """Fine-tune every candidate briefly, predict its final accuracy, and rank.

    Parameters
    ----------
    models : sequence of str, nn.Module or factory (or a mapping name -> object)
        Candidate names from the registry (:func:`ncap.models.builtin.list_models`, or
        ``prefix:name``), or Python objects: ``nn.Module``s, factories, ``functools.partial``s
        of factories with arguments, ``(name, object)`` pairs (:mod:`ncap.models.objects`).
    data : str, path or ImageDataset
        A dataset loaded by :func:`ncap.load_dataset` (which takes ``n_train``, ``n_val``, the
        data ``root`` ...), or a built-in dataset name or an image-folder path, loaded with the
        defaults and seeded by ``config.seed``.
    out_dir : path
        Where ``candidates/*.json``, ``results.json``, ``results.csv`` and the plots go.
    config : FinetuneConfig
        Early fine-tuning settings; ``config.epochs`` is the budget.
    predictor : PredictorSettings
        The extrapolation recorded as ``predicted_accuracy`` (and ranked by with ``score="paper"``).
    strategy : "fixed", "halving" or a strategy object
        "fixed": every candidate gets the budget ``config.epochs``. "halving": successive halving
        with the default settings; ``Halving(HalvingSettings(eta=3, ...))``
        (:mod:`ncap.ranking.strategies`) sets them. Its maximum budget defaults to
        ``config.epochs``.
    score : str, optional
        What the fixed strategy ranks by (:mod:`ncap.predict.recommended`): None or
        "recommended" (the study's default for the budget's share of T), "paper" (the paper's
        extrapolation), or any score by name. ``predicted_accuracy`` (the extrapolation of
        ``predictor``) and ``observed_accuracy`` are recorded either way. (The halving strategy
        cuts and ranks by its rung score, ``HalvingSettings.score``.)
    horizon : Horizon, optional
        The full training the ranking is about: ``target_epochs`` T (what the prediction is for,
        and the cost figure's reference) and ``full_epochs`` (also fine-tune that far and record
        ``final_accuracy``); see :class:`~ncap.ranking.spec.Horizon`.
    source_accuracy : mapping or path, optional
        Candidates' accuracies on their pretraining task as fractions in (0, 1] (e.g.
        ``{"timm:resnet50": 0.761}`` for an ImageNet top-1 of 76.1%), or a CSV/JSON file of them
        (:func:`ncap.ranking.source_accuracy.read_file`). Read only by scores that read a source
        accuracy (``fit/base``; ncap's own zoo records one, other models have none); a value
        given replaces a recorded one. ``results.json`` records them in
        ``settings.source_accuracy``. Checked (names, range) before the data is loaded.
    execution : Execution, optional
        How the run executes, none of which changes the results: ``runtime`` (device, mixed
        precision, workers), ``executor`` ("local", "ray" or an object), ``mode`` ("new",
        "resume", "overwrite": what to do with earlier results in ``out_dir``), ``progress`` and
        ``log`` (:class:`~ncap.ranking.spec.Execution`).

    Every parameter is checked (``PARAMETER_CONSTRAINTS``), and so are the strategy, the
    candidates and the output folder, before the data is loaded; a keyword of the earlier,
    longer signature (``full_epochs=``, ``resume=``, ``n_train=`` ...) is a ``TypeError``.
    """
    check_parameters(
        data=data,
        out_dir=out_dir,
        config=config,
        predictor=predictor,
        strategy=strategy,
        score=score,
        horizon=horizon,
        source_accuracy=source_accuracy,
        execution=execution,
    )
    config, horizon, execution = (
        config or FinetuneConfig(),
        horizon or Horizon(),
        execution or Execution(),
    )
    chosen = make_strategy(strategy)
    names = candidate_names(models)  # nn.Modules and factories -> obj:<name>
    check_models(names)
    if isinstance(source_accuracy, (str, Path)):
        source_accuracy = read_file(source_accuracy)
    given = check_source_accuracy(source_accuracy, names)
    predictor = predictor or PredictorSettings()
    _check_predictor(predictor, config)
    ctx = _preflight(names, chosen, out_dir, execution)  # before the data is loaded
    dataset = data if isinstance(data, ImageDataset) else load_dataset(str(data), seed=config.seed)
    spec = RunSpec(
        tuple(names),
        dataset,
        config=config,
        predictor=predictor,
        full_epochs=horizon.full_epochs,
        target_epochs=horizon.target_epochs,
        score=score,
        source_accuracy=given,
    )
    with directory_lock(ctx.out_dir):
        return chosen.run(spec, ctx)


def run_ranking(
    spec: RunSpec,
    strategy: str | Strategy | None = None,
    *,
    out_dir: str | Path,
    execution: Execution | None = None,
) -> RankResult:
    """Run ``spec`` with ``strategy`` (default :class:`~ncap.ranking.strategies.Fixed`) into
    ``out_dir``, holding its lock; the checks that would fail every candidate come first.

    The advanced path: a :class:`~ncap.ranking.spec.RunSpec` carries what :func:`rank` does not
    take (``model_options`` for every ``create_backbone`` call, ``extra_settings`` recorded and
    compared on resume), as the NAS search and the benchmark use them.
    """
    chosen = make_strategy(strategy)
    _check_predictor(spec.predictor, spec.config)
    ctx = _preflight(list(spec.models), chosen, out_dir, execution or Execution())
    with directory_lock(ctx.out_dir):
        return chosen.run(spec, ctx)


def _preflight(
    models: Sequence[str], strategy: Strategy, out_dir: str | Path, execution: Execution
) -> RunContext:
    """The checks of the run's frame, before any data is loaded or any candidate runs."""
    ctx = execution.context(
        check_output_dir(out_dir, resume=execution.resume, overwrite=execution.overwrite)
    )
    check_strategy(ctx.out_dir, strategy.name, resume=ctx.resume)
    if ctx.executor.name != "local" and any(m.startswith(f"{OBJECT_PREFIX}:") for m in models):
        raise ConfigError(
            "candidates given as Python objects run in this process only; use executor='local', "
            "or name them as py:<module>:<factory> for Ray."
        )
    if ctx.executor.name == "local":  # (Ray workers may have GPUs this process lacks)
        ctx.runtime.torch_device()  # an unavailable device fails now, not once per candidate
    return ctx


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
