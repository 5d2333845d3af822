"""Q4 of the bench-v3 protocol (docs/benchmark-v3-protocol.md, section 4): choose ``ncap nas``'s
ranking score on ncap's NAS benchmark (``benchmarks/results/nas-v1.json``).

Exactly as pre-registered:

- candidates: ``last-observed`` (LO), ``tse``, ``tse-e1``, each zero-cost proxy the file records
  (as recorded: higher is better), the 36 interval extrapolations ``nc/interval/...`` and
  ``fit/portable-nologme`` (Bayesian ridge on LO, its slope and TSE-E1, response
  ``logit(final) - LO``, fitted leave-one-architecture-out on the same half);
- truth: the run's own final accuracy (seed 0; only 20 architectures have a second seed);
- halves: ``numpy.random.default_rng(28).permutation`` of the plan's architectures, the first half
  selection, the second report;
- selection: mean Kendall tau-b over the budgets 2.5, 5, 10, 20% of T on the selection half (a
  failed run ranks last; all failed counts -1, a constant score 0), the lowest simplicity level
  within delta = 0.03 of the best (ties: higher score, then name);
- decision: the winner is the default unless its report-half Kendall interval (models bootstrap,
  2000 paired draws, percentile 95%) lies below LO's (its upper bound under LO's lower bound);
  otherwise LO.

Not fixed by the protocol, chosen here before running: the models bootstrap draws come from
``default_rng(26)`` (the protocol's model seed of its two-way bootstrap); the simplicity levels are
those of section 2 (0: LO and param_count, the same number as ``param-count``; 1: every other single
score, ``flops`` included; 4: the fitted model); the report half's metric is, like the selection's,
the mean Kendall over the four budgets (the per-budget values are reported too).

    PYTHONPATH=src python benchmarks/nas_default.py [--results benchmarks/results/nas-v1.json]
        [--out benchmarks/results/nas-v1-q4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from ncap.bench.evaluate import _budget_step, baseline_context, final_accuracy, unpack_results
from ncap.bench.stats import percentile_interval
from ncap.bench.study.bootstrap import draw_counts, fill_failures, kendall_boot
from ncap.capacitance.variants import VARIANTS
from ncap.predict.features import base_features, logit
from ncap.predict.fitted import FittedGain
from ncap.predict.scores import BURN_INS, nc_name, run_score
from ncap.predict.settings import FEATURE_MAPS, LINKS, PredictorSettings

BUDGETS = (0.025, 0.05, 0.1, 0.2)
DELTA = 0.03
HALVES_SEED, MODEL_SEED, REPLICATES = 28, 26, 2000
FIT = "fit/portable-nologme"
FIT_FEATURES = ("lo", "lo_slope", "tse_e1")
RUN_SCORES = ("last-observed", "tse", "tse-e1")


def extrapolations() -> list[str]:
    return [
        nc_name(
            PredictorSettings(variant=v, features=f, burn_in=b, link=lk, measurement="interval")
        )
        for v in VARIANTS
        for f in FEATURE_MAPS
        for b in BURN_INS
        for lk in LINKS
    ]


def level(name: str) -> int:
    if name in ("last-observed", "param_count"):
        return 0
    return 4 if name.startswith("fit/") else 1


def score_table(results: dict, models: list[str], target: str, total: float, proxies: list[str]):
    """``scores[name][f]``: each model's score (NaN failed); ``features[f]``: the fit's rows."""
    _, _, _, _, runs = unpack_results(results)
    free = results["training_free"][target]
    names = [*RUN_SCORES, *extrapolations()]
    scores = {n: {f: np.full(len(models), np.nan) for f in BUDGETS} for n in names + proxies}
    features = {f: np.full((len(models), len(FIT_FEATURES)), np.nan) for f in BUDGETS}
    for i, m in enumerate(models):
        run = runs[(target, m, 0)]
        context = baseline_context(run, free[m], total)
        for f in BUDGETS:
            max_step = _budget_step(run, total, f)
            points = [p for p in run["points"] if p["step"] <= max_step]
            got = {n: run_score(n, points, max_step, context) for n in names}
            for n, sc in got.items():
                if sc.value is not None:
                    scores[n][f][i] = sc.value
            row = base_features(points, max_step, free[m], last_observed=got["last-observed"].value,
                                tse_e1=got["tse-e1"].value)  # fmt: skip
            features[f][i] = [row[k] for k in FIT_FEATURES]
            for p in proxies:
                value = (free[m].get("proxies") or {}).get(p)
                if value is not None and np.isfinite(value):
                    scores[p][f][i] = value
    return scores, features


def fitted_loao(features: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The fit's link-space prediction for each architecture of ``rows``, trained on the others
    of ``rows`` (leave one architecture out)."""
    out = np.full(len(truth), np.nan)
    gain = logit(truth) - features[:, 0]
    for i in rows:
        train = rows[rows != i]
        model = FittedGain.fit(features[train], gain[train], FIT_FEATURES)
        keep = [FIT_FEATURES.index(k) for k in model.features]
        mean, _ = model.predict(features[i : i + 1, keep])
        if np.isfinite(features[i]).all():
            out[i] = features[i, 0] + mean[0]
    return out


def kendall(score: np.ndarray, truth: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kendall tau-b per count row of ``w`` (failures last; all failed -1; constant 0)."""
    if not np.isfinite(score).any():
        return np.full(len(np.atleast_2d(w)), -1.0)
    tau = kendall_boot(fill_failures(score), truth, w)
    return np.where(np.isfinite(tau), tau, 0.0)


def choose(score: dict[str, float]) -> str:
    best = max(score.values())
    near = [n for n, s in score.items() if s >= best - DELTA]
    return min(near, key=lambda n: (level(n), -score[n], n))


def run(results_path: Path, out_dir: Path) -> dict:
    raw = results_path.read_bytes()
    results = json.loads(raw)
    _, total, models, targets, runs = unpack_results(results)
    (target,) = targets
    truth = np.array([final_accuracy(runs[(target, m, 0)]) for m in models])
    proxies = sorted({p for v in results["training_free"][target].values()
                      for p in (v.get("proxies") or {})})  # fmt: skip
    scores, features = score_table(results, models, target, total, proxies)
    order = np.random.default_rng(HALVES_SEED).permutation(len(models))
    halves = {"selection": np.sort(order[: len(models) // 2]),
              "report": np.sort(order[len(models) // 2 :])}  # fmt: skip
    scores[FIT] = {f: np.full(len(models), np.nan) for f in BUDGETS}
    for rows in halves.values():
        for f in BUDGETS:
            scores[FIT][f][rows] = fitted_loao(features[f], truth, rows)[rows]
    names = list(scores)
    per = {}
    for half, rows in halves.items():
        ones = np.ones(len(rows))
        per[half] = {n: {str(f): float(kendall(scores[n][f][rows], truth[rows], ones)[0])
                         for f in BUDGETS} for n in names}  # fmt: skip
    mean_sel = {n: float(np.mean(list(per["selection"][n].values()))) for n in names}
    winner = choose(mean_sel)
    rows = halves["report"]
    w = draw_counts(len(rows), REPLICATES, MODEL_SEED)

    def boot(name: str) -> np.ndarray:
        return np.mean([kendall(scores[name][f][rows], truth[rows], w) for f in BUDGETS], axis=0)

    report = {}
    lo_boot = boot("last-observed")
    for name in dict.fromkeys([winner, "last-observed", "tse-e1", "tse", FIT, *proxies]):
        b = boot(name)
        report[name] = {
            "mean_kendall": float(np.mean(list(per["report"][name].values()))),
            "ci95": percentile_interval(b),
            "minus_lo": {
                "value": float(
                    np.mean(list(per["report"][name].values()))
                    - np.mean(list(per["report"]["last-observed"].values()))
                ),
                "ci95": percentile_interval(b - lo_boot),
            },  # fmt: skip
            "per_budget": per["report"][name],
        }
    below = report[winner]["ci95"][1] < report["last-observed"]["ci95"][0]
    default = "last-observed" if below else winner
    best_nc = max((n for n in names if n.startswith("nc/")), key=lambda n: mean_sel[n])
    out = {
        "format": "ncap-nas-default/1",
        "protocol": "docs/benchmark-v3-protocol.md, section 4, Q4",
        "source": results_path.name,
        "data_sha256": hashlib.sha256(raw).hexdigest(),
        "target": target,
        "budgets": list(BUDGETS),
        "halves": {k: [models[i] for i in v] for k, v in halves.items()},
        "levels": {n: level(n) for n in names},
        "selection": {
            "mean_kendall": mean_sel,
            "per_budget": per["selection"],
            "winner": winner,
            "best_extrapolation": best_nc,
        },  # fmt: skip
        "report": report,
        "report_per_budget": per["report"],
        "winner_below_lo": bool(below),
        "default": default,
        "bootstrap": {
            "replicates": REPLICATES,
            "model_seed": MODEL_SEED,
            "what": "models of the report half, paired across scores; the metric is the "
            "mean Kendall over the four budgets",
        },  # fmt: skip
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "q4.json").write_text(json.dumps(out, indent=1) + "\n")
    (out_dir / "report.md").write_text(render(out))
    return out


def render(out: dict) -> str:
    sel, rep = out["selection"], out["report"]
    top = sorted(sel["mean_kendall"], key=sel["mean_kendall"].get, reverse=True)[:12]
    lines = [
        "# Q4: the NAS default (docs/benchmark-v3-protocol.md, section 4)",
        "",
        f"Data: `{out['source']}` (sha256 {out['data_sha256'][:12]}...), target {out['target']}, "
        f"{len(out['halves']['selection'])} + {len(out['halves']['report'])} architectures "
        "(selection + report, `default_rng(28).permutation`). Command: "
        "`PYTHONPATH=src python benchmarks/nas_default.py`.",
        "",
        "## Selection half: mean Kendall tau-b over 2.5, 5, 10, 20% of T (top 12, and LO)",
        "",
        "| score | level | mean | 2.5% | 5% | 10% | 20% |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in dict.fromkeys([*top, "last-observed", sel["best_extrapolation"]]):
        pb = sel["per_budget"][n]
        lines.append(f"| `{n}` | {out['levels'][n]} | {sel['mean_kendall'][n]:+.3f} | "
                     + " | ".join(f"{pb[str(f)]:+.3f}" for f in out["budgets"]) + " |")  # fmt: skip
    lines += [
        "",
        f"Winner (simplicity rule, delta = {DELTA}): **`{sel['winner']}`**. Best extrapolation: "
        f"`{sel['best_extrapolation']}` ({sel['mean_kendall'][sel['best_extrapolation']]:+.3f}).",
        "",
        "## Report half: mean Kendall over the four budgets, models bootstrap (2000, paired)",
        "",
        "| score | mean Kendall [95%] | minus LO [95%] | 2.5% | 5% | 10% | 20% |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in rep.items():
        ci, d = r["ci95"], r["minus_lo"]
        lines.append(
            f"| `{n}` | {r['mean_kendall']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] | "
            f"{d['value']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] | "
            + " | ".join(f"{r['per_budget'][str(f)]:+.3f}" for f in out["budgets"])
            + " |"
        )
    lines += [
        "",
        f"Decision rule: the winner is the default unless its interval lies below LO's. Winner "
        f"below LO: {out['winner_below_lo']}. **`ncap nas` default: `{out['default']}`.**",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="benchmarks/results/nas-v1.json")
    parser.add_argument("--out", default="benchmarks/results/nas-v1-q4")
    args = parser.parse_args()
    out = run(Path(args.results), Path(args.out))
    print(render(out))


if __name__ == "__main__":
    main()
