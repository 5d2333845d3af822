"""benchmarks/power_v3.py: the strict cross-fitting leaves out what it claims, the two-way interval
widens with fewer models, and the variance projection matches the bootstrap it projects."""

import sys
from pathlib import Path

import numpy as np
import pytest

from ncap.bench.study.bootstrap import draw_counts
from ncap.bench.study.table import ScoreTable

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
power = pytest.importorskip("power_v3")


def _world(n_targets: int, n_models: int, seed: int = 0):
    """Truth with a model effect shared by targets; score a is closer to it than score b."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n_models)
    y = 0.7 + 0.05 * (quality[None, :] + 0.5 * rng.normal(size=(n_targets, n_models)))
    x_a = y + 0.02 * rng.normal(size=y.shape)
    x_b = y + 0.08 * rng.normal(size=y.shape)
    return x_a, x_b, y


def test_fewer_models_give_a_wider_two_way_interval():
    x_a, x_b, y = _world(6, 40)
    full = power.measure(x_a, x_b, y, 1000, seed=1)
    few = power.measure(x_a[:, :10], x_b[:, :10], y[:, :10], 1000, seed=1)
    assert full.point > 0.1  # a is the better score
    assert few.half_width() > 1.4 * full.half_width()
    lo, hi = full.interval()
    assert lo < full.point < hi
    assert full.half_width("two_way") >= full.half_width("model")


def test_the_projection_reproduces_the_two_way_bootstrap_and_scales_down():
    x_a, x_b, y = _world(8, 40, seed=3)
    diff = power.measure(x_a, x_b, y, 2000, seed=2)
    comp = power.components(diff)
    assert comp.n_models == 40 and comp.n_targets == 8
    assert comp.v_diag >= comp.v_off > 0  # one model draw moves every target
    here = power.project(comp, 40, 8)
    assert here.se_two_way == pytest.approx(np.std(diff.two_way_boot), rel=0.15)
    bigger = power.project(comp, 80, 30)
    assert bigger.half_width < here.half_width and bigger.mde80 < here.mde80
    assert bigger.power["0.1"] > here.power["0.1"]
    assert sum(here.shares.values()) == pytest.approx(1.0) and min(here.shares.values()) >= 0
    # half the models, measured on a subset, against the projection of the full components
    sub = power.measure(x_a[:, :20], x_b[:, :20], y[:, :20], 2000, seed=4)
    assert power.project(comp, 20, 8).se_two_way == pytest.approx(np.std(sub.two_way_boot), rel=0.3)


def test_kendall_difference_checks_shapes():
    x_a, x_b, y = _world(3, 10)
    with pytest.raises(ValueError, match="shape"):
        power.kendall_difference(
            x_a[:, :9], x_b, y, draw_counts(10, 5, 0), power.target_counts(3, 5, 0)
        )


def _table():
    """4 targets (dataset families A, A, B, C) x 6 models (families f, f, g, g, h, h), 2 seeds."""
    rng = np.random.default_rng(0)
    targets, models = ["A1", "A2", "B1", "C1"], [f"m{i}" for i in range(6)]
    table = ScoreTable(targets, models, [0, 1], [0.05], 40.0, {}, ["last-observed", "tse-e1"])
    for t in targets:
        for s in (0, 1):
            acc = rng.uniform(0.5, 0.9, size=6)
            for i, m in enumerate(models):
                table.final[(t, m, s)] = float(acc[i])
            for name in ("lo", "lo_slope", "tse_e1", "logme"):
                table.feature[(name, 0.05, t, s)] = rng.normal(size=6)
    plan = {"targets": [{"key": t, "dataset": "x", "family": t[0]} for t in targets]}
    return table, plan, ["f", "f", "g", "g", "h", "h"]


def _scores(table, plan, families):
    scheme = power.SCHEMES[0]  # dataset family + model family
    target_units, model_units = power.units(scheme, plan, table.models, families)
    keep = {t: np.ones(6, bool) for t in table.targets}
    return power.fitted_scores(
        power.PORTABLE, table, 0.05, "A1", 1, keep, target_units, model_units
    )


def test_strict_cross_fitting_trains_on_other_dataset_and_model_families_only():
    table, plan, families = _table()
    before = _scores(table, plan, families)
    assert np.isfinite(before).all()
    # the same dataset family's other target: never a training row
    table.final.update({("A2", m, 0): 0.99 for m in table.models})
    assert np.allclose(_scores(table, plan, families), before)
    # another dataset family, the scored model's family (m0, m1: f): not used for m0 and m1
    table.final.update({("B1", "m0", 0): 0.99, ("B1", "m1", 0): 0.51})
    after = _scores(table, plan, families)
    assert np.allclose(after[:2], before[:2])
    assert not np.allclose(after[2:], before[2:])  # g and h are scored by fits that used them


def test_the_projection_from_small_pilots_predicts_larger_studies_in_a_synthetic_world():
    r = power.simulation_check(
        power.World(), (20, 5), (30, 8), studies=60, pilots=8, replicates=300, seed=5
    )
    assert r["true_delta"] > 0.05  # the world's fit beats its LO
    measured, projected = r["measured"], r["projected_from_small"]
    assert projected["se_true"]["mean"] == pytest.approx(measured["se_true"], rel=0.3)
    assert projected["se_two_way"]["mean"] == pytest.approx(measured["se_two_way"], rel=0.3)
    assert measured["se_two_way"] >= measured["se_true"] * 0.9  # the two-way bootstrap is wide
