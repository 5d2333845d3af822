"""Replay bench-v2's recorded trajectories through Optuna pruners: ncap's and Optuna's own.

Every cell (target, seed) of the benchmark is one Optuna study (in-memory storage, maximise): its
trials are the benchmark's models, run one after the other, each reporting its recorded validation
accuracy at every recorded evaluation (step = quarter epochs, T = 40 epochs = 160 steps) and asking
``trial.should_prune()`` after each report, exactly as an objective function would; a pruned trial
stops there. The pruners are the real classes: ``optuna.pruners.NopPruner`` (train everything to
T), ``MedianPruner``, ``SuccessiveHalvingPruner`` and ``HyperbandPruner`` with Optuna's defaults
(Hyperband's ``max_resource`` = 160), and :class:`ncap.integrations.optuna.NcapPruner` at 95% and
68% confidence, fed the recorded training loss and the model's size through the trial's user
attributes (what :func:`ncap.integrations.optuna.report` stores). Two ncap rules: ``ncap-95``/``ncap-68``
predict with the integrations' default (the last observed accuracy with its residuals, bench-v3),
the residuals taken from bench-v3.json without the replayed target's runs; ``ncap-fit-95``/``ncap-fit-68``
with ``fit/base`` (the default before bench-v3), refitted without the replayed target's runs (leave
one target out, as ``ncap bench simulate`` does for ``fit/base``): the shipped model was fitted on all
of bench-v2, and bench-v3 holds bench-v2's runs.

The study's pick is its best completed trial (the recorded accuracy at T). **Regret**: the best
model's truth minus the pick's, in accuracy points, truth = the final accuracy of the *other*
seed's run (the seed protocol of ``ncap bench simulate``). **Compute**: the epochs every trial was
trained, as a share of training all to T. Intervals: 95% percentile, paired bootstrap over models
(one draw of models shared by every cell and pruner; the drawn models are the trials, in the draw's
order), with the statistics helpers of :mod:`ncap.bench.simulate`.

Deterministic: the trial orders and the bootstrap draws come from ``--seed``; every study is named
after its cell and replicate (``bench-v2/<target>/seed<s>/point`` or ``.../r<b>``), which fixes
``HyperbandPruner``'s bracket of each trial (a hash of the study's name and the trial's number);
the sampler is ``RandomSampler(seed=0)`` (no parameter is ever sampled). Two runs with the same
arguments write the same replay.json (the run time is printed and written to replay.md only).

ncap's predictions are cached per (target, model, seed, step) in each worker process: a trial's
prediction at a step depends only on its recorded points up to that step, so a replicate that draws
the model again gets the same prediction without recomputing it (the decisions are those of
:class:`~ncap.integrations.optuna.NcapPruner`, unchanged).

Run: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pruner_replay.py --replicates 1000
--workers 2`` (writes benchmarks/results/pruner-replay/replay.json and replay.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ncap.bench.evaluate import final_accuracy, unpack_results
from ncap.bench.simulate import _summary
from ncap.predict.fitted import FittedGain
from ncap.predict.shipped import ShippedFit, nearest_budget

HERE = Path(__file__).resolve().parent
STEPS_PER_EPOCH = 4  # one step = a quarter epoch: bench-v2 evaluates every quarter epoch early on
PRUNERS = (
    "none",
    "median",
    "successive-halving",
    "hyperband",
    "ncap-95",
    "ncap-68",
    "ncap-fit-95",
    "ncap-fit-68",
)
RESIDUALS_FROM = HERE / "results" / "bench-v3.json"  # the shipped residuals' benchmark
REPLAY_MODEL = "replay_model"  # user attribute: the replayed model's index (the prediction cache)

_DATA: dict[str, Any] = {}


def _load(path: str) -> None:
    if _DATA.get("path") == path:
        return
    results = json.loads(Path(path).read_text())
    seeds, total, models, targets, runs = unpack_results(results)
    _DATA.update(
        path=path,
        seeds=seeds,
        total=total,
        models=models,
        targets=targets,
        runs=runs,
        free=results["training_free"],
    )


@lru_cache(maxsize=1)
def _fitted_rows() -> dict[str, Any]:
    text = (resources.files("ncap.predict") / "data" / "fitted.json").read_text()
    return json.loads(text)["fits"]


@lru_cache(maxsize=256)
def _loto_fit(target: str, name: str, features: tuple[str, ...], budget: float) -> ShippedFit:
    spec = _fitted_rows()[name]
    rows = spec["budgets"][str(budget)]
    keep = np.array([run[0] != target for run in rows["runs"]])
    cols = [spec["features"].index(f) for f in features]
    x = np.array(rows["x"], dtype=np.float64)[keep][:, cols]
    y = np.array(rows["gain"], dtype=np.float64)[keep]
    model = FittedGain.fit(x, y, features)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    ranges = {f: (float(x[ok, j].min()), float(x[ok, j].max())) for j, f in enumerate(features)}
    return ShippedFit(name, budget, model, ranges)


def loto_fitter(target: str):
    """A ``fitter`` for :func:`ncap.integrations.curve.predict_final` that leaves ``target`` out."""

    def fitter(name, features, fraction):
        own = _fitted_rows()[name]["features"]
        budget = nearest_budget([float(b) for b in _fitted_rows()[name]["budgets"]], fraction)
        return _loto_fit(target, name, tuple(f for f in own if f in features), budget)

    return fitter


@lru_cache(maxsize=1)
def _residual_rows() -> dict[str, Any]:
    """LO's residuals on bench-v3 per budget, with each run's (target, model, seed)."""
    from ncap.bench.study.export import fitted_rows

    results = json.loads(RESIDUALS_FROM.read_text())
    return fitted_rows(results, fits={"lo": ("lo",)}, workers=1)["lo"]["budgets"]


@lru_cache(maxsize=64)
def _loto_residuals(target: str, budget: str) -> tuple[float, ...]:
    rows = _residual_rows()[budget]
    return tuple(
        g for g, run in zip(rows["gain"], rows["runs"]) if run[0] != target and g is not None
    )


def loto_residuals(target: str):
    """A ``residuals`` for :func:`ncap.integrations.curve.predict_final`: the last observed
    accuracy's residuals on bench-v3 without ``target``'s runs."""

    def residuals(name, fraction):
        if name != "last-observed":
            return None
        budget = nearest_budget([float(b) for b in _residual_rows()], fraction)
        return budget, _loto_residuals(target, str(budget))

    return residuals


# (pruner's score, target, model, seed, step) -> prediction
_PREDICTIONS: dict[tuple[str | None, str, int, int, int], Any] = {}


def _cached_ncap_pruner():
    """NcapPruner whose predictions are cached across the studies of this process (module doc)."""
    from ncap.integrations.optuna import NcapPruner

    class CachedNcapPruner(NcapPruner):
        def __init__(self, *args, target: str, seed: int, **kwargs):
            super().__init__(*args, **kwargs)
            self._cell = (target, seed)

        def predict(self, trial, step=None):
            model = trial.user_attrs.get(REPLAY_MODEL)
            if model is None or step is None:
                return super().predict(trial, step)
            key = (self.score, self._cell[0], int(model), self._cell[1], int(step))
            if key not in _PREDICTIONS:
                _PREDICTIONS[key] = super().predict(trial, step)
            return _PREDICTIONS[key]

    return CachedNcapPruner


def make_pruner(name: str, target: str, max_resource: int, seed: int = 0):
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(max_resource=max_resource)
    if name.startswith("ncap-"):
        return _cached_ncap_pruner()(
            max_resource,
            confidence=int(name.split("-")[-1]) / 100,
            steps_per_epoch=STEPS_PER_EPOCH,
            score="fit/base" if name.startswith("ncap-fit-") else None,
            fitter=loto_fitter(target),
            residuals=loto_residuals(target),
            target=target,
            seed=seed,
        )
    raise ValueError(f"unknown pruner {name!r}; choose from {PRUNERS}")


def study_name(target: str, seed: int, replicate: int) -> str:
    """The study's name: its cell and replicate (-1: the point estimate's trial order)."""
    return f"bench-v2/{target}/seed{seed}/" + ("point" if replicate < 0 else f"r{replicate}")


def replay_study(
    pruner_name: str, target: str, seed: int, order: list[int], replicate: int = -1
) -> dict[str, Any]:
    """One study: the models ``order`` (indices, repeats allowed) as trials, one after the other."""
    import optuna

    from ncap.integrations.optuna import MODEL, TRAIN_LOSS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    total, models, runs, free = _DATA["total"], _DATA["models"], _DATA["runs"], _DATA["free"]
    max_resource = int(round(total * STEPS_PER_EPOCH))
    pruner = make_pruner(pruner_name, target, max_resource, seed)
    study = optuna.create_study(
        study_name=study_name(target, seed, replicate),
        direction="maximize",
        pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=0),
        storage=optuna.storages.InMemoryStorage(),
    )
    ncap = pruner_name.startswith("ncap-")
    trained, picks = [], []
    for m in order:
        run = runs[(target, models[m], seed)]
        trial = study.ask()
        if ncap:
            f = free[target][models[m]]
            trial.set_user_attr(
                MODEL, {"parameters": f.get("parameters"), "num_features": f.get("num_features")}
            )
            trial.set_user_attr(REPLAY_MODEL, int(m))
        losses: dict[str, float] = {}
        last_step, pruned = 0, False
        for p in run["points"]:
            step = int(round(p["epoch"] * STEPS_PER_EPOCH))
            if ncap and p.get("train_loss") is not None:
                losses[str(step)] = float(p["train_loss"])
                trial.set_user_attr(TRAIN_LOSS, dict(losses))
            trial.report(float(p["val_accuracy"]), step)
            last_step = step
            if trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            trained.append(last_step / max_resource)
        else:
            study.tell(trial, float(run["points"][-1]["val_accuracy"]))
            trained.append(1.0)
        picks.append(m)
    best = study.best_trial.number
    return {"pick": picks[best], "trained": trained}


def _job(args) -> list[dict[str, Any]]:
    path, pruner, cells, orders, replicate = args
    _load(path)
    return [replay_study(pruner, t, s, order, replicate) for (t, s), order in zip(cells, orders)]


def run_replay(
    path: str,
    pruners: list[str],
    replicates: int,
    seed: int,
    workers: int,
    targets: list[str] | None = None,
) -> tuple[dict[str, Any], float]:
    """The replay's report (JSON-ready, deterministic) and the seconds it took."""
    start = time.perf_counter()
    _load(path)
    seeds, models, runs = _DATA["seeds"], _DATA["models"], _DATA["runs"]
    targets = targets or _DATA["targets"]
    n = len(models)
    cells = [(t, s) for t in targets for s in seeds]
    final = {k: final_accuracy(r) for k, r in runs.items()}
    truth = {
        (t, s): np.array([np.mean([final[(t, m, o)] for o in seeds if o != s]) for m in models])
        for t, s in cells
    }
    rng = np.random.default_rng(seed)
    point_orders = [list(rng.permutation(n)) for _ in cells]  # trial order of each cell
    draws = rng.integers(0, n, size=(replicates, n))  # bootstrap: models, shared by all cells

    jobs, keys = [], []
    for pruner in pruners:
        jobs.append((path, pruner, cells, point_orders, -1))
        keys.append((pruner, -1))
        for b in range(replicates):
            jobs.append((path, pruner, cells, [list(draws[b])] * len(cells), b))
            keys.append((pruner, b))

    def progress(results):  # every 5% of the jobs, to stderr (the JSON has no timing)
        outs = []
        for out in results:
            outs.append(out)
            if len(outs) % max(1, len(jobs) // 20) == 0:
                print(
                    f"{len(outs)}/{len(jobs)} jobs, {(time.perf_counter() - start) / 60:.1f} min",
                    file=sys.stderr,
                    flush=True,
                )
        return outs

    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outs = progress(pool.map(_job, jobs, chunksize=4))
    else:
        outs = progress(_job(j) for j in jobs)

    per: dict[str, dict[str, np.ndarray]] = {
        p: {
            "regret": np.empty((replicates + 1, len(cells))),
            "compute": np.empty((replicates + 1, len(cells))),
        }
        for p in pruners
    }
    decisions = []
    for (pruner, b), out in zip(keys, outs):
        for j, ((t, s), res) in enumerate(zip(cells, out)):
            cand = point_orders[j] if b < 0 else list(draws[b])
            tr = truth[(t, s)][cand]
            per[pruner]["regret"][b + 1, j] = 100.0 * (tr.max() - truth[(t, s)][res["pick"]])
            per[pruner]["compute"][b + 1, j] = float(np.mean(res["trained"]))
            if b < 0:
                decisions.append(
                    {
                        "pruner": pruner,
                        "target": t,
                        "seed": s,
                        "order": [models[m] for m in cand],
                        "pick": models[res["pick"]],
                        "trained": res["trained"],
                    }
                )
    report_cols = [j for j, (_, s) in enumerate(cells) if s != seeds[0]]
    rows = []
    ref = "none"
    for p in pruners:
        r, c = per[p]["regret"], per[p]["compute"]
        row = {
            "pruner": p,
            "regret": _summary(r[0].mean(), r[1:].mean(axis=1)),
            "compute": _summary(c[0].mean(), c[1:].mean(axis=1)),
            "regret_report_half": _summary(
                r[0, report_cols].mean(), r[1:, report_cols].mean(axis=1)
            ),
        }
        for other in pruners:
            if other != p:
                ro, co = per[other]["regret"], per[other]["compute"]
                row[f"diff_regret_{other}"] = _summary(
                    r[0].mean() - ro[0].mean(), r[1:].mean(axis=1) - ro[1:].mean(axis=1)
                )
                row[f"diff_compute_{other}"] = _summary(
                    c[0].mean() - co[0].mean(), c[1:].mean(axis=1) - co[1:].mean(axis=1)
                )
        row["regret_by_target"] = {
            t: float(np.mean([r[0, j] for j, (tt, _) in enumerate(cells) if tt == t]))
            for t in targets
        }
        row["compute_by_target"] = {
            t: float(np.mean([c[0, j] for j, (tt, _) in enumerate(cells) if tt == t]))
            for t in targets
        }
        rows.append(row)
    return {
        "format": "ncap-pruner-replay-1",
        "protocol_text": __doc__,
        "source": {"path": _relative(path), "models": models, "targets": targets, "seeds": seeds},
        "steps_per_epoch": STEPS_PER_EPOCH,
        "max_resource": int(round(_DATA["total"] * STEPS_PER_EPOCH)),
        "reference": ref,
        "bootstrap": {"replicates": replicates, "seed": seed, "unit": "models"},
        "rows": rows,
        "decisions": decisions,
    }, time.perf_counter() - start


def _relative(path: str) -> str:
    """``path`` relative to the repository when it lies in it (the same JSON on any checkout)."""
    try:
        return str(Path(path).resolve().relative_to(HERE.parent))
    except ValueError:
        return path


def _ci(s: dict[str, Any], scale: float = 1.0, signed: bool = False) -> str:
    f = "{:+.2f}" if signed else "{:.2f}"
    lo, hi = s["ci95"]
    return f"{f.format(scale * s['value'])} [{f.format(scale * lo)}, {f.format(scale * hi)}]"


def render(rep: dict[str, Any], command: str, seconds: float) -> str:
    src, boot = rep["source"], rep["bootstrap"]
    lines = [
        "# Optuna pruners replayed on bench-v2's recorded trajectories",
        "",
        f"{len(src['models'])} models x {len(src['targets'])} targets x {len(src['seeds'])} seeds: "
        f"{len(src['targets']) * len(src['seeds'])} studies per pruner, each trial reporting its "
        f"recorded validation accuracy every quarter epoch (T = {rep['max_resource']} steps). "
        "Regret: best truth minus the pick's truth (accuracy points, truth = the other seed's "
        "final accuracy), mean over studies; compute: share of training every trial to T. "
        f"95% percentile intervals, paired bootstrap over models ({boot['replicates']} "
        f"replicates, seed {boot['seed']}). Δ: difference from the row named, replicate by "
        "replicate (regret: negative is better; compute: negative is cheaper).",
        "",
        f"Reproduce: `{command}` ({seconds / 60:.0f} min on this project's 2-core machine, "
        "shared with other work).",
        "",
        "| pruner | compute % [95% CI] | regret, points [95% CI] | report half: regret | "
        "Δ regret vs median | Δ compute vs median, % | Δ regret vs no pruning |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rep["rows"]:
        p = row["pruner"]
        dm = row.get("diff_regret_median")
        dc = row.get("diff_compute_median")
        dn = row.get("diff_regret_none")
        lines.append(
            f"| {p} | {_ci(row['compute'], 100)} | {_ci(row['regret'])} | "
            f"{_ci(row['regret_report_half'])} | {_ci(dm, signed=True) if dm else '–'} | "
            f"{_ci(dc, 100, signed=True) if dc else '–'} | {_ci(dn, signed=True) if dn else '–'} |"
        )
    targets = src["targets"]
    lines += [
        "",
        "## By target (point estimates: regret, points / compute, %)",
        "",
        "| pruner | " + " | ".join(targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for row in rep["rows"]:
        lines.append(
            f"| {row['pruner']} | "
            + " | ".join(
                f"{row['regret_by_target'][t]:.2f} / {100 * row['compute_by_target'][t]:.0f}"
                for t in targets
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(HERE / "results" / "bench-v2.json"))
    parser.add_argument("--out", default=str(HERE / "results" / "pruner-replay"))
    parser.add_argument("--pruners", default=",".join(PRUNERS))
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--targets", default=None, help="comma-separated subset (a quick look)")
    args = parser.parse_args(argv)
    pruners = [p for p in args.pruners.split(",") if p]
    targets = args.targets.split(",") if args.targets else None
    rep, seconds = run_replay(
        args.results, pruners, args.replicates, args.seed, args.workers, targets
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pruner_replay.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    (out / "replay.json").write_text(json.dumps(rep, indent=1))
    (out / "replay.md").write_text(render(rep, command.strip(), seconds))
    print(render(rep, command.strip(), seconds))


if __name__ == "__main__":
    main()
