"""The simulation driven by the study's cell-level scores (fit/..., ravg/...)."""

import json

import numpy as np
import pytest

from ncap.bench.simulate import (
    HalvingSetting,
    SimulationPlan,
    rank_candidates,
    simulate_results,
    successive_halving,
    write_simulation,
)
from ncap.bench.simulate_cells import CellScorer
from ncap.bench.study.candidates import candidates
from ncap.bench.study.combine import cell_scores
from ncap.bench.study.halves import keep_masks
from ncap.bench.study.table import build_table, names_needed
from ncap.exceptions import ConfigError
from ncap.ranking.halving_core import decide, kept_count, rank

FIT = ("fit/base", "fit/dyn/interval/mean-abs")
SETTING = HalvingSetting(2, 0.05, 0.2)  # rungs at 5, 10, 20% of T


def results_file(n_models: int = 6, n_targets: int = 3, seed: int = 0) -> dict:
    """Runs whose final accuracy follows a model quality (with seed noise and a per-target
    shift), beta_eff decaying faster for better models; quarter-epoch points to 8 of T = 40
    epochs, then every epoch; one beta_eff measurement (interval)."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(n_models)]
    targets = [f"t{j}" for j in range(n_targets)]
    quality = rng.permutation(np.linspace(0.6, 0.9, n_models))
    speed = rng.uniform(1.0, 6.0, n_models)  # the slow models are not the early leaders
    epochs = [0.25 * k for k in range(1, 33)] + [float(e) for e in range(9, 41)]
    runs, free = [], {}
    for j, t in enumerate(targets):
        free[t] = {
            m: {"parameters": 1000 * (i + 1), "source_accuracy": 0.7 + 0.02 * i,
                "num_features": 32 * (1 + i % 2), "logme": float(quality[i] + rng.normal(0, 0.05))}
            for i, m in enumerate(models)
        }  # fmt: skip
        for i, m in enumerate(models):
            for s in (0, 1):
                final = quality[i] - 0.03 * j + rng.normal(0, 0.01)
                rate = 0.5 + quality[i] + rng.normal(0, 0.05)
                points = []
                for e in epochs:
                    acc = final * (1 - 0.6 * np.exp(-e / speed[i])) + rng.normal(0, 0.004)
                    beta = {"signed": 0.1 * e**-rate, "mean-abs": 0.2 * e**-rate,
                            "abs-mean": 0.15 * e ** -(rate * 1.1)}  # fmt: skip
                    points.append({
                        "step": int(e * 4), "epoch": e, "beta_eff": beta,
                        "train_loss": 1.0 - acc, "val_loss": 1.0 - acc,
                        "val_accuracy": float(np.clip(acc, 0, 1)),
                    })  # fmt: skip
                runs.append({"target": t, "model": m, "seed": s, "steps_per_epoch": 4,
                             "total_steps": 160, "seconds": 10.0 + i, "points": points})  # fmt: skip
    plan = {"name": "synthetic", "models": models, "targets": [{"key": t} for t in targets],
            "seeds": [0, 1], "epochs": 40.0, "kind": "zoo"}  # fmt: skip
    return {"plan": plan, "training_free": free, "runs": runs}


@pytest.fixture(scope="module")
def results():
    return results_file()


@pytest.fixture(scope="module")
def sim(results):
    plan = SimulationPlan(list(FIT), [SETTING], replicates=6, seed=1, keep_replicates=True)
    return simulate_results(results, plan, workers=1)


@pytest.fixture(scope="module")
def scorer(results):
    return CellScorer.build(results, list(FIT), SETTING.budgets, workers=1)


def _check_rung_scores(results, sim, names):
    table = build_table(
        results, seeds=[0, 1], budgets=list(SETTING.budgets), workers=1, names=names
    )
    keep = keep_masks(table, [0, 1])
    cands = {c.name: c for c in candidates(("interval",))}
    checked = 0
    for d in sim["decisions"]:
        if d["method"] not in FIT:
            continue
        for rung in d["rungs"]:
            want = cell_scores(cands[d["method"]], table, rung["budget"], d["target"], d["seed"],
                               sigma={}, keep=keep).value  # fmt: skip
            got = dict(zip(rung["ranked"], rung["scores"]))
            for m, v in got.items():
                assert v == pytest.approx(want[table.models.index(m)], rel=1e-12), (d, m)
                checked += 1
    assert checked == 2 * 3 * 2 * (6 + 3 + 2)  # methods x targets x seeds x scored per rung


def test_the_rung_scores_are_the_studys_cell_scores(results, sim):
    cands = [c for c in candidates(("interval",)) if c.name in FIT]
    _check_rung_scores(results, sim, names_needed(cands, ("interval",)))
    assert sim["cell_methods"]["methods"] == list(FIT) and sim["cell_methods"]["refit"]
    assert sim["cell_methods"]["table_budgets"] == [0.05, 0.1, 0.2]


@pytest.mark.slow
def test_the_rung_scores_do_not_depend_on_the_scores_left_out_of_the_table(results, sim):
    _check_rung_scores(results, sim, None)  # every per-run score of the study (about 25 s)


def test_the_fit_leaves_the_scored_target_out(scorer):
    f, table = 0.1, scorer.table
    before = {(t, s): scorer.point("fit/base", t, s, f).copy() for t in ("t0", "t1") for s in (0,)}
    # the truth of t0 (its seed-1 final accuracies) trains the models of the other targets only
    saved = dict(table.final)
    for m in table.models:
        table.final[("t0", m, 1)] = 0.5
    scorer._point.clear()
    assert np.array_equal(scorer.point("fit/base", "t0", 0, f), before[("t0", 0)])
    assert not np.allclose(scorer.point("fit/base", "t1", 0, f), before[("t1", 0)])
    table.final.clear()
    table.final.update(saved)
    # a feature of one run of t0 moves that run's prediction only: t0's rows are not trained on
    key = ("lo_slope", f, "t0", 0)
    saved_feature = table.feature[key].copy()
    table.feature[key][2] += 1.0
    scorer._point.clear()
    after = scorer.point("fit/base", "t0", 0, f)
    changed = ~np.isclose(after, before[("t0", 0)], rtol=0, atol=1e-12)
    assert changed.tolist() == [i == 2 for i in range(len(table.models))]
    table.feature[key] = saved_feature
    scorer._point.clear()
    assert np.array_equal(scorer.point("fit/base", "t0", 0, f), before[("t0", 0)])


def test_halving_decisions_follow_the_fitted_scores(results, sim, scorer):
    models = results["plan"]["models"]
    truth = sim["truth"]
    for d in sim["decisions"]:
        if d["method"] != "fit/base":
            continue
        rows = [scorer.point("fit/base", d["target"], d["seed"], b) for b in SETTING.budgets]
        res = successive_halving(rows, len(models), SETTING.budgets, SETTING.eta)
        assert d["pick"] == models[res.pick]
        assert [r["promoted"] for r in d["rungs"]] == [
            [models[c] for c in r.promoted] for r in res.rungs
        ]
        # 6 -> 3 -> 2 -> 1 candidates at 5, 10, 20% of T
        assert [len(r["ranked"]) for r in d["rungs"]] == [6, 3, 2]
        t = truth[f"{d['target']}/s{d['seed']}"]
        assert d["regret"] == pytest.approx(100 * (max(t.values()) - t[d["pick"]]))
        assert d["compute"] == pytest.approx((3 * 0.05 + 0.1 + 0.2 + 1.0) / 6)


def test_the_bootstrap_refits_on_the_drawn_models(scorer):
    draws = np.array([[0, 1, 2, 3, 4, 5], [5, 5, 0, 2, 2, 3]])
    cells, budgets = [("t1", 0), ("t2", 1)], [0.05, 0.2]
    boot = scorer.boot(["fit/base"], cells, budgets, draws)
    for t, s in cells:
        for f in budgets:
            row = boot[("fit/base", t, s, f)]
            assert row.shape == (2, 6)
            # the identity draw is the point estimate
            assert row[0] == pytest.approx(scorer.point("fit/base", t, s, f), rel=1e-12)
            # a draw with repeats: the model refitted on the drawn rows of the other targets
            sub = scorer.table.subset(draws[1])
            keep = {k: v[draws[1]] for k, v in scorer.keep.items()}
            want = cell_scores(scorer.cands["fit/base"], sub, f, t, s, sigma={}, keep=keep).value
            assert row[1] == pytest.approx(want, rel=1e-12)
            assert row[1][0] == row[1][1]  # a model drawn twice scores the same
            # ... and differs from the fixed fit's scores of the same models
            assert not np.allclose(row[1], scorer.point("fit/base", t, s, f)[draws[1]])


def test_refit_or_fixed_in_the_bootstrap(results, sim):
    plan = SimulationPlan(["fit/base"], [SETTING], replicates=6, seed=1, refit=False,
                          keep_replicates=True)  # fmt: skip
    fixed = simulate_results(results, plan, workers=1)
    rows = {(r["method"], r["setting"]): r for r in sim["rows"]}
    rows_fixed = {(r["method"], r["setting"]): r for r in fixed["rows"]}
    key = ("fit/base", SETTING.name)
    assert rows[key]["regret"]["value"] == rows_fixed[key]["regret"]["value"]  # same point
    lo = ("last-observed", SETTING.name)
    assert rows[lo]["replicates"] == rows_fixed[lo]["replicates"]  # same draws
    assert fixed["cell_methods"]["bootstrap"].startswith("fixed per cell")
    assert rows[key]["compute"] == rows_fixed[key]["compute"]
    # the report half (seed 1's cells): its own difference from last-observed halving
    half = rows[key]["diff_last_observed_report_half"]
    assert half["value"] == pytest.approx(
        rows[key]["regret_report_half"]["value"] - rows[lo]["regret_report_half"]["value"]
    )
    cells = [d for d in sim["decisions"] if d["setting"] == SETTING.name and d["seed"] == 1]
    mean = {
        m: np.mean([d["regret"] for d in cells if d["method"] == m]) for m in ("fit/base", lo[0])
    }
    assert half["value"] == pytest.approx(mean["fit/base"] - mean[lo[0]])
    assert rows[lo]["diff_last_observed_report_half"]["ci95"] == [0.0, 0.0]


def test_table_names_subset_and_clear_errors(results, scorer):
    cands = [c for c in candidates(("interval",)) if c.name in FIT]
    names = names_needed(cands, ("interval",))
    assert names[:3] == ["last-observed", "tse-e1", "nc/interval/abs-mean/quadratic/b0/logit"]
    assert "dyn/interval/mean-abs/slope" in names
    with pytest.raises(ConfigError, match="base features"):
        build_table(results, seeds=[0], budgets=[0.1], workers=1, names=["last-observed"])
    sub = scorer.table.subset([2, 2, 0])
    assert sub.models == ["m2", "m2", "m0"]
    key = ("lo", 0.1, "t0", 0)
    assert sub.feature[key].tolist() == scorer.table.feature[key][[2, 2, 0]].tolist()
    with pytest.raises(ConfigError, match="unknown study score"):
        CellScorer.build(results, ["fit/nope"], [0.1], workers=1)
    with pytest.raises(ConfigError, match="selection half"):
        CellScorer.build(results, ["ravg/lo+dyn/interval/mean-abs"], [0.1], workers=1)


def test_rank_averages_need_and_use_the_frozen_orientation(results):
    sigma = {"dyn/interval/mean-abs/slope": -1.0}
    sc = CellScorer.build(results, ["ravg/lo+dyn/interval/mean-abs", "ravg/lo+params"], [0.1],
                          sigma=sigma, workers=1)  # fmt: skip
    lo = sc.table.value[("last-observed", 0.1, "t1", 0)]
    slope = -sc.table.value[("dyn/interval/mean-abs/slope", 0.1, "t1", 0)]
    ranks = (np.argsort(np.argsort(lo)) + np.argsort(np.argsort(slope))) / (2 * 5)
    assert sc.point("ravg/lo+dyn/interval/mean-abs", "t1", 0, 0.1) == pytest.approx(ranks)


def test_simulate_uses_the_live_halving_rules():
    scores = np.array([0.5, np.nan, 0.9, 0.5, 0.7])
    assert rank_candidates(scores, [4, 3, 0, 1, 2]) == [2, 4, 0, 3, 1]
    named = {str(i): (None if np.isnan(v) else v) for i, v in enumerate(scores)}
    assert decide(named, ["0", "1", "2", "3", "4"], eta=2, last=False).kept == ("2", "4", "0")
    assert rank(named, ["3", "0"]) == ("3", "0")  # ties: the one named first
    assert [kept_count(5, 2, False), kept_count(5, 3, False), kept_count(5, 2, True)] == [3, 2, 1]


def test_cli_simulate_with_fit_base_states_the_command(tmp_path, capsys, results):
    from ncap.cli import main

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "sim"
    assert main(["bench", "simulate", str(path), "--out", str(out), "--methods", "fit/base",
                 "--replicates", "3", "--workers", "1"]) == 0  # fmt: skip
    md = (out / "simulation.md").read_text()
    assert f"Reproduce: `ncap bench simulate {path} --methods last-observed,fit/base" in md
    assert "refit (and re-ranked) on the drawn models in every replicate" in md
    sim = json.loads((out / "simulation.json").read_text())
    assert {r["method"] for r in sim["rows"]} == {"last-observed", "fit/base"}
    assert len(sim["rows"]) == 2 * 8 + 1  # 8 default settings, plus train-all


def test_written_outputs(sim, tmp_path):
    files = write_simulation(sim, tmp_path)
    assert "`fit/dyn/interval/mean-abs`" in files["markdown"].read_text()
