"""Every run's scores at every budget: the table the study's cell-level steps read.

For each scored run ``(target, model, seed)`` and budget ``f`` it holds every per-run score
(:func:`ncap.predict.scores.run_score`, dynamics raw, i.e. unoriented) and the base features of
the fitted models (D2). Computed once, in parallel over runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ncap.bench.evaluate import _budget_step, baseline_context, final_accuracy, unpack_results
from ncap.bench.study.candidates import current_default
from ncap.exceptions import ConfigError
from ncap.predict.features import base_features, logit
from ncap.predict.scores import (
    DynamicsFeature,
    RunScore,
    parse_score,
    score_names,
    try_parse_score,
)

__all__ = ["ScoreTable", "build_table", "logit", "names_needed", "run_features"]


@dataclass
class ScoreTable:
    """Scores of the runs of ``seeds`` at ``budgets``; arrays follow the order of ``models``.

    ``value[(name, f, target, seed)]``: the scores (NaN = failed); ``predicted``, ``sd``,
    ``link_mean``, ``link_sd`` the same for the scores that predict an accuracy (A fills all
    four; last-observed and learning-curve fill ``predicted``); ``feature[(name, f, t, s)]``: the
    D2 base features; ``final[(t, m, s)]``: every run's final accuracy (all seeds);
    ``reasons[(name, f)]``: failure reasons seen, with counts.
    """

    targets: list[str]
    models: list[str]
    seeds: list[int]
    budgets: list[float]
    total_epochs: float
    final: dict[tuple[str, str, int], float]
    names: list[str]
    value: dict[tuple[str, float, str, int], np.ndarray] = field(default_factory=dict)
    predicted: dict[tuple[str, float, str, int], np.ndarray] = field(default_factory=dict)
    sd: dict[tuple[str, float, str, int], np.ndarray] = field(default_factory=dict)
    link_mean: dict[tuple[str, float, str, int], np.ndarray] = field(default_factory=dict)
    link_sd: dict[tuple[str, float, str, int], np.ndarray] = field(default_factory=dict)
    feature: dict[tuple[str, float, str, int], np.ndarray] = field(default_factory=dict)
    reasons: dict[tuple[str, float], dict[str, int]] = field(default_factory=dict)

    def truth(self, target: str, seed: int) -> np.ndarray:
        """The final accuracies of ``target``'s runs of ``seed`` (NaN where a run is missing)."""
        return np.array([self.final.get((target, m, seed), np.nan) for m in self.models])

    def subset(self, rows: Sequence[int] | np.ndarray) -> ScoreTable:
        """The same table restricted to the models ``rows`` (indices into ``models``, in that
        order; a repeated index is a repeated model, as in a bootstrap draw)."""
        idx = np.asarray(rows, dtype=np.intp)

        def take(store: dict) -> dict:
            return {k: v[idx] for k, v in store.items()}

        return replace(
            self,
            models=[self.models[i] for i in idx],
            value=take(self.value),
            predicted=take(self.predicted),
            sd=take(self.sd),
            link_mean=take(self.link_mean),
            link_sd=take(self.link_sd),
            feature=take(self.feature),
        )


def run_features(
    points: Sequence[dict[str, Any]],
    max_step: int,
    free: dict[str, Any],
    scores: dict[str, RunScore],
    measurements: Sequence[str],
) -> dict[str, float]:
    """The D2 features of one run at one budget (NaN where undefined): the base features
    (:func:`ncap.predict.features.base_features`) and ``nc-gain/{measurement}``."""
    out = base_features(
        points,
        max_step,
        free,
        last_observed=scores["last-observed"].value,
        tse_e1=scores["tse-e1"].value,
    )
    for m in measurements:
        if current_default(m) not in scores:  # a table of fewer scores (build_table's names)
            continue
        pred = scores[current_default(m)].value
        out[f"nc-gain/{m}"] = float(logit(pred)) - out["lo"] if pred is not None else float("nan")
    return out


def _score_run_job(job) -> dict[float, tuple[dict[str, RunScore], dict[str, float]]]:
    run, free, total_epochs, budgets, names, measurements = job
    context = baseline_context(run, free, total_epochs) | {"logme": free.get("logme")}
    out = {}
    for f in budgets:
        max_step = _budget_step(run, total_epochs, f)
        points = [p for p in run["points"] if p["step"] <= max_step]
        scores = {n: parse_score(n).score(points, max_step, context) for n in names}
        out[f] = (scores, run_features(points, max_step, free, scores, measurements))
    return out


def names_needed(cands: Sequence[Any], measurements: Sequence[str]) -> list[str]:
    """The per-run scores a table must hold for ``cands`` (study candidates): their own names,
    their rank-average components, their fitted models' ``dyn/`` features, and the scores the
    base features read (last-observed, tse-e1, the pre-study default per measurement)."""
    names = ["last-observed", "tse-e1", *(current_default(m) for m in measurements)]
    for c in cands:
        if c.kind == "run":
            names.append(c.name)
        names += list(c.components)
        names += [f for f in c.features if isinstance(try_parse_score(f), DynamicsFeature)]
    return list(dict.fromkeys(names))


def measurements_of(results: dict[str, Any]) -> tuple[str, ...]:
    """``("interval", "fixed")`` when the runs carry the fixed-batch measurement, else interval."""
    first = results["runs"][0]["points"][0]
    return ("interval", "fixed") if "beta_eff_fixed" in first else ("interval",)


def build_table(
    results: dict[str, Any],
    *,
    seeds: Sequence[int],
    budgets: Sequence[float],
    workers: int | None = None,
    progress=None,
    names: Sequence[str] | None = None,
) -> ScoreTable:
    """Score the runs of ``seeds`` (every model and target) at every budget: every per-run score,
    or only ``names`` (the base features need ``last-observed`` and ``tse-e1``)."""
    all_seeds, total_epochs, models, targets, runs = unpack_results(results)
    measurements = measurements_of(results)
    names = list(dict.fromkeys(names)) if names is not None else score_names(measurements)
    missing = [n for n in ("last-observed", "tse-e1") if n not in names]
    if missing:
        raise ConfigError(
            f"the score table needs {missing} for the fitted models' base features; add them to "
            "names (ncap.bench.study.table.names_needed lists what candidates need)."
        )
    table = ScoreTable(
        targets=targets,
        models=models,
        seeds=list(seeds),
        budgets=list(budgets),
        total_epochs=total_epochs,
        final={k: final_accuracy(r) for k, r in runs.items()},
        names=names,
    )
    keys = [(t, m, s) for t in targets for s in seeds for m in models if (t, m, s) in runs]
    jobs = [
        (runs[k], results["training_free"][k[0]][k[1]], total_epochs, tuple(budgets), names,
         measurements)
        for k in keys
    ]  # fmt: skip
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        scored = map(_score_run_job, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        scored = pool.map(_score_run_job, jobs, chunksize=2)
    done: dict[tuple[str, str, int], Any] = {}
    for i, (key, result) in enumerate(zip(keys, scored)):
        done[key] = result
        if progress is not None:
            progress(i + 1, len(keys))
    if workers != 1:
        pool.shutdown()
    index = {m: i for i, m in enumerate(models)}
    nan = np.full(len(models), np.nan)
    for t in targets:
        for s in seeds:
            for f in budgets:
                for n in names:
                    for store in ("value", "predicted", "sd", "link_mean", "link_sd"):
                        getattr(table, store)[(n, f, t, s)] = nan.copy()
                for (tt, m, ss), result in done.items():
                    if (tt, ss) != (t, s):
                        continue
                    scores, features = result[f]
                    i = index[m]
                    for n, sc in scores.items():
                        key = (n, f, t, s)
                        if sc.value is None:
                            reasons = table.reasons.setdefault((n, f), {})
                            reason = (sc.reason or "unknown")[:160]
                            reasons[reason] = reasons.get(reason, 0) + 1
                            continue
                        table.value[key][i] = sc.value
                        for store in ("predicted", "sd", "link_mean", "link_sd"):
                            v = getattr(sc, store)
                            if v is not None:
                                getattr(table, store)[key][i] = v
                    for fname, v in features.items():
                        table.feature.setdefault((fname, f, t, s), nan.copy())[i] = v
    return table
