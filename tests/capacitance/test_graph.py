import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ncap import beta_eff


def brute_force_beta(P):
    n = P.shape[0]
    s_in = [sum(P[i, j] for j in range(n)) for i in range(n)]
    s_out = [sum(P[i, j] for i in range(n)) for j in range(n)]
    total = sum(P[i, j] for i in range(n) for j in range(n))
    return sum(s_out[i] * s_in[i] for i in range(n)) / total


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_and_quadratic_form(seed):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(9, 9)) + 0.3
    one = np.ones(9)
    assert beta_eff(P) == pytest.approx(brute_force_beta(P), rel=1e-12)
    assert beta_eff(P) == pytest.approx(one @ P @ P @ one / (one @ P @ one), rel=1e-12)


def test_input_types_agree():
    rng = np.random.default_rng(1)
    P = rng.random((12, 12)) * (rng.random((12, 12)) < 0.4)
    expected = beta_eff(P)
    assert beta_eff(sp.csr_matrix(P)) == pytest.approx(expected, rel=1e-13)
    assert beta_eff(sp.coo_array(P)) == pytest.approx(expected, rel=1e-13)
    assert beta_eff(torch.tensor(P)) == pytest.approx(expected, rel=1e-13)
    assert beta_eff(torch.tensor(P).to_sparse()) == pytest.approx(expected, rel=1e-13)
    assert beta_eff(P.tolist()) == pytest.approx(expected, rel=1e-13)


def test_transpose_and_scaling_invariances():
    rng = np.random.default_rng(2)
    P = rng.normal(size=(15, 15)) + 0.5
    assert beta_eff(P.T) == pytest.approx(beta_eff(P), rel=1e-12)
    for c in (0.001, 3.0, -2.0):
        assert beta_eff(c * P) == pytest.approx(c * beta_eff(P), rel=1e-12)


@pytest.mark.parametrize(("n", "k"), [(7, 1), (10, 3), (30, 5)])
def test_k_regular_graph_gives_k(n, k):
    P = sum(np.roll(np.eye(n), s, axis=1) for s in range(1, k + 1))
    assert P.sum(axis=0).tolist() == [k] * n and P.sum(axis=1).tolist() == [k] * n
    assert beta_eff(P) == pytest.approx(k, rel=1e-14)
    assert beta_eff(sp.csr_matrix(P)) == pytest.approx(k, rel=1e-14)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.ones((3, 4)), "square"),
        (np.ones(5), "square"),
        (np.zeros((0, 0)), "empty"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or inf"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or inf"),
        (np.zeros((4, 4)), "undefined"),
        (np.array([[1.0, -1.0], [0.0, 0.0]]), "undefined"),
        (sp.csr_matrix((3, 3)), "undefined"),
    ],
)
def test_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        beta_eff(bad)
