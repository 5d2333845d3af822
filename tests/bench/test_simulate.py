import dataclasses
import json
import math

import numpy as np
import pytest

from ncap.bench.evaluate import final_accuracy, score_run
from ncap.bench.simulate import (
    HalvingSetting,
    SimulationPlan,
    halving_batch,
    halving_budgets,
    halving_schedule,
    regret,
    render_markdown,
    score_methods,
    simulate_results,
    successive_halving,
    write_simulation,
)
from ncap.exceptions import ConfigError


def constant(scores):
    """The same scores at every rung."""
    return lambda k: scores


# ---------------------------------------------------------------- the halving core


def test_budgets_grow_by_eta_and_are_capped():
    assert halving_budgets(0.025, 2, 0.2) == (0.025, 0.05, 0.1, 0.2)
    assert halving_budgets(0.025, 3, 0.2) == (0.025, 0.075, 0.2)
    assert halving_budgets(0.05, 3, 1.0) == (0.05, 0.15, 0.45, 1.0)
    assert halving_budgets(0.025, 2, 1.0) == (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
    assert HalvingSetting(3, 0.025, 0.2).budgets == (0.025, 0.075, 0.2)
    with pytest.raises(ValueError, match="eta"):
        halving_budgets(0.025, 1, 0.2)
    with pytest.raises(ValueError, match="min_budget"):
        halving_budgets(0.3, 2, 0.2)


def test_fourteen_candidates_eta2_from_2_5_percent_costs_12_3_percent():
    # score = candidate index at every rung: the survivors are always the highest indices
    res = successive_halving(constant(np.arange(14.0)), 14, (0.025, 0.05, 0.1, 0.2), eta=2)
    assert [len(r.ranked) for r in res.rungs] == [14, 7, 4, 2]
    assert [len(r.promoted) for r in res.rungs] == [7, 4, 2, 1]
    assert res.rungs[0].promoted == (13, 12, 11, 10, 9, 8, 7)
    assert [c for c, _ in res.rungs[0].dropped] == [6, 5, 4, 3, 2, 1, 0]
    assert res.rungs[0].dropped[0] == (6, 6.0)
    assert res.rungs[3].promoted == (13,) and res.pick == 13
    # 14 x 2.5 + 7 x 2.5 + 4 x 5 + 2 x 10 + 80 (the pick on to T), of 14 x 100
    expected = (14 * 2.5 + 7 * 2.5 + 4 * 5 + 2 * 10 + 80) / 1400
    assert res.compute == pytest.approx(expected) and round(100 * res.compute, 1) == 12.3
    assert res.trained_to.count(0.025) == 7 and res.trained_to[13] == 1.0
    assert sorted(res.trained_to) == sorted([0.025] * 7 + [0.05] * 3 + [0.1] * 2 + [0.2, 1.0])
    assert halving_schedule(14, (0.025, 0.05, 0.1, 0.2, 0.4), 2) == [
        (0.025, 14, 7), (0.05, 7, 4), (0.1, 4, 2), (0.2, 2, 1)
    ]  # fmt: skip


def test_each_rung_ranks_by_the_score_at_its_own_budget():
    rungs = [np.arange(14.0), -np.arange(14.0), np.arange(14.0), np.zeros(14)]
    res = successive_halving(rungs, 14, (0.025, 0.05, 0.1, 0.2), eta=2)
    assert res.rungs[0].promoted == (13, 12, 11, 10, 9, 8, 7)
    assert res.rungs[1].promoted == (7, 8, 9, 10)  # lowest index first under -index
    assert res.rungs[2].promoted == (10, 9)
    assert res.pick == 9  # a tie at the last rung: the lower index


def test_eta3_with_a_candidate_count_not_a_power_of_eta():
    res = successive_halving(constant(np.arange(10.0)), 10, (0.1, 0.3, 0.9), eta=3)
    assert [(r.budget, len(r.ranked), len(r.promoted)) for r in res.rungs] == [
        (0.1, 10, 4), (0.3, 4, 2), (0.9, 2, 1)
    ]  # fmt: skip
    assert res.pick == 9
    assert res.compute == pytest.approx((6 * 0.1 + 2 * 0.3 + 0.9 + 1.0) / 10)
    # 7 candidates, eta 2: 7 -> 4 -> 2 -> 1
    assert [s[1:] for s in halving_schedule(7, (0.1, 0.2, 0.4, 0.8), 2)] == [(7, 4), (4, 2), (2, 1)]


def test_failures_rank_last_and_ties_break_by_index():
    scores = [None, float("nan"), 0.5, 0.5, 0.9, float("inf"), 0.5, 0.1]
    res = successive_halving(constant(scores), 8, (0.1, 0.2, 0.4), eta=2)
    first = res.rungs[0]
    # 0.9, then the three tied 0.5 by index, then 0.1, then the failures by index
    assert first.ranked == (4, 2, 3, 6, 7, 0, 1, 5)
    assert first.scores == (0.9, 0.5, 0.5, 0.5, 0.1, None, None, None)
    assert first.promoted == (4, 2, 3, 6)
    assert first.dropped == ((7, 0.1), (0, None), (1, None), (5, None))
    assert res.pick == 4
    # everyone failed: the lowest indices go on
    res = successive_halving(constant([None] * 5), 5, (0.1, 0.2, 0.4), eta=2)
    assert res.rungs[0].promoted == (0, 1, 2) and res.pick == 0


def test_max_budget_reached_with_several_survivors_picks_the_best_there():
    rungs = [np.arange(14.0), np.arange(14.0), np.array([0.0] * 10 + [3, 9, 1, 2])]
    res = successive_halving(rungs, 14, (0.05, 0.1, 0.2), eta=2)
    assert [len(r.ranked) for r in res.rungs] == [14, 7, 4]
    assert res.rungs[-1].promoted == (11,) and res.pick == 11
    assert [c for c, _ in res.rungs[-1].dropped] == [10, 13, 12]
    assert res.compute == pytest.approx((7 * 0.05 + 3 * 0.1 + 3 * 0.2 + 1.0) / 14)


def test_one_candidate_and_cost_weighting():
    res = successive_halving(constant([0.3]), 1, (0.1, 0.2), eta=2)
    assert res.rungs == () and res.pick == 0 and res.compute == 1.0
    # 4 candidates, 2 rungs: 0 and 1 stop at 0.1, 2 at 0.5, 3 is the pick; candidate 0 is dear
    costs = [10.0, 1.0, 1.0, 1.0]
    res = successive_halving(constant([0, 1, 2, 3]), 4, (0.1, 0.5), eta=2, costs=costs)
    assert res.trained_to == (0.1, 0.1, 0.5, 1.0)
    assert res.compute == pytest.approx((10 * 0.1 + 0.1 + 0.5 + 1.0) / 13)
    with pytest.raises(ValueError, match="increasing"):
        successive_halving(constant([0, 1]), 2, (0.2, 0.1))
    with pytest.raises(ValueError, match="one per candidate"):
        successive_halving(constant([0, 1, 2]), 2, (0.1, 0.2))


def test_an_oracle_score_has_zero_regret():
    rng = np.random.default_rng(0)
    for n in (2, 5, 14, 27):
        truth = rng.uniform(0.5, 0.95, n)
        for eta, budgets in ((2, (0.025, 0.05, 0.1, 0.2)), (3, (0.05, 0.15, 0.45, 1.0))):
            res = successive_halving(constant(truth), n, budgets, eta)
            assert res.pick == int(np.argmax(truth)) and regret(truth, res.pick) == 0.0
    assert regret([0.9, 0.8], 1) == pytest.approx(10.0)


def test_the_batched_halving_matches_the_reference():
    rng = np.random.default_rng(1)
    for n, budgets, eta in ((14, (0.025, 0.05, 0.1, 0.2), 2), (11, (0.05, 0.15, 0.45), 3)):
        sched = halving_schedule(n, budgets, eta)
        rows = [rng.integers(0, 4, size=(50, n)).astype(float) for _ in sched]  # many ties
        for r in rows:
            r[rng.random(r.shape) < 0.15] = np.nan
        picks, trained = halving_batch(rows, sched)
        for b in range(50):
            ref = successive_halving([r[b] for r in rows], n, budgets, eta)
            assert picks[b] == ref.pick and tuple(trained[b]) == ref.trained_to


# ---------------------------------------------------------------- on a results file


def synthetic_results(n_models=5, epochs=40, per_epoch=4, steps_per_epoch=4):
    """5 models x 1 target x 2 seeds in the bench JSON shape, with monotone accuracy curves.

    Model i approaches ``final[i]`` at speed ``1 / tau[i]``: the fast models lead early, the
    slow ones end higher, so early scores and the truth disagree.
    """
    final = [0.70, 0.76, 0.82, 0.86, 0.90][:n_models]
    tau = [0.5, 1.0, 3.0, 6.0, 12.0][:n_models]
    models = [f"m{i}" for i in range(n_models)]
    runs = []
    for i, m in enumerate(models):
        for seed in (0, 1):
            points = []
            for j in range(1, epochs * per_epoch + 1):
                epoch = j / per_epoch
                acc = final[i] * (1 - math.exp(-epoch / tau[i])) + 0.004 * seed * (i % 2)
                loss = 2.0 * math.exp(-epoch / tau[i]) + (1 - final[i])
                points.append({
                    "step": j * steps_per_epoch // per_epoch,
                    "epoch": epoch,
                    "beta_eff": {v: 0.01 * epoch**0.5 * (1 + i) for v in ("signed", "mean-abs", "abs-mean")},
                    "train_loss": loss,
                    "val_loss": loss,
                    "val_accuracy": acc,
                    "wall_time": epoch,
                })  # fmt: skip
            runs.append({
                "target": "t", "model": m, "seed": seed, "steps_per_epoch": steps_per_epoch,
                "total_steps": epochs * steps_per_epoch, "seconds": 10.0 * (i + 1), "points": points,
            })  # fmt: skip
    free = {
        m: {"parameters": 1000 * (i + 1), "source_accuracy": 0.5, "logme": -float(i),
            "proxies": {"params-copy": 1000.0 * (i + 1)}}
        for i, m in enumerate(models)
    }  # fmt: skip
    plan = {"name": "synthetic", "models": models, "targets": [{"key": "t"}], "seeds": [0, 1],
            "epochs": float(epochs)}  # fmt: skip
    return {"plan": plan, "runs": runs, "training_free": {"t": free}}


def test_score_methods_agrees_with_score_run():
    results = synthetic_results()
    run, free = results["runs"][3], results["training_free"]["t"]["m1"]
    methods = ["last-observed", "tse", "tse-e1", "param-count", "source-accuracy", "logme",
               "nc/abs-mean/quadratic/b0/logit", "nc/signed/linear/b0/identity", "params-copy"]  # fmt: skip
    ours = score_methods(run, free, 40.0, 0.1, methods)
    theirs = score_run(run, free, 40.0, 0.1)
    assert list(ours) == methods
    for m in methods:
        assert ours[m] == pytest.approx(theirs[m]), m
    with pytest.raises(ValueError, match="unknown method"):
        score_methods(run, free, 40.0, 0.1, ["no-such-method"])


def test_simulation_end_to_end_with_paired_bootstrap(tmp_path):
    results = synthetic_results()
    settings = [HalvingSetting(2, 0.025, 0.2), HalvingSetting(3, 0.05, 1.0)]
    methods = ["tse", "param-count", "params-copy"]
    plan = SimulationPlan(methods, settings, replicates=200, seed=3, keep_replicates=True)
    sim = simulate_results(results, plan, workers=1)
    assert sim["methods"] == ["last-observed", *methods]
    rows = {(r["method"], r["setting"]): r for r in sim["rows"]}
    assert len(rows) == 4 * 2 + 1
    # truth: the other seed's final accuracy (mean over the last epoch)
    runs = {(r["model"], r["seed"]): r for r in results["runs"]}
    truth0 = [final_accuracy(runs[(f"m{i}", 1)]) for i in range(5)]
    assert list(sim["truth"]["t/s0"].values()) == pytest.approx(truth0)
    best = max(truth0)

    # 5 candidates, eta 2, 2.5% -> 20%: 5 -> 3 -> 2 -> 1 at 2.5, 5, 10% of T
    a = settings[0].name
    assert sim["settings"][0]["schedule"] == [[0.025, 5, 3], [0.05, 3, 2], [0.1, 2, 1]]
    assert rows[("tse", a)]["compute"]["value"] == pytest.approx(
        (2 * 0.025 + 1 * 0.05 + 1 * 0.1 + 1.0) / 5
    )
    assert rows[("tse", a)]["compute"]["ci95"] == pytest.approx([0.24, 0.24])  # n is fixed
    # the last observed accuracy at 2.5% (1 epoch) favours the fast models 0, 1, 2 and keeps
    # the fast ones: it never sees the slow model 4, which ends best
    d = {(x["method"], x["setting"], x["seed"]): x for x in sim["decisions"]}
    lo = d[("last-observed", a, 0)]
    acc1 = [runs[(f"m{i}", 0)]["points"][3]["val_accuracy"] for i in range(5)]
    assert lo["rungs"][0]["ranked"] == [f"m{i}" for i in np.argsort(acc1)[::-1]]
    assert lo["pick"] != "m4" and lo["regret"] == pytest.approx(
        100 * (best - truth0[int(lo["pick"][1])])
    )
    assert rows[("last-observed", a)]["regret"]["value"] > 0
    # training everything to T and taking the best last observation: the slow, best model
    base = rows[("last-observed", "train-all")]
    assert base["compute"]["value"] == 1.0 and base["regret"]["value"] == pytest.approx(0.0)
    # param-count prefers the largest model, which is m4 here: no regret at a low cost
    assert rows[("param-count", a)]["regret"]["value"] == 0.0

    for row in sim["rows"]:  # every interval holds its point estimate
        for key in ("regret", "compute", "compute_time"):
            lo_, hi_ = row[key]["ci95"]
            assert lo_ - 1e-12 <= row[key]["value"] <= hi_ + 1e-12, (row["method"], key)
    # paired: identical scores give identical halving in every replicate
    for st in settings:
        p, q = rows[("param-count", st.name)], rows[("params-copy", st.name)]
        assert p["replicates"]["regret"] == q["replicates"]["regret"]
        assert p["diff_last_observed"] == q["diff_last_observed"]
        ref = rows[("last-observed", st.name)]
        assert ref["diff_last_observed"]["ci95"] == [0.0, 0.0]
        diffs = np.subtract(p["replicates"]["regret"], ref["replicates"]["regret"])
        assert p["diff_last_observed"]["ci95"] == pytest.approx(np.percentile(diffs, [2.5, 97.5]))
    # the time-weighted compute counts the dear models more: param-count promotes the slow m4
    assert (
        rows[("param-count", a)]["compute_time"]["value"]
        > rows[("param-count", a)]["compute"]["value"]
    )

    # the scores can be passed back: nothing is recomputed, the figures are the same
    again = simulate_results(results, dataclasses.replace(plan, keep_replicates=False), workers=1,
                             scores=sim["scores"])  # fmt: skip
    assert [r["regret"] for r in again["rows"]] == [r["regret"] for r in sim["rows"]]

    files = write_simulation(sim, tmp_path / "out")
    assert json.loads(files["json"].read_text())["rows"][0]["method"] == "last-observed"
    md = files["markdown"].read_text()
    assert "| eta2 2.5%-20% | `tse` | 24.0 |" in md and "train everything to T" in md
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulation_replays_the_models_run_everywhere_and_names_the_others():
    results = synthetic_results()
    results["runs"] = [r for r in results["runs"] if not (r["model"] == "m2" and r["seed"] == 1)]
    sim = simulate_results(results, SimulationPlan(["tse"], replicates=10), workers=1)
    assert sim["source"]["models_left_out"] == ["m2"]
    assert "m2" not in sim["source"]["models"] and len(sim["source"]["models"]) >= 2
    assert all(d["pick"] != "m2" for d in sim["decisions"])
    assert "Left out (1, not run on every target" in render_markdown(sim)
    one_seed = synthetic_results()
    one_seed["plan"]["seeds"] = [0]
    one_seed["runs"] = [r for r in one_seed["runs"] if r["seed"] == 0]
    with pytest.raises(ConfigError, match="seed protocol"):
        simulate_results(one_seed, SimulationPlan(["tse"], replicates=10), workers=1)
    for bad in (0, -5, 2.5, True):  # before any scoring
        with pytest.raises(ConfigError, match="replicates must be a positive number"):
            SimulationPlan(["tse"], replicates=bad)


def test_cli_bench_simulate(tmp_path, capsys):
    import json

    from ncap.cli import main

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(synthetic_results()))
    out = tmp_path / "sim"
    code = main(
        [
            "bench",
            "simulate",
            str(path),
            "--out",
            str(out),
            "--methods",
            "tse",
            "--replicates",
            "20",
        ]
    )
    assert code == 0
    sim = json.loads((out / "simulation.json").read_text())
    methods = {row["method"] for row in sim["rows"]}
    assert {"tse", "last-observed"} <= methods  # last-observed is always the reference
    assert (out / "regret_vs_compute.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Successive halving" in capsys.readouterr().out
    assert main(["bench", "simulate", str(tmp_path / "nope.json")]) != 0
