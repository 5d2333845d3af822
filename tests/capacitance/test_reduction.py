"""Tests for ncap.capacitance.reduction: the Gao-Barzel-Barabasi (Nature 2016) mean-field reduction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from ncap.capacitance.graph import beta_eff
from ncap.capacitance.reduction import (
    DYNAMICS,
    GeneRegulatoryDynamics,
    MutualisticDynamics,
    ReductionResult,
    random_graph,
    reduce,
    simulate_full,
    simulate_reduced,
    weighted_mean_operator,
)

SEEDS = range(5)
MEAN_DEGREES = (12, 24)
N_NODES = 200


def ring_graph(n: int, k: int) -> sp.csr_matrix:
    """Each node i is linked to its k next neighbours i+1, ..., i+k (mod n): k-regular."""
    rows = np.repeat(np.arange(n), k)
    cols = (rows + np.tile(np.arange(1, k + 1), n)) % n
    return sp.csr_matrix((np.ones(n * k), (rows, cols)), shape=(n, n))


def gene_regulatory_high_state(beta: float) -> float:
    """Active root of -x + beta x^2 / (x^2 + 1) = 0 (B = 1, f = 1, h = 2)."""
    return (beta + np.sqrt(beta**2 - 4.0)) / 2.0


# --------------------------------------------------------------------------------------------
# weighted mean operator
# --------------------------------------------------------------------------------------------


def test_weighted_mean_operator_matches_brute_force_loop() -> None:
    rng = np.random.default_rng(0)
    n = 9
    P = rng.random((n, n)) * (rng.random((n, n)) < 0.5)
    z = rng.normal(size=n)
    numerator = 0.0
    denominator = 0.0
    for i in range(n):
        for j in range(n):
            numerator += P[i, j] * z[j]  # 1^T P z
            denominator += P[i, j]  # 1^T P 1
    expected = numerator / denominator
    assert weighted_mean_operator(P, z) == pytest.approx(expected, rel=1e-12)
    assert weighted_mean_operator(sp.csr_matrix(P), z) == pytest.approx(expected, rel=1e-12)
    assert weighted_mean_operator(sp.coo_array(P), z) == pytest.approx(expected, rel=1e-12)
    assert weighted_mean_operator(P.tolist(), list(z)) == pytest.approx(expected, rel=1e-12)


def test_weighted_mean_operator_dense_equals_sparse_on_random_graph() -> None:
    P = random_graph(150, 8, seed=3)
    z = np.random.default_rng(1).random(150)
    dense = weighted_mean_operator(P.toarray(), z)
    sparse = weighted_mean_operator(P, z)
    assert dense == pytest.approx(sparse, rel=1e-12)


def test_weighted_mean_operator_of_in_strength_is_beta_eff() -> None:
    for seed in SEEDS:
        P = random_graph(80, 6, seed=seed)
        s_in = np.asarray(P.sum(axis=1)).ravel()
        assert weighted_mean_operator(P, s_in) == pytest.approx(beta_eff(P), rel=1e-12)


def test_weighted_mean_operator_of_constant_is_constant() -> None:
    P = random_graph(50, 5, seed=0)
    assert weighted_mean_operator(P, 3.5) == pytest.approx(3.5, rel=1e-14)
    assert weighted_mean_operator(P, np.full(50, -2.0)) == pytest.approx(-2.0, rel=1e-14)


# --------------------------------------------------------------------------------------------
# dynamics
# --------------------------------------------------------------------------------------------


def test_dynamics_registry_and_defaults() -> None:
    assert DYNAMICS == {
        "mutualistic": MutualisticDynamics,
        "gene-regulatory": GeneRegulatoryDynamics,
    }
    m = MutualisticDynamics()
    assert (m.B, m.C, m.K, m.D, m.E, m.H) == (0.1, 1.0, 5.0, 5.0, 0.9, 0.1)
    gr = GeneRegulatoryDynamics()
    assert (gr.B, gr.f_exp, gr.h) == (1.0, 1.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.B = 0.2  # type: ignore[misc]


def test_mutualistic_formulas() -> None:
    d = MutualisticDynamics(B=0.2, C=1.5, K=4.0, D=3.0, E=0.7, H=0.4)
    x = np.array([0.0, 0.5, 2.0, 6.0])
    np.testing.assert_allclose(d.f(x), 0.2 + x * (1 - x / 4.0) * (x / 1.5 - 1), rtol=1e-14)
    xi = np.array([1.0, 2.0, 3.0])
    xj = np.array([4.0, 0.5, 2.0])
    np.testing.assert_allclose(d.g(xi, xj), xi * xj / (3.0 + 0.7 * xi + 0.4 * xj), rtol=1e-14)
    # g is not symmetric: the reduction must not treat it as a function of x_j only.
    assert d.g(1.0, 4.0) != pytest.approx(d.g(4.0, 1.0))


def test_gene_regulatory_formulas() -> None:
    d = GeneRegulatoryDynamics(B=0.5, f_exp=2.0, h=3.0)
    x = np.array([0.0, 0.5, 2.0])
    np.testing.assert_allclose(d.f(x), -0.5 * x**2.0, rtol=1e-14)
    xi = np.array([7.0, 0.1, 3.0])
    xj = np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(d.g(xi, xj), xj**3 / (xj**3 + 1), rtol=1e-14)
    assert np.shape(d.g(xi, 2.0)) == (3,)


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [2.5, 7.3, 20.0])
def test_simulate_reduced_matches_analytic_gene_regulatory_state(beta: float) -> None:
    x = simulate_reduced(beta, GeneRegulatoryDynamics(), 2.0)
    assert x == pytest.approx(gene_regulatory_high_state(beta), rel=1e-8)
    # Below the unstable root the system collapses to the inactive state x = 0.
    assert simulate_reduced(beta, "gene-regulatory", 0.05) == pytest.approx(0.0, abs=1e-6)


def test_simulate_reduced_mutualistic_is_a_fixed_point() -> None:
    d = MutualisticDynamics()
    x = simulate_reduced(12.0, d, 5.0)
    assert x > d.K  # high-abundance state
    assert abs(d.f(x) + 12.0 * d.g(x, x)) < 1e-9


def test_simulate_full_dense_sparse_and_methods_agree() -> None:
    P = random_graph(120, 10, seed=7)
    d = MutualisticDynamics()
    x_sparse = simulate_full(P, d, 5.0)
    x_dense = simulate_full(P.toarray(), d, 5.0)
    x_bdf = simulate_full(P, d, 5.0, method="BDF")
    np.testing.assert_allclose(x_dense, x_sparse, rtol=1e-7)
    np.testing.assert_allclose(x_bdf, x_sparse, rtol=1e-6)
    # The returned state is a steady state of the full system.
    coupling = np.array(
        [sum(P[i, j] * d.g(x_sparse[i], x_sparse[j]) for j in P[i].indices) for i in range(120)]
    )
    assert np.max(np.abs(d.f(x_sparse) + coupling)) < 1e-7


# --------------------------------------------------------------------------------------------
# reduction accuracy
# --------------------------------------------------------------------------------------------


# Measured worst relative errors |x_eff_reduced - x_eff_full| / x_eff_full over
# n = 200, seeds 0-4, mean degree 12 and 24, weighted and unweighted (20 graphs each):
#   mutualistic:      1.05% (unweighted, degree 12, seed 0)
#   gene-regulatory:  1.62% (weighted, degree 12, seed 0)
@pytest.mark.parametrize(
    ("name", "x0", "tolerance", "high_threshold"),
    [
        ("mutualistic", 5.0, 0.013, 5.0),  # measured worst: 1.05% (seeds 0-4)
        ("gene-regulatory", 2.0, 0.020, 2.0),  # measured worst: 1.62% (seeds 0-4)
    ],
)
def test_reduced_equilibrium_tracks_full_system(
    name: str, x0: float, tolerance: float, high_threshold: float
) -> None:
    errors = {}
    for mean_degree in MEAN_DEGREES:
        for weighted in (True, False):
            for seed in SEEDS:
                P = random_graph(N_NODES, mean_degree, weighted=weighted, seed=seed)
                result = reduce(P, name, x0=x0)
                assert isinstance(result, ReductionResult)
                assert result.beta_eff == pytest.approx(beta_eff(P), rel=1e-12)
                assert result.x_eff_full == pytest.approx(
                    weighted_mean_operator(P, result.x_full), rel=1e-12
                )
                # the nontrivial (high-activity) equilibrium, in both descriptions
                assert result.x_eff_full > high_threshold
                assert result.x_eff_reduced > high_threshold
                error = abs(result.x_eff_reduced - result.x_eff_full) / result.x_eff_full
                assert error == pytest.approx(result.relative_error)
                errors[(mean_degree, weighted, seed)] = error
    worst_key = max(errors, key=errors.__getitem__)
    print(f"{name}: worst relative error {errors[worst_key]:.3%} at {worst_key}")
    assert errors[worst_key] < tolerance


def test_reduce_defaults_to_high_state_x0() -> None:
    P = random_graph(100, 12, seed=2)
    default = reduce(P, GeneRegulatoryDynamics())
    explicit = reduce(P, GeneRegulatoryDynamics(), x0=GeneRegulatoryDynamics.high_state_x0)
    assert default.x_eff_full == pytest.approx(explicit.x_eff_full, rel=1e-12)
    assert default.x_eff_reduced == pytest.approx(explicit.x_eff_reduced, rel=1e-12)
    for spec in ("gene-regulatory", GeneRegulatoryDynamics):  # registry name or class
        other = reduce(P, spec)
        assert other.x_eff_full == pytest.approx(default.x_eff_full, rel=1e-12)


@pytest.mark.parametrize("k", [4, 9])
@pytest.mark.parametrize("name", sorted(DYNAMICS))
def test_regular_ring_reduction_is_exact(name: str, k: int) -> None:
    P = ring_graph(60, k)
    assert np.all(np.asarray(P.sum(axis=0)).ravel() == k)
    assert np.all(np.asarray(P.sum(axis=1)).ravel() == k)
    assert beta_eff(P) == pytest.approx(k, rel=1e-14)
    result = reduce(P, name)
    assert result.beta_eff == pytest.approx(k, rel=1e-14)
    # All nodes see the same input, so every node follows the reduced equation exactly.
    np.testing.assert_allclose(result.x_full, result.x_eff_reduced, rtol=1e-7)
    assert result.x_eff_full == pytest.approx(result.x_eff_reduced, rel=1e-7)
    if name == "gene-regulatory":
        assert result.x_eff_reduced == pytest.approx(gene_regulatory_high_state(k), rel=1e-8)


# --------------------------------------------------------------------------------------------
# random graphs
# --------------------------------------------------------------------------------------------


def test_random_graph_properties() -> None:
    P = random_graph(300, 10, seed=5)
    assert isinstance(P, sp.csr_matrix)
    assert P.shape == (300, 300)
    assert P.diagonal().sum() == 0
    assert np.all((P.data > 0) & (P.data <= 1))
    assert P.nnz / 300 == pytest.approx(10, rel=0.1)
    U = random_graph(300, 10, weighted=False, seed=5)
    assert np.all(U.data == 1.0)
    assert (random_graph(300, 10, seed=5) != P).nnz == 0  # reproducible
    assert (random_graph(300, 10, seed=6) != P).nnz > 0
    complete = random_graph(5, 4, weighted=False, seed=0)
    np.testing.assert_array_equal(complete.toarray(), 1 - np.eye(5))


def test_random_graph_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        random_graph(0, 1)
    with pytest.raises(ValueError, match="mean_degree"):
        random_graph(10, 10)
    with pytest.raises(ValueError, match="mean_degree"):
        random_graph(10, -1)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


ALL_ENTRY_POINTS = [
    pytest.param(lambda P: weighted_mean_operator(P, 1.0), id="weighted_mean_operator"),
    pytest.param(lambda P: simulate_full(P, "mutualistic", 5.0), id="simulate_full"),
    pytest.param(lambda P: reduce(P, "mutualistic"), id="reduce"),
]


@pytest.mark.parametrize("call", ALL_ENTRY_POINTS)
def test_non_square_adjacency_is_rejected(call) -> None:
    with pytest.raises(ValueError, match="square 2-D"):
        call(np.ones((3, 4)))
    with pytest.raises(ValueError, match="square 2-D"):
        call(sp.csr_matrix(np.ones((3, 4))))
    with pytest.raises(ValueError, match="square 2-D"):
        call(np.ones(3))


@pytest.mark.parametrize("call", ALL_ENTRY_POINTS)
def test_empty_adjacency_is_rejected(call) -> None:
    with pytest.raises(ValueError, match="empty"):
        call(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="empty"):
        call(sp.csr_matrix((0, 0)))


@pytest.mark.parametrize("call", ALL_ENTRY_POINTS)
def test_non_finite_adjacency_is_rejected(call) -> None:
    P = np.ones((3, 3))
    P[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        call(P)
    with pytest.raises(ValueError, match="NaN or inf"):
        call(sp.csr_matrix(P))
    P[0, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        call(P)


@pytest.mark.parametrize("call", ALL_ENTRY_POINTS)
def test_zero_total_weight_is_rejected(call) -> None:
    with pytest.raises(ValueError, match="zero total weight"):
        call(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="zero total weight"):
        call(sp.csr_matrix((4, 4)))
    with pytest.raises(ValueError, match="zero total weight"):
        call(np.array([[0.0, 1.0], [-1.0, 0.0]]))  # signed weights that cancel


def test_bad_state_and_options_are_rejected() -> None:
    P = ring_graph(10, 2)
    with pytest.raises(ValueError, match="length 10"):
        weighted_mean_operator(P, np.ones(9))
    with pytest.raises(ValueError, match="x0 contains NaN"):
        simulate_full(P, "mutualistic", np.full(10, np.nan))
    with pytest.raises(ValueError, match="unknown dynamics"):
        simulate_full(P, "kuramoto", 1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        simulate_full(P, "mutualistic", 5.0, method="RK45")
    with pytest.raises(ValueError, match="beta must be a finite number"):
        simulate_reduced(np.nan, "mutualistic", 5.0)
    with pytest.raises(ValueError, match="not finite at the initial state"):
        simulate_reduced(3.0, GeneRegulatoryDynamics(f_exp=0.5), -1.0)


@pytest.mark.parametrize("method", ["LSODA", "BDF"])
def test_solver_failure_raises_runtime_error(method: str) -> None:
    # dx/dt = -sqrt(x) reaches x = 0 in finite time and then leaves the domain (NaN).
    dynamics = GeneRegulatoryDynamics(f_exp=0.5)
    P = np.zeros((3, 3))
    P[0, 1] = 1.0
    with pytest.raises(RuntimeError, match="simulate_full"):
        simulate_full(P, dynamics, 0.01, method=method)
    with pytest.raises(RuntimeError, match="simulate_reduced"):
        simulate_reduced(0.0, dynamics, 0.01, method=method)


def test_unconverged_integration_warns() -> None:
    P = random_graph(50, 8, seed=0)
    with pytest.warns(RuntimeWarning, match="no steady state reached"):
        simulate_full(P, "mutualistic", 5.0, t_max=0.1)
