"""Gao-Barzel-Barabasi mean-field reduction of a networked dynamical system.

Reference: J. Gao, B. Barzel, A.-L. Barabasi, "Universal resilience patterns in complex
networks", Nature 530, 307-312 (2016).

Conventions
-----------
A networked system lives on a weighted directed graph with adjacency matrix ``P``
(``n x n``); ``P[i, j]`` is the weight of the link through which node ``j`` acts on node ``i``:

.. math::

    \\frac{dx_i}{dt} = f(x_i) + \\sum_j P_{ij}\\, g(x_i, x_j).

With :math:`s^{in} = P\\mathbf{1}` (row sums) and :math:`s^{out} = \\mathbf{1}^T P` (column
sums), the weighted mean operator is

.. math::

    \\mathcal{L}_P(z) = \\frac{\\mathbf{1}^T P z}{\\mathbf{1}^T P \\mathbf{1}}
                      = \\frac{\\sum_i s^{out}_i z_i}{\\sum_{ij} P_{ij}},

the effective state is :math:`x_{eff} = \\mathcal{L}_P(x)` and the effective coupling is

.. math::

    \\beta_{eff} = \\mathcal{L}_P(s^{in})
                 = \\frac{\\mathbf{1}^T P P \\mathbf{1}}{\\mathbf{1}^T P \\mathbf{1}}
                 = \\frac{\\sum_i s^{out}_i s^{in}_i}{\\sum_{ij} P_{ij}}.

The ``n``-dimensional system is then approximated by the one-dimensional equation

.. math::

    \\frac{dx_{eff}}{dt} = f(x_{eff}) + \\beta_{eff}\\, g(x_{eff}, x_{eff}).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp

from ncap.capacitance.graph import as_float64_matrix, beta_eff

__all__ = [
    "DYNAMICS",
    "Dynamics",
    "GeneRegulatoryDynamics",
    "MutualisticDynamics",
    "ReductionResult",
    "random_graph",
    "reduce",
    "simulate_full",
    "simulate_reduced",
    "weighted_mean_operator",
]

_METHODS = ("LSODA", "BDF")


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _validate_adjacency(adjacency: Any) -> np.ndarray | sp.csr_matrix:
    """Check an adjacency matrix (see :func:`ncap.capacitance.graph.as_float64_matrix`) and its total weight.

    Raises
    ------
    ValueError
        If the matrix is not 2-D and square, is empty, holds NaN or infinite weights, or
        its total weight :math:`\\mathbf{1}^T P \\mathbf{1}` is zero.
    """
    matrix = as_float64_matrix(adjacency)
    if float(matrix.sum()) == 0.0:
        raise ValueError(
            "adjacency has zero total weight (1^T P 1 == 0), so the weighted mean L_P is "
            "undefined; add at least one link with nonzero weight."
        )
    return matrix


def _validate_state(z: Any, n: int, name: str) -> np.ndarray:
    """Return ``z`` as a finite float vector of length ``n`` (a scalar is broadcast)."""
    if type(z).__module__.startswith("torch"):
        z = z.detach().cpu().double().numpy()
    arr = np.asarray(z, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(
            f"{name} must be a scalar or a vector of length {n} (one value per node), "
            f"got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; pass finite numbers.")
    return arr


def _out_strength(matrix: np.ndarray | sp.csr_matrix) -> np.ndarray:
    """Column sums :math:`s^{out} = \\mathbf{1}^T P` as a 1-D float array."""
    return np.asarray(matrix.sum(axis=0), dtype=float).ravel()


def _as_coo(matrix: np.ndarray | sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and weights of the nonzero entries of a validated adjacency."""
    coo = sp.coo_matrix(matrix)
    coo.sum_duplicates()
    keep = coo.data != 0
    return coo.row[keep], coo.col[keep], coo.data[keep]


# --------------------------------------------------------------------------------------------
# weighted mean operator
# --------------------------------------------------------------------------------------------


def weighted_mean_operator(adjacency: Any, z: Any) -> float:
    """Gao et al. weighted mean :math:`\\mathcal{L}_P(z)`.

    .. math::

        \\mathcal{L}_P(z) = \\frac{\\mathbf{1}^T P z}{\\mathbf{1}^T P \\mathbf{1}}
                          = \\frac{\\sum_i s^{out}_i z_i}{\\sum_{ij} P_{ij}},
        \\qquad s^{out} = \\mathbf{1}^T P \\text{ (column sums)}.

    So :math:`\\mathcal{L}_P(x) = x_{eff}` and
    :math:`\\mathcal{L}_P(P\\mathbf{1}) = \\beta_{eff}`.

    Parameters
    ----------
    adjacency : array_like or scipy.sparse matrix, shape (n, n)
        Weighted adjacency ``P``; ``P[i, j]`` is the weight of the link from ``j`` to ``i``.
    z : array_like, shape (n,) or scalar
        Node values; a scalar is broadcast to every node.

    Returns
    -------
    float
        :math:`\\mathcal{L}_P(z)`.

    Raises
    ------
    ValueError
        If ``adjacency`` is not square, is empty, holds non-finite weights or has zero total
        weight, or ``z`` has the wrong length or non-finite entries.
    """
    matrix = _validate_adjacency(adjacency)
    s_out = _out_strength(matrix)
    vec = _validate_state(z, s_out.shape[0], "z")
    return float(s_out @ vec) / float(s_out.sum())


# --------------------------------------------------------------------------------------------
# dynamics
# --------------------------------------------------------------------------------------------


class Dynamics(Protocol):
    """Node dynamics ``dx_i/dt = f(x_i) + sum_j P_ij g(x_i, x_j)``."""

    high_state_x0: ClassVar[float]

    def f(self, x: Any) -> Any:  # pragma: no cover - protocol
        """Self-dynamics."""

    def g(self, xi: Any, xj: Any) -> Any:  # pragma: no cover - protocol
        """Pairwise interaction of node ``i`` with neighbour ``j``."""


@dataclass(frozen=True)
class MutualisticDynamics:
    """Mutualistic population dynamics of ecological networks (Gao et al. 2016).

    .. math::

        f(x) = B + x\\left(1 - \\frac{x}{K}\\right)\\left(\\frac{x}{C} - 1\\right),
        \\qquad
        g(x_i, x_j) = \\frac{x_i x_j}{D + E x_i + H x_j}.

    Parameters
    ----------
    B : float, default 0.1
        Incoming migration rate.
    C : float, default 1.0
        Allee threshold (below it, a species' population declines).
    K : float, default 5.0
        Carrying capacity.
    D, E, H : float, default 5.0, 0.9, 0.1
        Saturation constants of the mutualistic interaction.

    Notes
    -----
    The defaults are the values used by Gao, Barzel and Barabasi (Nature 2016). Starting
    from ``x0 = high_state_x0 = 5.0`` the system settles in its high-abundance (desired) state
    whenever that state exists.
    """

    B: float = 0.1
    C: float = 1.0
    K: float = 5.0
    D: float = 5.0
    E: float = 0.9
    H: float = 0.1

    high_state_x0: ClassVar[float] = 5.0

    def f(self, x: Any) -> Any:
        """Self-dynamics :math:`f(x) = B + x(1 - x/K)(x/C - 1)`, elementwise."""
        x = np.asarray(x, dtype=float)
        return self.B + x * (1.0 - x / self.K) * (x / self.C - 1.0)

    def g(self, xi: Any, xj: Any) -> Any:
        """Interaction :math:`g(x_i, x_j) = x_i x_j / (D + E x_i + H x_j)`, elementwise."""
        xi = np.asarray(xi, dtype=float)
        xj = np.asarray(xj, dtype=float)
        return xi * xj / (self.D + self.E * xi + self.H * xj)


@dataclass(frozen=True)
class GeneRegulatoryDynamics:
    """Gene-regulatory (Michaelis-Menten) dynamics (Gao et al. 2016).

    .. math::

        f(x) = -B x^{f}, \\qquad g(x_i, x_j) = \\frac{x_j^{h}}{x_j^{h} + 1}.

    Parameters
    ----------
    B : float, default 1.0
        Degradation (or dimerisation) rate.
    f_exp : float, default 1.0
        Exponent ``f`` of the self-dynamics (1: degradation, 2: dimerisation).
    h : float, default 2.0
        Hill coefficient of the activation.

    Notes
    -----
    The defaults are the values used by Gao, Barzel and Barabasi (Nature 2016). States are
    expression levels, ``x >= 0``; a non-integer exponent gives NaN for negative ``x``. With
    the defaults the reduced equation :math:`-x + \\beta x^2/(x^2+1) = 0` has the active
    solution :math:`x = (\\beta + \\sqrt{\\beta^2 - 4})/2` for :math:`\\beta \\ge 2`, reached
    from ``x0 = high_state_x0 = 2.0``.
    """

    B: float = 1.0
    f_exp: float = 1.0
    h: float = 2.0

    high_state_x0: ClassVar[float] = 2.0

    def f(self, x: Any) -> Any:
        """Self-dynamics :math:`f(x) = -B x^{f}`, elementwise."""
        x = np.asarray(x, dtype=float)
        return -self.B * np.power(x, self.f_exp)

    def g(self, xi: Any, xj: Any) -> Any:
        """Interaction :math:`g(x_i, x_j) = x_j^h / (x_j^h + 1)`, broadcast to ``xi``'s shape."""
        xi, xj = np.broadcast_arrays(np.asarray(xi, dtype=float), np.asarray(xj, dtype=float))
        xh = np.power(xj, self.h)
        return xh / (xh + 1.0)


DYNAMICS: dict[str, type] = {
    "mutualistic": MutualisticDynamics,
    "gene-regulatory": GeneRegulatoryDynamics,
}
"""Registry of the available dynamics, by name."""


def _resolve_dynamics(dynamics: Any) -> Any:
    if isinstance(dynamics, str):
        try:
            return DYNAMICS[dynamics]()
        except KeyError:
            raise ValueError(
                f"unknown dynamics {dynamics!r}; choose one of {sorted(DYNAMICS)} "
                "or pass an object with methods f(x) and g(xi, xj)."
            ) from None
    if isinstance(dynamics, type):  # a class such as MutualisticDynamics: use its defaults
        dynamics = dynamics()
    if not (callable(getattr(dynamics, "f", None)) and callable(getattr(dynamics, "g", None))):
        raise ValueError(
            f"dynamics must have methods f(x) and g(xi, xj), got {type(dynamics).__name__}; "
            f"use one of {sorted(DYNAMICS)} (see ncap.capacitance.reduction.DYNAMICS)."
        )
    return dynamics


# --------------------------------------------------------------------------------------------
# integration
# --------------------------------------------------------------------------------------------


def _integrate(
    rhs: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    *,
    t_max: float,
    rtol: float,
    atol: float,
    steady_tol: float,
    method: str,
    jac_sparsity: Any = None,
    what: str,
) -> np.ndarray:
    """Integrate ``dx/dt = rhs(x)`` from ``x0`` until ``max|dx/dt| < steady_tol`` or ``t_max``."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    if not (np.isfinite(t_max) and t_max > 0):
        raise ValueError(f"t_max must be a positive finite time, got {t_max!r}.")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        dx0 = rhs(x0)
    if not np.all(np.isfinite(dx0)):
        raise ValueError(
            f"{what}: dx/dt is not finite at the initial state; choose x0 inside the domain "
            "of the dynamics (e.g. x0 >= 0 for non-integer exponents)."
        )
    if np.max(np.abs(dx0)) < steady_tol:
        return x0.copy()

    def fun(_t: float, x: np.ndarray) -> np.ndarray:
        return rhs(x)

    def steady(_t: float, x: np.ndarray) -> float:
        return float(np.max(np.abs(rhs(x)))) - steady_tol

    steady.terminal = True  # type: ignore[attr-defined]
    steady.direction = -1  # type: ignore[attr-defined]

    options: dict[str, Any] = {}
    if method == "BDF" and jac_sparsity is not None:
        options["jac_sparsity"] = jac_sparsity
    # NaN/inf produced on the way are detected below; keep numpy from warning about them.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        try:
            sol = solve_ivp(
                fun,
                (0.0, float(t_max)),
                x0,
                method=method,
                rtol=rtol,
                atol=atol,
                events=steady,
                **options,
            )
        except (ValueError, RuntimeError, ArithmeticError, np.linalg.LinAlgError) as exc:
            raise RuntimeError(
                f"{what}: solve_ivp ({method}) failed ({type(exc).__name__}: {exc}); the state "
                "probably left the domain of the dynamics (NaN/inf); try a different x0, "
                "tighter rtol/atol, or the other method ('LSODA' or 'BDF')."
            ) from exc
    if not sol.success:
        raise RuntimeError(
            f"{what}: solve_ivp ({method}) failed: {sol.message}; try method='BDF' or "
            "method='LSODA', looser rtol/atol, or a different x0."
        )
    x_final = sol.y[:, -1]
    if not np.all(np.isfinite(x_final)):
        raise RuntimeError(
            f"{what}: the state became NaN or infinite during integration; check that x0 lies "
            "in the domain of the dynamics and that the parameters are sensible."
        )
    residual = float(np.max(np.abs(rhs(x_final))))
    if residual > steady_tol and sol.status == 0:
        warnings.warn(
            f"{what}: no steady state reached by t_max={t_max:g} (max|dx/dt| = {residual:.3g} "
            f"> steady_tol = {steady_tol:.3g}); increase t_max.",
            RuntimeWarning,
            stacklevel=3,
        )
    return x_final


def simulate_full(
    adjacency: Any,
    dynamics: Any,
    x0: Any,
    *,
    t_max: float = 1000.0,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    steady_tol: float = 1e-9,
    method: str = "LSODA",
) -> np.ndarray:
    """Integrate the full networked system to (near) steady state.

    .. math::

        \\frac{dx_i}{dt} = f(x_i) + \\sum_j P_{ij}\\, g(x_i, x_j), \\qquad i = 1, \\dots, n.

    The coupling is evaluated on the nonzero entries ``(i, j, P_ij)`` of ``P`` only (COO
    form), ``sum_j P_ij g(x_i, x_j) = bincount(i, P_ij * g(x_i, x_j))``, which is exact for a
    non-separable ``g`` and costs ``O(nnz)`` for dense and sparse input alike.

    Parameters
    ----------
    adjacency : array_like or scipy.sparse matrix, shape (n, n)
        Weighted adjacency ``P``; ``P[i, j]`` is the weight of the link from ``j`` to ``i``.
    dynamics : object with ``f(x)`` and ``g(xi, xj)``, or str
        E.g. :class:`MutualisticDynamics`, or a key of :data:`DYNAMICS`.
    x0 : float or array_like, shape (n,)
        Initial state; a scalar is used for every node.
    t_max : float, default 1000.0
        Longest integration time. Integration stops earlier, as soon as
        ``max_i |dx_i/dt| < steady_tol``.
    rtol, atol : float, default 1e-8, 1e-10
        Solver tolerances.
    steady_tol : float, default 1e-9
        Steady-state criterion on ``max_i |dx_i/dt|``. A ``RuntimeWarning`` is issued if it is
        not met by ``t_max``.
    method : {"LSODA", "BDF"}, default "LSODA"
        :func:`scipy.integrate.solve_ivp` method; ``"BDF"`` uses the sparsity pattern of
        ``P + I`` for its finite-difference Jacobian.

    Returns
    -------
    numpy.ndarray, shape (n,)
        The final state.

    Raises
    ------
    ValueError
        For an invalid adjacency, ``x0``, method or ``t_max``, or a non-finite ``dx/dt``
        at ``x0``.
    RuntimeError
        If the solver fails or the state becomes non-finite.
    """
    dyn = _resolve_dynamics(dynamics)
    matrix = _validate_adjacency(adjacency)
    n = matrix.shape[0]
    state0 = _validate_state(x0, n, "x0")
    rows, cols, weights = _as_coo(matrix)

    def rhs(x: np.ndarray) -> np.ndarray:
        coupling = np.bincount(rows, weights=weights * dyn.g(x[rows], x[cols]), minlength=n)
        return dyn.f(x) + coupling

    sparsity = None
    if method == "BDF":
        sparsity = sp.csr_matrix((np.ones_like(weights), (rows, cols)), shape=(n, n))
        sparsity = (sparsity + sp.identity(n, format="csr")).astype(bool)
    return _integrate(
        rhs,
        state0,
        t_max=t_max,
        rtol=rtol,
        atol=atol,
        steady_tol=steady_tol,
        method=method,
        jac_sparsity=sparsity,
        what="simulate_full",
    )


def simulate_reduced(
    beta: float,
    dynamics: Any,
    x0: float,
    *,
    t_max: float = 1000.0,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    steady_tol: float = 1e-11,
    method: str = "LSODA",
) -> float:
    """Integrate the one-dimensional reduced equation to (near) steady state.

    .. math::

        \\frac{dx}{dt} = f(x) + \\beta\\, g(x, x).

    Parameters
    ----------
    beta : float
        Effective coupling, normally :math:`\\beta_{eff}`.
    dynamics : object with ``f(x)`` and ``g(xi, xj)``, or str
        E.g. :class:`MutualisticDynamics`, or a key of :data:`DYNAMICS`.
    x0 : float
        Initial state, normally :math:`\\mathcal{L}_P(x_0)`.
    t_max : float, default 1000.0
        Longest integration time; integration stops once ``|dx/dt| < steady_tol``.
    rtol, atol : float, default 1e-10, 1e-12
        Solver tolerances.
    steady_tol : float, default 1e-11
        Steady-state criterion on ``|dx/dt|``.
    method : {"LSODA", "BDF"}, default "LSODA"
        :func:`scipy.integrate.solve_ivp` method.

    Returns
    -------
    float
        The final state.

    Raises
    ------
    ValueError
        For a non-finite ``beta`` or ``x0``, an unknown method, or a non-finite ``dx/dt``
        at ``x0``.
    RuntimeError
        If the solver fails or the state becomes non-finite.
    """
    dyn = _resolve_dynamics(dynamics)
    beta = float(beta)
    if not np.isfinite(beta):
        raise ValueError(f"beta must be a finite number, got {beta!r}.")
    state0 = _validate_state(x0, 1, "x0")

    def rhs(x: np.ndarray) -> np.ndarray:
        return np.atleast_1d(dyn.f(x) + beta * dyn.g(x, x))

    x_final = _integrate(
        rhs,
        state0,
        t_max=t_max,
        rtol=rtol,
        atol=atol,
        steady_tol=steady_tol,
        method=method,
        what="simulate_reduced",
    )
    return float(x_final[0])


# --------------------------------------------------------------------------------------------
# reduction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReductionResult:
    """Outcome of :func:`reduce`.

    Attributes
    ----------
    beta_eff : float
        :math:`\\beta_{eff} = \\mathbf{1}^T P P \\mathbf{1} / \\mathbf{1}^T P \\mathbf{1}`.
    x_eff_full : float
        :math:`\\mathcal{L}_P(x^*)` of the full system's steady state :math:`x^*`.
    x_eff_reduced : float
        Steady state of :math:`\\dot x = f(x) + \\beta_{eff} g(x, x)` started from
        :math:`\\mathcal{L}_P(x_0)`.
    x_full : numpy.ndarray, shape (n,)
        The full system's steady state :math:`x^*`.
    """

    beta_eff: float
    x_eff_full: float
    x_eff_reduced: float
    x_full: np.ndarray = field(repr=False)

    @property
    def relative_error(self) -> float:
        """``|x_eff_reduced - x_eff_full| / |x_eff_full|``."""
        return abs(self.x_eff_reduced - self.x_eff_full) / abs(self.x_eff_full)


def reduce(
    adjacency: Any,
    dynamics: Any,
    x0: Any = None,
    *,
    t_max: float = 1000.0,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    steady_tol: float = 1e-9,
    method: str = "LSODA",
) -> ReductionResult:
    """Compare the full system's effective state with the Gao et al. 1-D reduction.

    Computes :math:`\\beta_{eff}` (via :func:`ncap.capacitance.graph.beta_eff`), the full steady state
    :math:`x^*` from ``x0`` (:func:`simulate_full`), :math:`x_{eff} = \\mathcal{L}_P(x^*)`,
    and the steady state of :math:`\\dot x = f(x) + \\beta_{eff}\\, g(x, x)` started from
    :math:`\\mathcal{L}_P(x_0)` (:func:`simulate_reduced`).

    Parameters
    ----------
    adjacency : array_like or scipy.sparse matrix, shape (n, n)
        Weighted adjacency ``P``; ``P[i, j]`` is the weight of the link from ``j`` to ``i``.
    dynamics : object with ``f(x)`` and ``g(xi, xj)``, or str
        E.g. :class:`MutualisticDynamics`, or a key of :data:`DYNAMICS`.
    x0 : float or array_like, shape (n,), optional
        Initial state. Defaults to ``dynamics.high_state_x0`` for every node (5.0 for
        mutualistic, 2.0 for gene-regulatory dynamics), which selects the high-activity
        equilibrium.
    t_max, rtol, atol, steady_tol, method
        Passed to :func:`simulate_full`; :func:`simulate_reduced` uses the same ``t_max``
        and ``method`` with its own (tighter) defaults.

    Returns
    -------
    ReductionResult
    """
    dyn = _resolve_dynamics(dynamics)
    matrix = _validate_adjacency(adjacency)
    n = matrix.shape[0]
    if x0 is None:
        x0 = getattr(dyn, "high_state_x0", None)
        if x0 is None:
            raise ValueError(f"{type(dyn).__name__} has no high_state_x0; pass x0 explicitly.")
    state0 = _validate_state(x0, n, "x0")
    beta = float(beta_eff(matrix))
    x_full = simulate_full(
        matrix,
        dyn,
        state0,
        t_max=t_max,
        rtol=rtol,
        atol=atol,
        steady_tol=steady_tol,
        method=method,
    )
    x_eff_full = weighted_mean_operator(matrix, x_full)
    x_eff_reduced = simulate_reduced(
        beta, dyn, weighted_mean_operator(matrix, state0), t_max=t_max, method=method
    )
    return ReductionResult(
        beta_eff=beta, x_eff_full=x_eff_full, x_eff_reduced=x_eff_reduced, x_full=x_full
    )


# --------------------------------------------------------------------------------------------
# test graphs
# --------------------------------------------------------------------------------------------


def random_graph(
    n: int,
    mean_degree: float,
    *,
    weighted: bool = True,
    seed: int | np.random.Generator | None = None,
) -> sp.csr_matrix:
    """Directed Erdos-Renyi graph ``G(n, p)`` without self-loops.

    Each of the ``n(n - 1)`` ordered pairs ``(i, j)``, ``i != j``, is a link independently
    with probability ``p = mean_degree / (n - 1)``, so the expected in- and out-degree is
    ``mean_degree``. Sampling is ``O(edges)`` in memory: the number of links is drawn from
    ``Binomial(n(n-1), p)`` and that many distinct pairs are chosen uniformly.

    Parameters
    ----------
    n : int
        Number of nodes, ``n >= 1``.
    mean_degree : float
        Expected in-/out-degree, ``0 <= mean_degree <= n - 1``.
    weighted : bool, default True
        Weights uniform in ``(0, 1]`` if True, all 1 otherwise.
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n)
        Adjacency ``P`` with ``P[i, j]`` the weight of the link from ``j`` to ``i``.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer number of nodes, got {n!r}.")
    n = int(n)
    max_degree = n - 1
    if not (np.isfinite(mean_degree) and 0 <= mean_degree <= max_degree):
        raise ValueError(
            f"mean_degree must lie in [0, n - 1] = [0, {max_degree}], got {mean_degree!r}."
        )
    rng = np.random.default_rng(seed)
    pairs = n * max_degree
    p = mean_degree / max_degree if max_degree > 0 else 0.0
    m = int(rng.binomial(pairs, p)) if pairs > 0 else 0
    flat = rng.choice(pairs, size=m, replace=False) if m > 0 else np.empty(0, dtype=np.int64)
    rows = flat // max(max_degree, 1)
    cols = flat % max(max_degree, 1)
    cols = cols + (cols >= rows)  # skip the diagonal
    data = 1.0 - rng.random(m) if weighted else np.ones(m)
    return sp.csr_matrix((data, (rows, cols)), shape=(n, n))
