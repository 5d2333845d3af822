"""How a ranking spends its compute: the strategies behind :func:`ncap.ranking.rank.run_ranking`.

A strategy takes a :class:`~ncap.ranking.spec.RunSpec` and a :class:`~ncap.ranking.spec.RunContext`
and returns a :class:`~ncap.results.RankResult`, as an optuna pruner decides what a trial gets:

- :class:`Fixed`: every candidate gets the budget ``config.epochs``, then the score ranks them;
- :class:`Halving`: successive halving (:mod:`ncap.ranking.halving`; the pure schedule is
  :mod:`ncap.ranking.halving_core`), whose maximum budget defaults to ``config.epochs``.

A new strategy is a class with ``name`` and ``run(spec, ctx)``; :func:`make_strategy` builds the
named ones.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ncap._version import __version__
from ncap.exceptions import ConfigError
from ncap.predict.caveats import demote_at_chance, separation
from ncap.predict.recommended import Score, resolve_score, run_parts
from ncap.predict.scores import PROXY_SCORES, Extrapolation, Proxy, untracked_reason
from ncap.ranking.cost import run_cost, spent_steps
from ncap.ranking.halving import HalvingSettings, run_halving
from ncap.ranking.jobs import CandidateJob
from ncap.ranking.preflight import builtin_fit_problems, check_budget, check_burn_in, clear_outputs
from ncap.ranking.scoring import (
    add_predictions,
    assumed_note,
    budget_fraction,
    score_candidates,
    separation_note,
    target_or_assumed,
    trust_of,
)
from ncap.ranking.source_accuracy import require_reader, source_accuracy_summary
from ncap.ranking.spec import RunContext, RunSpec
from ncap.ranking.store import candidate_path, load_finished, stale_files
from ncap.report import write_outputs
from ncap.report.progress import progress_bars
from ncap.results import RankResult, failed_record
from ncap.storage import atomic_write_json, to_jsonable
from ncap.training.config import FinetuneConfig

__all__ = ["STRATEGIES", "Fixed", "Halving", "Strategy", "make_strategy"]

STRATEGIES = ("fixed", "halving")


class Strategy(Protocol):
    """Runs a spec in a context and returns the ranking."""

    name: str

    def run(self, spec: RunSpec, ctx: RunContext) -> RankResult: ...


def make_strategy(strategy: str | Strategy | None) -> Strategy:
    """The strategy ``strategy`` names ("fixed", or "halving" with the default
    :class:`~ncap.ranking.halving.HalvingSettings`); a strategy object is returned as it is,
    None is :class:`Fixed`.

    >>> make_strategy("halving").settings.eta
    2.0
    >>> make_strategy("grid")
    Traceback (most recent call last):
    ...
    ncap.exceptions.ConfigError: unknown strategy 'grid'; choose one of ('fixed', 'halving'), or pass a strategy object (ncap.ranking.strategies: Fixed(), Halving(HalvingSettings(...))).
    """
    if strategy is None or strategy == "fixed":
        return Fixed()
    if strategy == "halving":
        return Halving()
    if isinstance(strategy, str) or not callable(getattr(strategy, "run", None)):
        raise ConfigError(
            f"unknown strategy {strategy!r}; choose one of {STRATEGIES}, or pass a strategy "
            "object (ncap.ranking.strategies: Fixed(), Halving(HalvingSettings(...)))."
        )
    return strategy


def environment() -> dict[str, Any]:
    """The software and machine a run is recorded with."""
    return {
        "ncap": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def _check_score_variants(score: Score, config: FinetuneConfig) -> None:
    """Refuse, before training, a score that reads a beta_eff variant the runs will not record."""
    for part in run_parts(score):
        if part.reads is None:
            continue
        measurement, variant = part.reads
        if measurement == "fixed":
            recorded = config.fixed_batch is not None and variant not in config.variants
        else:
            recorded = variant in config.variants or (
                isinstance(part, Extrapolation) and config.fixed_batch is not None
            )
        if not recorded:
            raise ConfigError(
                f"the score {part.name!r} cannot be computed: " + untracked_reason(*part.reads)
            )


@dataclass(frozen=True)
class Halving:
    """Successive halving with ``settings`` (:class:`~ncap.ranking.halving.HalvingSettings`)."""

    settings: HalvingSettings = field(default_factory=HalvingSettings)
    name: str = "halving"

    def __post_init__(self) -> None:
        if not isinstance(self.settings, HalvingSettings):
            raise ConfigError(
                f"Halving takes an ncap.HalvingSettings (eta, min_budget, max_budget, score); got "
                f"{self.settings!r}."
            )
        if self.settings.score in PROXY_SCORES:
            raise ConfigError(
                f"successive halving cannot cut by the zero-cost proxy {self.settings.score!r}: "
                "it does not change with training; rank by it with the fixed strategy (it needs "
                "no training at all)."
            )

    def run(self, spec: RunSpec, ctx: RunContext) -> RankResult:
        return run_halving(
            spec,
            self.settings,
            ctx,
            environment={
                "environment": environment(),
                "runtime": ctx.runtime.to_dict() | ctx.executor.describe(),
            },
        )


@dataclass(frozen=True)
class Fixed:
    """Every candidate gets the budget; the score ranks them."""

    name: str = "fixed"

    def run(self, spec: RunSpec, ctx: RunContext) -> RankResult:
        return _run_fixed(spec, ctx)


def _run_fixed(spec: RunSpec, ctx: RunContext) -> RankResult:
    config, models, log, out_dir = spec.config, spec.models, ctx.log, ctx.out_dir
    dataset, predictor = spec.dataset, spec.predictor
    n_seen = len(dataset.y_train)
    budget_steps = config.total_steps(n_seen)
    spe = config.steps_per_epoch(n_seen)
    for epochs, flag in (
        (spec.full_epochs, "--full-epochs"),
        (spec.target_epochs, "--target-epochs"),
    ):
        if epochs is not None and epochs * spe < budget_steps:
            raise ConfigError(
                f"the full budget T ({epochs:g} epochs, {flag}) must cover the early budget "
                f"({budget_steps} steps = {budget_steps / spe:.3g} epochs)."
            )
    reference, assumed = target_or_assumed(
        spec.target_epochs, spec.full_epochs, budget_steps / spe
    )  # T
    fraction = budget_fraction(budget_steps, spe, reference)
    score_spec, score_note = resolve_score(spec.score, fraction)  # a bad name fails before training
    given = spec.source_accuracy
    require_reader(given, [score_spec.name], "source_accuracy" in score_spec.training_free)
    for part in run_parts(score_spec):  # a score that ranks by an extrapolation
        if isinstance(part, Extrapolation):
            check_budget(config, part.settings, n_seen)
    _check_score_variants(score_spec, config)
    check_burn_in(config, predictor, n_seen)
    settings = spec.settings()
    unfit = builtin_fit_problems(models, dataset, input_size=config.input_size)
    if len(unfit) == len(models):
        raise ConfigError("no candidate can take this dataset: " + " ".join(unfit.values()))
    if ctx.overwrite:
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
    with progress_bars(ctx.progress, len(models), log=log) as bars:
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
        job = CandidateJob(dataset, config, predictor, spec.full_epochs, ctx.runtime,
                           spec.model_options, logme="logme" in score_spec.training_free,
                           proxies=tuple(p.name for p in run_parts(score_spec)
                                         if isinstance(p, Proxy)))  # fmt: skip
        for record in ctx.executor.run(
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
        source_accuracy=given,
    )
    ranked = [records[name] for name in models]
    add_predictions(ranked, predictor, fraction, classes=dataset.num_classes,
                    budget_steps=budget_steps)  # fmt: skip
    order = demote_at_chance(order, records)
    verdict = separation([records[name] for name in order if records[name]["status"] == "ok"])
    separation_note(verdict, records, reference)
    trust = trust_of([records[name] for name in order if records[name]["status"] == "ok"], fraction)
    recorded: dict[str, Any] = {}
    if given:
        recorded, given_note = source_accuracy_summary(given, [records[n] for n in models])
        notes.append(given_note)
    if score_note:
        notes.insert(0, score_note)
    if assumed:
        notes.insert(0, assumed_note(reference, fraction))
    for note in notes if log else ():
        log(f"note: {note}")
    result = RankResult(
        candidates=[records[name] for name in models],
        settings=settings
        | ({"source_accuracy": recorded} if recorded else {})
        | {
            "environment": environment(),
            "runtime": ctx.runtime.to_dict() | ctx.executor.describe(),
            "score": {
                "name": score_spec.name,
                "requested": spec.score or "recommended",
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
