import numpy as np
import pytest
from sklearn.linear_model import BayesianRidge

from ncap.predict.capacitance import CapacitancePredictor


def test_recovers_known_intercept_on_noiseless_line():
    beta = np.linspace(2e-4, 5e-5, 10)
    acc = 0.91 - 1500.0 * beta  # h(0) = 0.91
    model = CapacitancePredictor(burn_in=0).fit(beta, acc)
    assert model.prediction_ == pytest.approx(0.91, abs=1e-4)
    assert model.std_ < 1e-3
    assert model.predict(1e-4) == pytest.approx(0.91 - 0.15, abs=1e-4)


def test_noisy_line_within_posterior_uncertainty():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        beta = np.sort(rng.uniform(0.2, 1.0, 12))[::-1]
        acc = 0.8 - 0.3 * beta + rng.normal(scale=0.01, size=12)
        model = CapacitancePredictor().fit(beta, acc)
        hits += abs(model.prediction_ - 0.8) < 2 * model.std_
    assert hits / 200 > 0.85  # ~95% nominal coverage of a 2-sigma interval


def test_matches_sklearn_bayesian_ridge_on_rescaled_features():
    rng = np.random.default_rng(1)
    beta = rng.uniform(1e-5, 3e-4, 9)
    acc = rng.uniform(0.4, 0.9, 9)
    for features in ("linear", "quadratic"):
        model = CapacitancePredictor(features=features, burn_in=2).fit(beta, acc)
        b = beta[2:] / np.abs(beta[2:]).max()
        X = np.column_stack([b, b * b]) if features == "quadratic" else b[:, None]
        ref = BayesianRidge().fit(X, acc[2:])
        mean, std = ref.predict(np.zeros((1, X.shape[1])), return_std=True)
        assert model.prediction_ == pytest.approx(mean[0], rel=1e-12)
        assert model.std_ == pytest.approx(std[0], rel=1e-12)
        assert model.n_points_ == 7


def test_quadratic_recovers_curved_trend():
    beta = np.linspace(1.0, 0.2, 15)
    acc = 0.95 - 0.2 * beta - 0.3 * beta**2
    model = CapacitancePredictor(features="quadratic", burn_in=0).fit(beta, acc)
    assert model.prediction_ == pytest.approx(0.95, abs=2e-3)
    linear = CapacitancePredictor(features="linear", burn_in=0).fit(beta, acc)
    assert abs(linear.prediction_ - 0.95) > 0.03  # the linear map cannot follow the curvature


def test_logit_link_stays_in_unit_interval_and_recovers_logistic_trend():
    beta = np.linspace(1.0, 0.1, 12)
    acc = 1 / (1 + np.exp(-(3.0 - 4.0 * beta)))  # h(0) = sigmoid(3) = 0.9526
    model = CapacitancePredictor(link="logit", burn_in=0).fit(beta, acc)
    assert model.prediction_ == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-3)
    steep = CapacitancePredictor(link="logit", burn_in=0).fit(
        [1.0, 0.9, 0.8, 0.7], [0.5, 0.7, 0.9, 0.97]
    )
    assert 0.0 < steep.prediction_ < 1.0
    identity = CapacitancePredictor(burn_in=0).fit([1.0, 0.9, 0.8, 0.7], [0.5, 0.7, 0.9, 0.97])
    assert identity.prediction_ > 1.0  # what the logit link protects against


def test_burn_in_and_non_finite_points_are_dropped():
    beta = [np.nan, 9.0, 0.5, 0.4, 0.3, 0.2]
    acc = [0.1, 0.0, 0.50, 0.60, 0.70, 0.80]
    model = CapacitancePredictor(burn_in=2).fit(beta, acc)
    assert model.n_points_ == 4
    assert model.prediction_ == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "data", "match"),
    [
        ({}, ([0.1, 0.2], [0.5, 0.6]), "too few usable points"),
        ({"burn_in": 3}, ([0.4, 0.3, 0.2, 0.1, 0.05], [0.1] * 5), "too few usable points"),
        ({"features": "cubic"}, ([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]), "unknown feature map"),
        ({"link": "probit"}, ([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]), "unknown link"),
        ({}, ([0.1, 0.2, 0.3], [0.5, 0.6]), "same length"),
        ({}, ([0.0, 0.0, 0.0], [0.5, 0.6, 0.7]), "every beta_eff value is 0"),
        ({"burn_in": -1}, ([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]), "burn_in"),
    ],
)
def test_errors(kwargs, data, match):
    with pytest.raises(ValueError, match=match):
        CapacitancePredictor(**kwargs).fit(*data)


def test_predict_before_fit_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        CapacitancePredictor().predict(0.0)


def test_the_logit_link_goes_through_the_clipped_logit_and_back_without_overflow():
    import warnings

    from ncap.predict.features import logit, sigmoid

    x = np.linspace(-30.0, 30.0, 601)
    np.testing.assert_allclose(sigmoid(x), 1.0 / (1.0 + np.exp(-x)), rtol=1e-15, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1 / (1 + exp(1000)) warns of an overflow; expit does not
        assert sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0
    assert logit(1.0) == logit(1.0 - 1e-3) and logit(0.0) == logit(1e-3)  # clipped
    assert sigmoid(logit(0.3)) == pytest.approx(0.3, abs=1e-15)
    # the logit link fits logit(accuracy) exactly as a BayesianRidge on the clipped logit would
    beta = np.linspace(1.0, 0.1, 8)
    acc = np.array([0.5, 0.55, 0.6, 0.66, 0.7, 0.75, 0.8, 1.0])
    model = CapacitancePredictor(burn_in=0, link="logit", features="linear").fit(beta, acc)
    q = np.clip(acc, 1e-3, 1 - 1e-3)
    design = beta[:, None] / np.abs(beta).max()  # the predictor scales beta_eff by its largest
    ref = BayesianRidge(compute_score=False).fit(design, np.log(q / (1 - q)))
    assert model.link_mean_ == pytest.approx(float(ref.predict(np.zeros((1, 1)))[0]), abs=1e-9)
    assert model.prediction_ == pytest.approx(1 / (1 + np.exp(-model.link_mean_)), abs=1e-15)
