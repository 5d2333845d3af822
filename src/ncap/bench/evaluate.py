"""Evaluate every ranking method on a benchmark results file, honestly.

Protocol
--------
- **Truth.** A run's true final accuracy is its validation accuracy averaged over the last epoch of
  the full budget ``T``. A method's scores from the runs of seed ``s`` are compared with the truth
  of the *other* seeds (their mean), so that no method shares noise with its truth, and the noise
  ceiling, the agreement between two seeds' truths, bounds what any method can reach.
- **Budgets.** Early budgets are fractions of ``T`` (2.5, 5, 10, 20%); a method may use the points
  with ``step <= fraction * T * steps_per_epoch``. Training-free methods ignore the budget.
- **Selection without self-tuning.** Every neural-capacitance setting (variant x feature map x
  burn-in x link) is scored. The default is the setting with the best mean Kendall tau on the
  *selection half* (the runs of the first seed); every figure reported for comparison comes from the
  *report half* (the runs of the other seeds), on which nothing was chosen.
- **Failures count.** A method that cannot score a run (too few points, every curve fit failed)
  ranks that model last, and the number of such failures is reported.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ncap.bench.schema import load_results_file
from ncap.capacitance.variants import VARIANTS
from ncap.exceptions import ConfigError
from ncap.metrics import RANK_METRICS, ranking_metrics
from ncap.predict.baselines import BASELINES
from ncap.predict.capacitance import FEATURE_MAPS, LINKS, PredictorSettings, predict_from_points
from ncap.predict.scores import Extrapolation, try_parse_score
from ncap.storage import atomic_write_json, atomic_write_text

__all__ = ["BUDGETS", "evaluate_results", "nc_grid", "unpack_results", "write_report"]

BUDGETS = (0.025, 0.05, 0.1, 0.2)
BURN_INS = (0, 1, 2)
SAME_BUDGET = ("last-observed", "learning-curve", "tse", "tse-e1")
PREDICTS_ACCURACY = {"last-observed", "learning-curve"}
# the paper's reading: P itself, accuracy linear in beta_eff, no burn-in, no link
PAPER_FORM = PredictorSettings(variant="signed", features="linear", burn_in=0, link="identity")
CURVE_STARTS = 3  # starting points per curve family (of 9): see ncap.predict.curves.fit_curve


def nc_grid() -> list[PredictorSettings]:
    """Every neural-capacitance setting the benchmark evaluates."""
    return [
        PredictorSettings(variant=v, features=f, burn_in=b, link=lk)
        for v, f, b, lk in itertools.product(VARIANTS, FEATURE_MAPS, BURN_INS, LINKS)
    ]


def nc_name(s: PredictorSettings) -> str:
    """The legacy report's name of an extrapolation (:attr:`Extrapolation.legacy_name`)."""
    return Extrapolation(s).legacy_name


def is_extrapolation(method: str) -> bool:
    """Whether a legacy report's method is an extrapolation to beta_eff = 0."""
    return isinstance(try_parse_score(method, legacy=True), Extrapolation)


def unpack_results(
    results: dict[str, Any],
) -> tuple[list[int], float, list[str], list[str], dict[tuple[str, str, int], dict[str, Any]]]:
    """A results file's seeds, full budget T (epochs), models, target keys and runs by key."""
    plan = results["plan"]
    runs = {(r["target"], r["model"], r["seed"]): r for r in results["runs"]}
    targets = [t["key"] for t in plan["targets"]]
    return list(plan["seeds"]), float(plan["epochs"]), list(plan["models"]), targets, runs


def final_accuracy(run: dict[str, Any]) -> float:
    """Validation accuracy averaged over the points of the last epoch of the run."""
    last_epoch = run["points"][-1]["epoch"]
    tail = [p["val_accuracy"] for p in run["points"] if p["epoch"] > last_epoch - 1.0 + 1e-9]
    return float(np.mean(tail))


def _budget_step(run: dict[str, Any], total_epochs: float, fraction: float) -> int:
    return int(round(fraction * total_epochs * run["steps_per_epoch"]))


def baseline_context(
    run: dict[str, Any], free: dict[str, Any], total_epochs: float
) -> dict[str, Any]:
    """What the same-budget and training-free baselines need besides the points of a run."""
    return {
        "steps_per_epoch": run["steps_per_epoch"],
        "target_epoch": total_epochs,
        "curve_starts": CURVE_STARTS,
        "parameters": free.get("parameters"),
        "source_accuracy": free.get("source_accuracy"),
    }


def score_run(
    run: dict[str, Any], free: dict[str, Any], total_epochs: float, fraction: float
) -> dict[str, tuple[float | None, str | None]]:
    """Every method's score for one run at one budget: ``{method: (score or None, reason)}``."""
    max_step = _budget_step(run, total_epochs, fraction)
    points = [p for p in run["points"] if p["step"] <= max_step]
    scores: dict[str, tuple[float | None, str | None]] = {}
    for settings in nc_grid():
        try:
            pred = predict_from_points(points, settings, max_step)["predicted_accuracy"]
            scores[nc_name(settings)] = (pred, None)
        except ValueError as err:
            scores[nc_name(settings)] = (None, str(err).split(";")[0])
    context = baseline_context(run, free, total_epochs)
    free_baselines = ("param-count",) + (("source-accuracy",) if "source_accuracy" in free else ())
    for name in SAME_BUDGET + free_baselines:
        if not points and name in SAME_BUDGET:
            scores[name] = (None, "no evaluation point within the budget")
            continue
        try:
            value, info = BASELINES[name](points, max_step, context)
        except ValueError as err:
            value, info = None, {"reason": str(err)}
        reason = None if value is not None else str(info.get("reason") or info.get("failures"))
        scores[name] = (value, reason)
    if "logme" in free:
        scores["logme"] = (free["logme"], None)
    for proxy, value in (free.get("proxies") or {}).items():  # zero-cost NAS proxies
        if proxy == "param_count":  # the same number as the "param-count" baseline
            continue
        reason = (free.get("proxy_failures") or {}).get(proxy)
        scores[proxy] = (value, reason)
    return scores


def _score_budgets(job) -> dict[float, dict[str, tuple[float | None, str | None]]]:
    run, free, total_epochs, budgets = job
    return {f: score_run(run, free, total_epochs, f) for f in budgets}


def evaluate_results(
    results: dict[str, Any], *, budgets: Sequence[float] = BUDGETS, workers: int | None = None
) -> dict[str, Any]:
    """Score every method at every budget and summarise ranking quality (see module docstring).

    With two or more seeds for every (target, model) the *seed protocol* applies: scores of seed
    ``s`` are compared with the other seeds' final accuracy; the first seed is the selection half.
    When only some models have a second seed (the NAS benchmark), the *model protocol* applies:
    scores and truth come from the first seed's runs, the models are split into two interleaved
    halves (selection: even positions, report: odd positions), and the noise ceiling is measured
    on the models that have two seeds.
    """
    start = time.perf_counter()
    seeds, total_epochs, models, targets, runs = unpack_results(results)
    final = {key: final_accuracy(run) for key, run in runs.items()}
    seeds_of = {(t, m): [s for s in seeds if (t, m, s) in runs] for t in targets for m in models}
    twice = {t: [m for m in models if len(seeds_of[(t, m)]) >= 2] for t in targets}
    if not any(twice.values()):
        raise ConfigError(
            "the benchmark needs a second seed for at least some (target, model) pairs to measure "
            "the noise ceiling; build it with 2 seeds."
        )
    seed_protocol = all(len(v) >= 2 for v in seeds_of.values())

    scores: dict[tuple[str, float, str, int], dict[str, float | None]] = {}
    failures: dict[tuple[str, float], int] = {}
    score_seeds = seeds if seed_protocol else seeds[:1]
    keys = [(t, m, s) for t in targets for s in score_seeds for m in models]
    jobs = [(runs[k], results["training_free"][k[0]][k[1]], total_epochs, budgets) for k in keys]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        scored = dict(zip(keys, pool.map(_score_budgets, jobs, chunksize=4)))
    for target, seed, fraction in itertools.product(targets, score_seeds, budgets):
        per_model = {m: scored[(target, m, seed)][fraction] for m in models}
        for method in next(iter(per_model.values())):
            values = {m: per_model[m][method][0] for m in models}
            scores[(method, fraction, target, seed)] = values
            failures[(method, fraction)] = failures.get((method, fraction), 0) + sum(
                v is None for v in values.values()
            )
    methods = sorted({k[0] for k in scores})

    # a "cell" is one ranking problem: (target, seed whose runs are scored, models, their truth)
    def truth(target: str, model: str, seed: int) -> float:
        if not seed_protocol:
            return final[(target, model, seed)]
        return float(np.mean([final[(target, model, s)] for s in seeds if s != seed]))

    if seed_protocol:
        halves = {
            "selection": [(t, seeds[0], models) for t in targets],
            "report": [(t, s, models) for t in targets for s in seeds[1:]],
        }
        split = {"selection": {"seeds": seeds[:1]}, "report": {"seeds": seeds[1:]}}
    else:
        halves = {
            "selection": [(t, seeds[0], models[0::2]) for t in targets],
            "report": [(t, seeds[0], models[1::2]) for t in targets],
        }
        split = {"selection": {"models": models[0::2]}, "report": {"models": models[1::2]}}

    def metrics_for(method: str, fraction: float, cells) -> dict[str, Any]:
        per = [
            (
                t,
                ranking_metrics(
                    [scores[(method, fraction, t, s)][m] for m in subset],
                    [truth(t, m, s) for m in subset],
                    predicts_accuracy=is_extrapolation(method) or method in PREDICTS_ACCURACY,
                ),
            )
            for t, s, subset in cells
        ]
        by_target = {
            t: {k: _mean([r[k] for tt, r in per if tt == t]) for k in RANK_METRICS} for t in targets
        }
        mean = {k: _mean([by_target[t][k] for t in targets]) for k in RANK_METRICS}
        return {"mean": mean, "by_target": by_target}

    selection = {
        m: {str(f): metrics_for(m, f, halves["selection"]) for f in budgets} for m in methods
    }
    report = {m: {str(f): metrics_for(m, f, halves["report"]) for f in budgets} for m in methods}
    nc_methods = [m for m in methods if is_extrapolation(m)]

    def selection_score(m: str) -> float:
        taus = [selection[m][str(f)]["mean"]["kendall"] for f in budgets]
        return float(np.mean([t if t is not None else -1.0 for t in taus]))

    chosen = max(nc_methods, key=lambda m: (selection_score(m), m == nc_name(PredictorSettings())))
    ceiling = {}
    for t in targets:
        pairs = [
            ranking_metrics(
                [final[(t, m, a)] for m in twice[t]], [final[(t, m, b)] for m in twice[t]],
                predicts_accuracy=True,
            )
            for a, b in itertools.permutations(seeds[:2], 2)
        ]  # fmt: skip
        ceiling[t] = {k: _mean([p[k] for p in pairs]) for k in RANK_METRICS}
        ceiling[t]["n_models"] = len(twice[t])
    ceiling_mean = {k: _mean([ceiling[t][k] for t in targets]) for k in RANK_METRICS}
    return {
        "protocol": "seeds" if seed_protocol else "models",
        "protocol_text": __doc__,
        "budgets": list(budgets),
        "total_epochs": total_epochs,
        "models": models,
        "targets": targets,
        "split": split,
        "chosen_default": chosen,
        "chosen_selection_kendall": selection_score(chosen),
        "paper_form": nc_name(PAPER_FORM),
        "selection": selection,
        "report": report,
        "failures": {f"{m}@{f}": n for (m, f), n in failures.items() if n},
        "noise_ceiling": {"mean": ceiling_mean, "by_target": ceiling},
        "final_accuracy": {f"{t}/{m}/s{s}": v for (t, m, s), v in final.items()},
        "seconds": time.perf_counter() - start,
    }


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:+.{digits}f}" if digits == 3 else f"{v:.{digits}f}"


def _describe(split: dict[str, Any]) -> str:
    if "seeds" in split:
        return f"seeds {split['seeds']}"
    return f"{len(split['models'])} models"


def headline_methods(evaluation: dict[str, Any]) -> list[str]:
    """The chosen default, the paper's form, the same-budget and the training-free baselines."""
    chosen, paper = evaluation["chosen_default"], evaluation["paper_form"]
    free = sorted(
        m for m in evaluation["report"] if not is_extrapolation(m) and m not in SAME_BUDGET
    )
    return [chosen] + ([paper] if paper != chosen else []) + list(SAME_BUDGET) + free


def write_report(evaluation: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """report.md, evaluation.json and tau_vs_budget.png in ``out_dir``."""
    out = Path(out_dir)
    budgets = evaluation["budgets"]
    methods = headline_methods(evaluation)
    ceiling = evaluation["noise_ceiling"]["mean"]
    lines = [
        "# ncap benchmark evaluation",
        "",
        f"Models: {len(evaluation['models'])}; targets: {', '.join(evaluation['targets'])}; "
        f"full budget T = {evaluation['total_epochs']:g} epochs; protocol: "
        f"{evaluation['protocol']} (see docs/benchmark.md). Figures are means over targets on the "
        f"report half ({_describe(evaluation['split']['report'])}); the neural-capacitance "
        f"default `{evaluation['chosen_default']}` was chosen on the selection half "
        f"({_describe(evaluation['split']['selection'])}, mean Kendall tau over budgets "
        f"{evaluation['chosen_selection_kendall']:+.3f}, a failure counting as -1).",
        "",
        f"Noise ceiling (two seeds of full fine-tuning): Kendall {_fmt(ceiling['kendall'])}, "
        f"weighted tau {_fmt(ceiling['weighted_tau'])}, Spearman {_fmt(ceiling['spearman'])}, "
        f"Pearson {_fmt(ceiling['pearson'])}, top-1 regret {_fmt(ceiling['top1_regret'], 2)} points.",
        "",
    ]
    for metric, title in (("kendall", "Kendall tau"), ("weighted_tau", "Weighted tau"),
                          ("spearman", "Spearman"), ("pearson", "Pearson"),
                          ("top1_regret", "Top-1 regret (accuracy points, lower is better)"),
                          ("top3_regret", "Top-3 regret: best of the method's 3 favourites (points)"),
                          ("mae", "Mean absolute error of predicted accuracy (points)")):  # fmt: skip
        digits = 2 if metric in ("top1_regret", "top3_regret", "mae") else 3
        lines += [f"## {title}", "", "| method | " + " | ".join(f"{100 * b:g}% of T" for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]  # fmt: skip
        for m in methods:
            row = [_fmt(evaluation["report"][m][str(b)]["mean"][metric], digits) for b in budgets]
            if all(r == "–" for r in row):
                continue
            lines.append(f"| `{m}` | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Kendall tau per target at 10% of T", "", "| method | " + " | ".join(evaluation["targets"]) + " |",
              "|---|" + "---|" * len(evaluation["targets"])]  # fmt: skip
    for m in methods:
        by = (
            evaluation["report"][m]["0.1"]["by_target"]
            if "0.1" in evaluation["report"][m]
            else None
        )
        if by:
            lines.append(
                f"| `{m}` | "
                + " | ".join(_fmt(by[t]["kendall"]) for t in evaluation["targets"])
                + " |"
            )
    lines.append("| noise ceiling | " + " | ".join(
        _fmt(evaluation["noise_ceiling"]["by_target"][t]["kendall"]) for t in evaluation["targets"]) + " |")  # fmt: skip
    lines += ["", "## Every neural-capacitance setting on the selection half (mean Kendall tau)", "",
              "| setting | " + " | ".join(f"{100 * b:g}%" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]  # fmt: skip
    for m in sorted(k for k in evaluation["selection"] if is_extrapolation(k)):
        row = [_fmt(evaluation["selection"][m][str(b)]["mean"]["kendall"]) for b in budgets]
        lines.append(f"| `{m}` | " + " | ".join(row) + " |")
    if evaluation["failures"]:
        lines += ["", "## Runs a method could not score (ranked last)", ""]
        lines += [
            f"- `{k}`: {v}"
            for k, v in sorted(evaluation["failures"].items())
            if not is_extrapolation(k.split("@")[0]) or k.split("@")[0] in methods
        ]
    files = {
        "markdown": atomic_write_text("\n".join(lines) + "\n", out / "report.md"),
        "json": atomic_write_json(evaluation, out / "evaluation.json"),
        "plot": plot_tau_vs_budget(evaluation, out / "tau_vs_budget.png"),
    }
    return files


def plot_tau_vs_budget(evaluation: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure  # lazy: matplotlib, only to draw a plot

    budgets = evaluation["budgets"]
    # the Figure API: no pyplot, the user's matplotlib backend is left alone
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    for m in headline_methods(evaluation):
        taus = [evaluation["report"][m][str(b)]["mean"]["kendall"] for b in budgets]
        xs = [100 * b for b, t in zip(budgets, taus) if t is not None]
        ys = [t for t in taus if t is not None]
        style = "-o" if is_extrapolation(m) else ("--s" if m in SAME_BUDGET else ":^")
        ax.plot(xs, ys, style, ms=4, label=m, lw=2.2 if m == evaluation["chosen_default"] else 1.2)
    ceiling = evaluation["noise_ceiling"]["mean"]["kendall"]
    if ceiling is not None:
        ax.axhline(ceiling, color="black", lw=1, label=f"noise ceiling ({ceiling:.2f})")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks([100 * b for b in budgets], [f"{100 * b:g}%" for b in budgets])
    ax.set_xlabel("early budget (% of the full fine-tuning budget T)")
    ax.set_ylabel("Kendall tau vs true final accuracy")
    ax.set_title("Ranking quality against budget (report half, mean over targets)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def load(path: str | Path) -> dict[str, Any]:
    """A benchmark results file, its shape checked (:mod:`ncap.bench.schema`)."""
    return load_results_file(path)
