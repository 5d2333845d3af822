import math

import numpy as np
import pytest

from ncap.predict.curves import CURVES, Curve, CurveFit, extrapolate, fit_curve

X = np.arange(1, 17) * 0.25  # quarter epochs up to 4
TARGET = 40.0

TRUE_PARAMS = {
    "pow3": (0.9, 0.4, 0.7),
    "log_power": (0.92, 0.0, -1.2),
    "exp3": (0.6, -0.3, 0.88),
    "janoschek": (0.9, 0.2, 0.5, 0.8),
    "mmf": (0.93, 0.1, 1.5, 1.1),
}


def _linear_curve():
    """A straight line: extrapolates far past 1 on rising data (an implausible family)."""
    return Curve(
        "linear",
        lambda x, a, b: a + b * x,
        lambda x, y: [(float(y[0]), 0.0)],
        ((-10.0, -10.0), (10.0, 10.0)),
        2,
        "y = a + b * x",
    )


def _nan_curve():
    """A family whose value is never finite: every fit fails."""
    return Curve(
        "nan",
        lambda x, a: np.full_like(x, np.nan) + a,
        lambda x, y: [(0.5,)],
        ((0.0,), (1.0,)),
        1,
        "y = nan",
    )


def test_true_params_cover_every_family():
    assert set(TRUE_PARAMS) == set(CURVES)
    for name, curve in CURVES.items():
        assert curve.name == name
        assert len(curve.bounds[0]) == len(curve.bounds[1]) == curve.n_params
        assert len(TRUE_PARAMS[name]) == curve.n_params
        assert curve.formula.startswith("y = ")


@pytest.mark.parametrize("name", sorted(TRUE_PARAMS))
def test_family_recovers_its_own_extrapolation(name):
    curve = CURVES[name]
    params = TRUE_PARAMS[name]
    y = curve(X, *params)
    fit = fit_curve(name, X, y)
    assert fit.success, fit.message
    assert fit.rmse < 1e-6
    truth = float(curve(TARGET, *params))
    assert abs(float(fit.predict(TARGET)) - truth) < 1e-3
    # the same value through the ensemble restricted to this family
    result = extrapolate(X, y, TARGET, curves=[name])
    assert result.prediction == pytest.approx(truth, abs=1e-3)
    assert result.failures == {}


@pytest.mark.parametrize("name", sorted(TRUE_PARAMS))
def test_noisy_data_still_close(name):
    curve = CURVES[name]
    params = TRUE_PARAMS[name]
    rng = np.random.default_rng(7)
    y = curve(X, *params) + rng.normal(0.0, 0.002, size=X.shape)
    fit = fit_curve(name, X, y)
    assert fit.success, fit.message
    assert 0.0005 < fit.rmse < 0.005  # the noise level, not an exact fit
    assert abs(float(fit.predict(TARGET)) - float(curve(TARGET, *params))) < 0.05


def test_ensemble_is_mean_of_successful_predictions():
    y = CURVES["pow3"](X, *TRUE_PARAMS["pow3"])
    result = extrapolate(X, y, TARGET)
    assert result.n_points == len(X)
    assert result.target_x == TARGET
    assert set(result.predictions) | set(result.failures) == set(CURVES)
    assert not set(result.predictions) & set(result.failures)
    assert result.predictions
    assert result.prediction == pytest.approx(np.mean(list(result.predictions.values())), abs=0)
    for name, value in result.predictions.items():
        assert value == pytest.approx(float(result.fits[name].predict(TARGET)))
        assert -0.05 <= value <= 1.05


def test_implausible_curve_reported_and_not_averaged():
    y = 0.2 + 0.05 * X  # rising straight line: the linear family reaches 2.2 at x = 40
    result = extrapolate(X, y, TARGET, curves=["pow3", _linear_curve()])
    assert result.fits["linear"].success
    assert result.failures["linear"].startswith("implausible extrapolation:")
    assert "linear" not in result.predictions
    assert result.prediction == result.predictions["pow3"]


def test_plausibility_check_can_be_disabled():
    y = 0.2 + 0.05 * X
    result = extrapolate(X, y, TARGET, curves=[_linear_curve()], plausible_range=None)
    assert result.prediction == pytest.approx(0.2 + 0.05 * TARGET, abs=1e-6)


def test_failed_fit_reported_with_reason_and_no_value():
    y = CURVES["exp3"](X, *TRUE_PARAMS["exp3"])
    fit = fit_curve(_nan_curve(), X, y)
    assert not fit.success
    assert fit.params is None and fit.rmse is None
    assert "did not converge" in fit.message
    with pytest.raises(ValueError, match="no fit"):
        fit.predict(TARGET)
    result = extrapolate(X, y, TARGET, curves=["exp3", _nan_curve()])
    assert "nan" in result.failures and "nan" not in result.predictions
    assert result.prediction == result.predictions["exp3"]


def test_fewer_points_than_parameters_fails_that_family_only():
    x, y = X[:3], CURVES["pow3"](X[:3], *TRUE_PARAMS["pow3"])
    result = extrapolate(x, y, TARGET)
    for name in ("janoschek", "mmf"):
        assert "fewer than the 4 parameters" in result.failures[name]
    assert result.n_points == 3


def test_no_curve_succeeds_gives_none_with_reasons():
    y = 0.2 + 0.2 * X  # reaches 1.0 at x = 4 and keeps rising: every family goes past 1.05
    result = extrapolate(X, y, TARGET)
    assert result.prediction is None
    assert result.predictions == {}
    assert set(result.failures) == set(CURVES)
    assert all(r.startswith("implausible extrapolation") for r in result.failures.values())


def test_too_few_points_raises():
    with pytest.raises(ValueError, match="at least 3 points, got 2"):
        extrapolate([0.25, 0.5], [0.3, 0.4], TARGET)
    with pytest.raises(ValueError, match="at least 5 points"):
        extrapolate(X[:4], X[:4] * 0.1, TARGET, min_points=5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="x > 0"):
        extrapolate([0.0, 0.5, 1.0], [0.1, 0.2, 0.3], TARGET)
    with pytest.raises(ValueError, match="finite"):
        extrapolate([0.25, 0.5, 1.0], [0.1, math.nan, 0.3], TARGET)
    with pytest.raises(ValueError, match="same length"):
        extrapolate([0.25, 0.5, 1.0], [0.1, 0.3], TARGET)
    with pytest.raises(ValueError, match="target_x"):
        extrapolate(X, X * 0.1, -1.0)
    with pytest.raises(ValueError, match="unknown curve 'nope'"):
        extrapolate(X, X * 0.1, TARGET, curves=["nope"])
    with pytest.raises(ValueError, match="no curves"):
        extrapolate(X, X * 0.1, TARGET, curves=[])
    with pytest.raises(ValueError, match="bounds"):
        Curve("bad", lambda x, a: x, lambda x, y: [(0.0,)], ((0.0, 0.0), (1.0, 1.0)), 1, "y = x")


def test_deterministic():
    rng = np.random.default_rng(3)
    y = CURVES["mmf"](X, *TRUE_PARAMS["mmf"]) + rng.normal(0.0, 0.01, size=X.shape)
    a, b = extrapolate(X, y, TARGET), extrapolate(X, y, TARGET)
    assert a.prediction == b.prediction
    assert a.predictions == b.predictions
    assert a.failures == b.failures


def test_curvefit_is_plain_data():
    fit = fit_curve("pow3", X, CURVES["pow3"](X, *TRUE_PARAMS["pow3"]))
    assert isinstance(fit, CurveFit)
    assert fit.name == "pow3" and len(fit.params) == 3
    assert all(isinstance(p, float) for p in fit.params)
    assert "converged" in fit.message
