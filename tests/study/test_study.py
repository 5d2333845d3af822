"""The pre-registered study (issue 14): candidate list, fast bootstrap metrics, dynamics
features, selection rule, recalibration and the two stages end to end on synthetic results."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from ncap.bench.study import stages
from ncap.bench.study.bootstrap import (
    draw_counts,
    fill_failures,
    kendall_boot,
    mae_boot,
    spearman_boot,
    top1_regret_boot,
    top3_regret_boot,
)
from ncap.bench.study.candidates import Candidate, candidates, current_default, paper_form
from ncap.bench.study.cli import frozen_differences, run_study
from ncap.bench.study.combine import fit_gain_model, rank_average
from ncap.bench.study.selection import choose
from ncap.exceptions import ConfigError
from ncap.metrics import ranking_metrics
from ncap.predict.dynamics import beta_series, dynamics_feature
from ncap.predict.scores import parse_nc, run_score, score_names

# ------------------------------------------------------------------------------- candidates


def test_candidate_list_matches_the_protocol_counts():
    both = candidates(("interval", "fixed"))
    assert len(both) == 122
    assert sum(c.nc for c in both) == 112
    counts = {}
    for c in both:
        counts[c.family[:2].rstrip("-")] = counts.get(c.family[:2].rstrip("-"), 0) + 1
    assert counts == {"A": 72, "B": 7, "C": 24, "D1": 12, "D2": 7}
    assert len(candidates(("interval",))) == 66
    names = {c.name for c in both}
    assert len(names) == len(both)
    assert all(c.control in names for c in both if c.control)
    assert paper_form() == "nc/interval/signed/linear/b0/identity"
    assert current_default("fixed") == "nc/fixed/abs-mean/quadratic/b0/logit"
    # every run-level candidate is a registered per-run score
    assert {c.name for c in both if c.kind == "run"} <= set(score_names())


def test_nc_names_round_trip_and_malformed_names_say_the_form():
    s = parse_nc("nc/fixed/mean-abs/linear/b2/logit")
    assert (s.measurement, s.variant, s.features, s.burn_in, s.link) == (
        "fixed", "mean-abs", "linear", 2, "logit",
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"nc/\{measurement\}"):
        parse_nc("nc/abs-mean/linear/b0/logit")
    with pytest.raises(ConfigError, match="unknown score"):
        run_score("no-such-score", [], 4, {})
    with pytest.raises(ConfigError, match="malformed dynamics"):
        run_score("dyn/interval/signed/slope", [], 4, {"steps_per_epoch": 4})


# ------------------------------------------------------------------------------- bootstrap


def _expanded_metrics(x, y, counts):
    idx = np.repeat(np.arange(len(x)), counts.astype(int))
    scores = [None if not np.isfinite(v) else float(v) for v in x[idx]]
    return ranking_metrics(scores, y[idx], predicts_accuracy=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_metrics_equal_ranking_metrics_on_expanded_resamples(seed):
    rng = np.random.default_rng(seed)
    n = 15
    x = rng.normal(size=n)
    x[[1, 4]] = np.nan  # failures rank last
    x[6] = x[7]  # a tie in the scores
    y = rng.uniform(0.5, 0.95, size=n)
    y[2] = y[3]  # a tie in the truth
    w = draw_counts(n, 12, seed)
    filled = fill_failures(x)
    got = {
        "kendall": kendall_boot(filled, y, w),
        "spearman": spearman_boot(filled, y, w),
        "top1_regret": top1_regret_boot(filled, y, w),
        "top3_regret": top3_regret_boot(filled, y, w),
        "mae": mae_boot(x, y, w),
    }
    for b in range(w.shape[0]):
        ref = _expanded_metrics(x, y, w[b])
        for key, values in got.items():
            assert values[b] == pytest.approx(ref[key], abs=1e-12), (key, b)


def test_draws_are_shared_and_reproducible():
    a, b = draw_counts(40, 2000, 14), draw_counts(40, 2000, 14)
    assert np.array_equal(a, b) and a.shape == (2000, 40)
    assert np.all(a.sum(axis=1) == 40)
    x, y = np.arange(10.0), np.arange(10.0)[::-1]
    assert kendall_boot(x, y, np.ones((1, 10)))[0] == pytest.approx(-1.0)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert kendall_boot(x, y, np.ones((1, 30)))[0] == pytest.approx(
        stats.kendalltau(x, y).statistic, abs=1e-12
    )


# ------------------------------------------------------------------------------- dynamics


def _points(epochs, betas, field="beta_eff", variant="abs-mean", spe=4):
    return [
        {"step": int(round(e * spe)), "epoch": e, field: {variant: b}, "val_accuracy": 0.5}
        for e, b in zip(epochs, betas)
    ]


def test_dynamics_features_against_hand_computation():
    epochs = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
    betas = np.array([2.0, 3.0, 1.4, 1.0, 0.9, 0.5])
    pts = _points(epochs, betas)
    e, b = beta_series(pts, 6, measurement="interval", variant="abs-mean")
    assert np.allclose(e, epochs) and np.allclose(b, betas)
    x, y = np.log(epochs), np.log(betas)
    assert dynamics_feature("slope", e, b, budget_epoch=1.5) == pytest.approx(
        stats.linregress(x, y).slope
    )
    xc = x - x.mean()
    assert dynamics_feature("curv", e, b, budget_epoch=1.5) == pytest.approx(
        np.polyfit(xc, y, 2)[0]
    )
    # beta first falls to half its running peak (3.0) at epoch 0.75 (1.4 <= 1.5)
    assert dynamics_feature("t50", e, b, budget_epoch=1.5) == pytest.approx(math.log(0.75))
    assert dynamics_feature("drop-peak", e, b, budget_epoch=1.5) == pytest.approx(
        math.log(0.5 / 3.0)
    )
    assert dynamics_feature("drop-first", e, b, budget_epoch=1.5) == pytest.approx(
        math.log(0.5 / 2.0)
    )
    assert dynamics_feature("level", e, b, budget_epoch=1.5) == pytest.approx(math.log(0.5))
    # never halved: censored at ln(2 x budget epoch), not a failure
    flat = np.array([1.0, 0.9, 0.8])
    assert dynamics_feature("t50", epochs[:3], flat, budget_epoch=0.75) == pytest.approx(
        math.log(1.5)
    )


def test_dynamics_fail_with_too_few_points_and_skip_nonpositive_values():
    pts = _points([0.25, 0.5, 0.75, 1.0], [1.0, -0.5, float("nan"), 0.4])
    e, b = beta_series(pts, 4, measurement="interval", variant="abs-mean")
    assert list(b) == [1.0, 0.4]
    with pytest.raises(ValueError, match="slope needs at least 3 points"):
        dynamics_feature("slope", e, b, budget_epoch=1.0)
    score = run_score("dyn/interval/abs-mean/curv", pts, 4, {"steps_per_epoch": 4})
    assert score.value is None and "curv needs at least 4" in score.reason
    fixed = _points([0.25, 0.5, 0.75], [1.0, 0.5, 0.25], field="beta_eff_fixed")
    s = run_score("dyn/fixed/abs-mean/slope", fixed, 3, {"steps_per_epoch": 4}, sign=-1.0)
    assert s.value == pytest.approx(-stats.linregress(np.log([0.25, 0.5, 0.75]),
                                                      np.log([1.0, 0.5, 0.25])).slope)  # fmt: skip


def test_fixed_measurement_extrapolation_reads_beta_eff_fixed():
    pts = [
        {"step": 4 * (i + 1), "epoch": i + 1.0, "beta_eff": {"abs-mean": 9.0},
         "beta_eff_fixed": {"abs-mean": 1.0 - 0.2 * i}, "val_accuracy": 0.5 + 0.1 * i}
        for i in range(4)
    ]  # fmt: skip
    fixed = run_score("nc/fixed/abs-mean/linear/b0/identity", pts, 16, {})
    assert fixed.value == pytest.approx(1.0, abs=0.02)  # accuracy linear in beta -> 1.0 at 0
    assert fixed.link == "identity" and fixed.link_mean == pytest.approx(fixed.value)
    interval = run_score("nc/interval/abs-mean/linear/b0/identity", pts, 16, {})
    # the interval measurement is constant here: no trend, the fit returns the mean accuracy
    assert interval.value == pytest.approx(0.65, abs=1e-6) and interval.sd > 0.5


# ------------------------------------------------------------------------------- selection


def test_simplicity_rule_prefers_the_simpler_candidate_within_delta():
    pool = [Candidate("simple", "B", 0, False), Candidate("complex", "D2", 4, False),
            Candidate("mid", "D1", 2, False)]  # fmt: skip
    assert choose(pool, {"simple": 0.50, "complex": 0.52, "mid": 0.51}) == "simple"
    assert choose(pool, {"simple": 0.40, "complex": 0.52, "mid": 0.50}) == "mid"
    assert choose(pool, {"simple": 0.40, "complex": 0.60, "mid": 0.50}) == "complex"


def test_rank_average_and_the_fitted_gain_model():
    avg = rank_average([np.array([1.0, 2.0, np.nan]), np.array([3.0, 2.0, 1.0])])
    assert np.allclose(avg, [(0.5 + 1.0) / 2, (1.0 + 0.5) / 2, 0.0])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x[:, 2] = 1.0  # constant: dropped
    y = 2.0 * x[:, 0] - x[:, 1] + 0.01 * rng.normal(size=200)
    x_test = np.array([[1.0, 1.0, 1.0], [np.nan, 0.0, 1.0]])
    mean, sd = fit_gain_model(x, y, x_test)
    assert mean[0] == pytest.approx(1.0, abs=0.02) and sd[0] < 0.1
    assert np.isnan(mean[1]) and np.isnan(sd[1])


def test_holm_and_bootstrap_p_values():
    assert stages._p_value(np.array([1.0, 2.0, 3.0, -1.0])) == pytest.approx(0.5)
    assert stages._p_value(np.ones(100)) == 0.0
    holm = stages._holm({"a": 0.01, "b": 0.02, "c": 0.04})
    assert holm == {"a": True, "b": True, "c": True}
    holm = stages._holm({"a": 0.01, "b": 0.03, "c": 0.04})
    assert holm == {"a": True, "b": False, "c": False}


# ------------------------------------------------------------------------------- stages


def synthetic_results(n_models: int = 6, n_targets: int = 3, seed: int = 0) -> dict:
    """Runs whose final accuracy follows a model quality, with seed noise and beta_eff decaying
    faster for better models; quarter-epoch points to 20% of T = 40 epochs, then every epoch."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(n_models)]
    targets = [f"t{j}" for j in range(n_targets)]
    quality = np.linspace(0.6, 0.9, n_models)
    spe = 4
    epochs = [0.25 * k for k in range(1, 33)] + [float(e) for e in range(9, 41)]
    runs, free = [], {}
    for j, t in enumerate(targets):
        free[t] = {
            m: {"family": f"fam{i % 3}", "parameters": 1000 * (i + 1), "source_accuracy": 0.8,
                "num_features": 32, "logme": float(quality[i] + rng.normal(0, 0.05))}
            for i, m in enumerate(models)
        }  # fmt: skip
        for i, m in enumerate(models):
            for s in (0, 1):
                final = quality[i] - 0.02 * j + rng.normal(0, 0.01)
                rate = 0.5 + quality[i] + rng.normal(0, 0.05)
                points = []
                for e in epochs:
                    acc = final * (1 - 0.5 * np.exp(-e / 3)) + rng.normal(0, 0.005)
                    beta = {"signed": 0.1 * e**-rate, "mean-abs": 0.2 * e**-rate,
                            "abs-mean": 0.15 * e ** -(rate * 1.1)}  # fmt: skip
                    points.append({
                        "step": int(e * spe), "epoch": e, "beta_eff": beta,
                        "beta_eff_fixed": {k: 1.5 * v for k, v in beta.items()},
                        "train_loss": 1.0 - acc, "val_loss": 1.0 - acc,
                        "val_accuracy": float(np.clip(acc, 0, 1)),
                    })  # fmt: skip
                runs.append({"target": t, "model": m, "seed": s, "steps_per_epoch": spe,
                             "total_steps": 160, "points": points})  # fmt: skip
    plan = {"models": models, "targets": [{"key": t} for t in targets], "seeds": [0, 1],
            "epochs": 40.0, "kind": "zoo"}  # fmt: skip
    return {"plan": plan, "training_free": free, "runs": runs}


@pytest.fixture
def fast_curves(monkeypatch):
    """The learning-curve baseline (tested in test_learning_curves.py) dominates the scoring
    time; here it is replaced by the last observed accuracy so the stages run in seconds."""
    from ncap.predict import baselines

    monkeypatch.setitem(baselines.BASELINES, "learning-curve", baselines.BASELINES["last-observed"])


@pytest.mark.slow
def test_selection_then_report_end_to_end(tmp_path, fast_curves):
    results = synthetic_results()
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(results))
    sha = stages.data_sha256(path)
    sel = stages.selection_stage(results, data_sha=sha, replicates=50, workers=1)
    assert sel["n_candidates"] == 122 and sel["data_sha256"] == sha
    for b in ("early", "late"):
        w = sel["winners"][b]
        assert w["W_all"] in (w["W_nc"], w["W_non"])
        assert sel["S"][b][w["W_nc"]] >= max(
            v for k, v in sel["S"][b].items() if any(c["name"] == k and c["nc"]
                                                     for c in sel["candidates"])
        ) - 0.03  # fmt: skip
    # better models decay faster here: the slope's orientation is -1
    assert sel["sigma"]["dyn/interval/abs-mean/slope"] == -1.0
    json.loads(json.dumps(sel))  # JSON-ready
    rep = stages.report_stage(json.loads(json.dumps(results)), sel, data_sha=sha, workers=1)
    lo = rep["tables"]["last-observed"]["0.1"]
    assert -1 <= lo["kendall"]["value"] <= 1
    low, high = lo["kendall"]["ci95"]
    assert low - 1e-9 <= lo["kendall"]["value"] <= high + 1e-9
    assert lo["minus_lo"]["value"] == 0.0
    assert set(rep["tests"]) >= {"T1/early", "T1/late", "H1/early", "H2/early"}
    assert all(d["score"] in {c["name"] for c in sel["candidates"]}
               for d in rep["defaults"].values())  # fmt: skip
    assert rep["noise_ceiling"]["kendall"]["value"] > 0.5
    with pytest.raises(ConfigError, match="selected on"):
        stages.report_stage(results, sel, data_sha="0" * 64, workers=1)


def test_run_study_freezes_the_selection_and_refuses_a_changed_one(tmp_path, fast_curves):
    results = synthetic_results(n_models=5, n_targets=2, seed=1)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "study"
    assert run_study(path, results, out, stage="selection", replicates=30, workers=1) == 0
    assert (out / "selection.json").exists() and not (out / "report.json").exists()
    assert run_study(path, results, out, stage="report", workers=1) == 0
    assert "Study report" in (out / "report.md").read_text()
    assert (out / "kendall_vs_budget.png").stat().st_size > 1000
    committed = json.loads((out / "selection.json").read_text())
    changed = json.loads(json.dumps(committed))
    changed["sigma"]["dyn/interval/abs-mean/slope"] *= -1
    assert frozen_differences(committed, changed) == ["sigma"]
    (out / "selection.json").write_text(json.dumps(changed))
    with pytest.raises(ConfigError, match="differs from the committed"):
        run_study(path, results, out, stage="all", replicates=30, workers=1)


def test_fitted_gain_model_stored_as_numbers_predicts_like_sklearn():
    from sklearn.linear_model import BayesianRidge

    from ncap.predict.fitted import FittedGain

    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 4))
    x[:, 3] = 2.0  # constant: dropped
    x[5, 1] = np.nan  # dropped row
    y = 0.7 * x[:, 0] - 0.2 * x[:, 1] + 0.1 * rng.normal(size=120)
    fitted = FittedGain.fit(x, y, ["a", "b", "c", "d"])
    assert fitted.features == ("a", "b", "c") and fitted.n_rows == 119
    restored = FittedGain.from_dict(json.loads(json.dumps(fitted.to_dict())))
    x_test = np.vstack([rng.normal(size=(5, 3)), [[np.nan, 0.0, 0.0]]])
    mean, sd = restored.predict(x_test)
    ok = np.isfinite(x).all(axis=1)
    mu, s = x[ok][:, :3].mean(axis=0), x[ok][:, :3].std(axis=0)
    ref = BayesianRidge().fit((x[ok][:, :3] - mu) / s, y[ok])
    ref_mean, ref_sd = ref.predict((x_test[:5] - mu) / s, return_std=True)
    assert np.allclose(mean[:5], ref_mean, rtol=1e-10, atol=1e-12)
    assert np.allclose(sd[:5], ref_sd, rtol=1e-10, atol=1e-12)
    assert np.isnan(mean[5]) and np.isnan(sd[5])
    # the study's cell-level fit is the same model
    got_mean, got_sd = fit_gain_model(x, y, np.column_stack([x_test, np.full(6, 2.0)]))
    assert np.allclose(got_mean[:5], ref_mean) and np.allclose(got_sd[:5], ref_sd)
