"""The bench-v3 study (docs/benchmark-v3-protocol.md): cross-fitting against a brute-force fit, the
two-way bootstrap against its definition, and both stages end to end on a bench-v2 subset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.linear_model import BayesianRidge

from ncap.bench.study.bootstrap import draw_counts, kendall_boot
from ncap.bench.study.candidates import PORTABLE_FEATURES, candidates_v3
from ncap.bench.study.combine import CrossFit, cell_scores
from ncap.bench.study.table import ScoreTable, logit
from ncap.exceptions import ConfigError

BENCH_V2 = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "bench-v2.json"


def _toy_table(rng) -> tuple[ScoreTable, dict[str, str], list[str]]:
    targets = ["a1", "a2", "b1", "c1"]
    families = {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}
    models = [f"m{i}" for i in range(6)]
    model_family = ["g1", "g1", "g2", "g2", "g3", "g3"]
    final = {
        (t, m, s): float(rng.uniform(0.2, 0.9)) for t in targets for m in models for s in (0, 1)
    }
    table = ScoreTable(targets, models, [0], [0.1], 40.0, final, ["last-observed"])
    for t in targets:
        for name in PORTABLE_FEATURES:
            table.feature[(name, 0.1, t, 0)] = rng.normal(size=len(models))
    table.feature[("lo", 0.1, "b1", 0)][2] = np.nan  # a row that cannot train (or be scored)
    return table, families, model_family


def test_cross_fitting_equals_a_brute_force_fit_on_other_families_only():
    rng = np.random.default_rng(0)
    table, families, model_family = _toy_table(rng)
    cand = next(c for c in candidates_v3(("interval",)) if c.name == "fit/portable")
    keep = {t: np.ones(len(table.models), bool) for t in table.targets}
    crossfit = CrossFit(families, tuple((g,) for g in model_family))
    sc = cell_scores(cand, table, 0.1, "a1", 0, sigma={}, keep=keep, crossfit=crossfit)
    for i in range(len(table.models)):
        xs, ys = [], []
        for t in ("b1", "c1"):  # other dataset families only
            for j, other in enumerate(table.models):
                if model_family[j] == model_family[i]:  # other model families only
                    continue
                x = [table.feature[(n, 0.1, t, 0)][j] for n in PORTABLE_FEATURES]
                if np.isfinite(x).all():
                    xs.append(x)
                    ys.append(logit(table.final[(t, other, 1)]) - x[0])
        x, y = np.array(xs), np.array(ys)
        mean, sd = x.mean(axis=0), x.std(axis=0)
        model_fit = BayesianRidge().fit((x - mean) / sd, y)
        test = np.array([[table.feature[(n, 0.1, "a1", 0)][i] for n in PORTABLE_FEATURES]])
        gain, gain_sd = model_fit.predict((test - mean) / sd, return_std=True)
        assert sc.link_mean[i] == pytest.approx(test[0, 0] + gain[0], abs=1e-9)
        assert sc.link_sd[i] == pytest.approx(gain_sd[0], abs=1e-9)
        assert sc.value[i] == pytest.approx(1 / (1 + np.exp(-(test[0, 0] + gain[0]))), abs=1e-12)
    # a scored row with a missing feature fails; the strictest mode also drops same-source rows
    sc_b = cell_scores(cand, table, 0.1, "b1", 0, sigma={}, keep=keep, crossfit=crossfit)
    assert np.isnan(sc_b.value[2]) and np.isfinite(np.delete(sc_b.value, 2)).all()
    strict = CrossFit(families, tuple((g, "s") for g in model_family))
    assert not strict.train_models(("g1", "s")).any()  # one source task: nothing may train
    assert np.isnan(
        cell_scores(cand, table, 0.1, "a1", 0, sigma={}, keep=keep, crossfit=strict).value
    ).all()


def test_two_way_bootstrap_is_the_mean_over_drawn_targets_of_kendall_on_drawn_models():
    rng = np.random.default_rng(1)
    n_targets, n_models, reps = 4, 7, 25
    x = rng.normal(size=(n_targets, n_models))
    y = rng.normal(size=(n_targets, n_models))
    mc = draw_counts(n_models, reps, 26)
    tc = draw_counts(n_targets, reps, 27)
    per = np.array([kendall_boot(x[t], y[t], mc) for t in range(n_targets)])  # (targets, B)
    two = (tc * per.T).sum(axis=1) / tc.sum(axis=1)
    for b in range(reps):  # brute force: expand both draws, scipy's tau-b on the expanded lists
        models = np.repeat(np.arange(n_models), mc[b].astype(int))
        targets = np.repeat(np.arange(n_targets), tc[b].astype(int))
        taus = [kendalltau(x[t][models], y[t][models]).statistic for t in targets]
        assert two[b] == pytest.approx(np.mean(taus), abs=1e-12)


def _load_check_script():
    import importlib.util

    path = BENCH_V2.parents[1] / "check_v3_headline.py"
    spec = importlib.util.spec_from_file_location("check_v3_headline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _v3_like(tmp_path: Path) -> Path:
    """A bench-v3-shaped file from bench-v2's runs: three dataset families, four model families,
    two source tasks, one (target, model, seed) run missing."""
    r = json.loads(BENCH_V2.read_text())
    fam = {"fm59": "fashion-mnist", "footwear": "fashion-mnist", "digits": "digits",
           "digits-256": "digits", "fm59-rot90": "rotated"}  # fmt: skip
    wanted = ("mlp", "cnn", "lenet", "resnet")
    by_family = {g: [m for m in r["plan"]["models"] if r["zoo"][m]["family"] == g] for g in wanted}
    models = [m for g in wanted for m in by_family[g][:2]]
    r["plan"]["models"] = models
    r["plan"]["targets"] = [dict(t, family=fam[t["key"]]) for t in r["plan"]["targets"]
                            if t["key"] in fam]  # fmt: skip
    r["runs"] = [x for x in r["runs"] if x["target"] in fam and x["model"] in models]
    r["runs"] = [
        x
        for x in r["runs"]
        if not (x["target"] == "footwear" and x["model"] == models[0] and x["seed"])
    ]
    r["zoo"] = {m: dict(r["zoo"][m], source_task=("glyphs", "fm")[i % 2])
                for i, m in enumerate(models)}  # fmt: skip
    path = tmp_path / "bench-v3.json"
    path.write_text(json.dumps(r))
    return path


def test_the_check_scripts_decay_slope_equals_ncaps_dynamics_feature():
    """The independent check's beta_eff decay slope (numpy's polyfit) against
    ncap.predict.dynamics (centred least squares), on bench-v2 runs at every study budget."""
    from ncap.predict.dynamics import beta_series, dynamics_feature

    check = _load_check_script()
    runs = json.loads(BENCH_V2.read_text())["runs"][:40]
    compared = 0
    for run in runs:
        for f in (0.025, 0.05, 0.1, 0.2):
            points = check.budget_points(run, 40.0, f)
            max_step = points[-1]["step"]
            for measurement, field in (("interval", "beta_eff"), ("fixed", "beta_eff_fixed")):
                mine = check.decay_slope(points, field, "mean-abs")
                x, b = beta_series(run["points"], max_step, measurement=measurement,
                                   variant="mean-abs")  # fmt: skip
                if len(b) < 3:
                    assert math.isnan(mine)
                    continue
                theirs = dynamics_feature("slope", x, b, budget_epoch=points[-1]["epoch"])
                assert mine == pytest.approx(theirs, rel=1e-9, abs=1e-12)
                compared += 1
    assert compared > 100


@pytest.mark.slow
def test_v3_stages_end_to_end_on_a_bench_v2_subset(tmp_path, capsys):
    from ncap.bench.study.cli import run_study
    from ncap.bench.study.v3 import BUDGETS, Q1_BUDGETS

    path = _v3_like(tmp_path)
    results = json.loads(path.read_text())
    out = tmp_path / "study"
    assert run_study(path, results, out, stage="selection", replicates=60, workers=1) == 0
    sel = json.loads((out / "selection.json").read_text())
    assert sel["format"] == "ncap-study-v3/1" and set(sel["winners"]) == {str(f) for f in BUDGETS}
    assert sel["dropped_pairs"]["footwear"] == [results["plan"]["models"][0]]
    assert run_study(path, results, out, stage="report", workers=1) == 0
    rep = json.loads((out / "report.json").read_text())
    tests = rep["tests"]
    assert list(tests) == [f"Q1/{f}" for f in Q1_BUDGETS] + ["Q2/early", "Q2/late"]
    # Holm: the k-th smallest p passes iff every smaller one passes and p_(k) <= alpha/(5-k)
    ordered = sorted(tests.values(), key=lambda t: t["p"])
    ok = True
    for k, t in enumerate(ordered):
        ok = ok and t["p"] <= 0.05 / (len(ordered) - k)
        assert t["holm_passes"] == ok
    for f, d in rep["defaults"].items():  # section 3.5: W_all only where its lower bound > 0
        w = sel["winners"][f]["W_all"]
        assert d["W_all"] == w
        beats = w != "last-observed" and d["W_all_minus_lo"]["ci95"][0] > 0
        assert d["score"] == (w if beats else "last-observed")
        assert (d["message"] is None) == beats
    assert set(rep["secondary_crossfitting"]) == {"loto", "strictest"}
    assert (out / "report.md").read_text().startswith("# bench-v3 study: report half")
    assert (out / "kendall_vs_budget.png").stat().st_size > 1000
    # the independent check (numpy/scipy/sklearn only) agrees with the report to 1e-9
    check = _load_check_script()
    code = check.main([str(path), "--study", str(out)])
    printed = capsys.readouterr().out
    assert code in (0, 2) and "DIFFERS" not in printed and "LO mean Kendall" in printed
    data = check.Data(results)
    data.sigma = sel["sigma"]
    for name in ("fit/portable", "ravg/lo+logme", "tse-e1", "last-observed",
                 "ravg/lo+logme+dyn/interval/mean-abs"):  # fmt: skip
        ref = rep["candidates_by_budget"][name]["0.1"]["value"]
        assert data.kendall(name, 0.1) == pytest.approx(ref, abs=1e-9), name
    # other data: the report stage refuses the frozen selection
    results["runs"] = results["runs"][:-1]
    path.write_text(json.dumps(results))
    with pytest.raises(ConfigError, match="selected on"):
        run_study(path, results, out, stage="report", workers=1)
