import itertools

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from sklearn.datasets import load_iris

from ncap.predict.logme import fit_evidence, logme, logme_evidence


def gaussian_clusters(n, d, n_classes, separation, *, seed=0):
    """Class-conditional Gaussian clusters: unit noise around class means of norm `separation`."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    directions = rng.normal(size=(n_classes, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return rng.normal(size=(n, d)) + separation * directions[labels], labels


def marginal_log_density(F, t, alpha, beta):
    """log N(t; 0, alpha^-1 F F^T + beta^-1 I) / n, independently of the evidence formula."""
    n = F.shape[0]
    cov = F @ F.T / alpha + np.eye(n) / beta
    return scipy.stats.multivariate_normal.logpdf(t, mean=np.zeros(n), cov=cov) / n


@pytest.mark.parametrize(("n", "d"), [(30, 5), (8, 12)])
@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 1.0), (0.1, 3.0), (7.5, 0.4), (50.0, 20.0)])
def test_evidence_is_gaussian_marginal_likelihood(n, d, alpha, beta):
    rng = np.random.default_rng(n * 100 + d)
    F = rng.normal(size=(n, d))
    t = (rng.random(n) < 0.4).astype(np.float64)
    t[0] = 1.0
    expected = marginal_log_density(F, t, alpha, beta)
    assert logme_evidence(F, t, alpha, beta) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("n", "d"), [(30, 5), (80, 12), (8, 12)])
def test_fit_evidence_matches_dense_formula_at_its_optimum(n, d):
    F, labels = gaussian_clusters(n, d, 3, 2.0, seed=d)
    t = (labels == 1).astype(np.float64)
    alpha, beta, evidence = fit_evidence(F, t)
    assert evidence == pytest.approx(logme_evidence(F, t, alpha, beta), rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_fixed_point_maximises_evidence(seed):
    F, labels = gaussian_clusters(60, 5, 3, 2.0, seed=seed)
    t = (labels == 0).astype(np.float64)
    alpha, beta, evidence = fit_evidence(F, t)
    assert 1e-6 < alpha < 1e6 and 1e-6 < beta < 1e6  # an interior optimum
    factors = (0.8, 0.9, 1.1, 1.25)
    for f, g in itertools.product(factors, factors):
        assert evidence >= logme_evidence(F, t, alpha * f, beta * g)

    result = scipy.optimize.minimize(
        lambda p: -logme_evidence(F, t, np.exp(p[0]), np.exp(p[1])),
        x0=np.zeros(2),
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 5000},
    )
    assert result.success
    assert evidence == pytest.approx(-result.fun, abs=1e-6)
    assert evidence >= -result.fun - 1e-12


def test_informative_features_beat_random_ones():
    F, labels = gaussian_clusters(300, 16, 4, 3.0, seed=1)
    noise = np.random.default_rng(2).normal(size=F.shape)
    assert logme(F, labels) > logme(noise, labels) + 0.1


def test_more_separated_clusters_score_higher():
    scores = [logme(*gaussian_clusters(300, 16, 4, s, seed=3)) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in itertools.pairwise(scores)), scores


def test_invariant_to_relabelling_classes_and_permuting_samples():
    F, labels = gaussian_clusters(200, 10, 4, 2.0, seed=4)
    reference = logme(F, labels)
    relabel = np.array([2, 0, 3, 1])
    assert logme(F, relabel[labels]) == pytest.approx(reference, rel=1e-12)
    order = np.random.default_rng(5).permutation(len(labels))
    assert logme(F[order], labels[order]) == pytest.approx(reference, rel=1e-10)


def test_invariant_to_feature_scale():
    # alpha -> c^2 alpha, m -> m / c leaves the evidence unchanged when F -> c F
    F, labels = gaussian_clusters(150, 8, 3, 2.0, seed=6)
    reference = logme(F, labels)
    for scale in (1e-3, 10.0, 1e3):
        assert logme(scale * F, labels) == pytest.approx(reference, rel=1e-9)


def test_torch_and_numpy_inputs_agree():
    F, labels = gaussian_clusters(120, 6, 3, 2.0, seed=7)
    expected = logme(F, labels)
    assert logme(torch.from_numpy(F), torch.from_numpy(labels)) == pytest.approx(
        expected, rel=1e-12
    )
    # float32 features are promoted to float64 before the SVD
    assert logme(torch.from_numpy(F).float(), labels) == pytest.approx(expected, rel=1e-5)


def test_non_contiguous_labels():
    F, labels = gaussian_clusters(90, 5, 3, 2.0, seed=8)
    expected = logme(F, labels)
    assert logme(F, np.array([3, 7, 9])[labels]) == pytest.approx(expected, rel=1e-12)


def test_zero_features_give_the_noise_only_evidence():
    # F = 0: t ~ N(0, beta^-1 I), maximised at beta = n / ||t||^2
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    n = len(labels)
    per_class = []
    for k in range(3):
        beta = n / np.sum(labels == k)
        per_class.append(0.5 * np.log(beta) - 0.5 * np.log(2 * np.pi) - 0.5)
    assert logme(np.zeros((n, 4)), labels) == pytest.approx(np.mean(per_class), rel=1e-10)


def test_fewer_samples_than_features_is_finite():
    F, labels = gaussian_clusters(20, 64, 3, 2.0, seed=9)
    assert np.isfinite(logme(F, labels))
    assert np.isfinite(logme(np.random.default_rng(0).normal(size=(20, 64)), labels))


@pytest.mark.parametrize(
    ("features", "labels", "match"),
    [
        (np.ones(10), np.arange(10) % 2, "2-D"),
        (np.ones((10, 3)), np.arange(9) % 2, "number of samples"),
        (np.where(np.eye(10, 3) > 0, np.nan, 1.0), np.arange(10) % 2, "NaN"),
        (np.ones((10, 3)), np.zeros(10, dtype=int), "at least 2 classes"),
        (np.ones((1, 3)), np.zeros(1, dtype=int), "at least 2 samples"),
        (np.ones((10, 3)), np.arange(10) - 3, "non-negative"),
        (np.ones((10, 3)), (np.arange(10) % 2).astype(float), "integers"),
    ],
)
def test_invalid_inputs_raise(features, labels, match):
    with pytest.raises(ValueError, match=match):
        logme(features, labels)


def test_invalid_evidence_arguments_raise():
    F = np.ones((5, 2))
    with pytest.raises(ValueError, match="alpha"):
        logme_evidence(F, np.ones(5), 0.0, 1.0)
    with pytest.raises(ValueError, match="identically zero"):
        fit_evidence(F, np.zeros(5))


def test_iris_golden_value():
    # The transformer-ranker project's LogME test on iris expects about -0.16006; ours agrees.
    iris = load_iris()
    score = logme(iris.data.astype(np.float64), iris.target)
    assert score == pytest.approx(-0.16006, abs=1e-4)
    assert score == pytest.approx(-0.160060243417384, abs=1e-10)  # our converged value
