"""LogME: a training-free transferability score from a backbone's features and the target labels.

You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning"
(ICML 2021); extended as "Ranking and Tuning Pre-trained Models" (JMLR 2022).

For features ``F`` (``n x d``) of the target training set and one target vector ``t`` (``n``), LogME
fits the Bayesian linear model ``t = F w + eps`` with prior ``w ~ N(0, alpha^-1 I_d)`` and noise
``eps ~ N(0, beta^-1 I_n)``, and scores the features by the maximised log evidence per sample::

    L(alpha, beta) = (1/n) [ (n/2) log beta + (d/2) log alpha - (n/2) log(2 pi)
                             - (beta/2) ||F m - t||^2 - (alpha/2) m^T m - (1/2) log det A ]
    A = alpha I_d + beta F^T F,        m = beta A^-1 F^T t

which is ``log N(t; 0, alpha^-1 F F^T + beta^-1 I_n) / n``. The maximum over ``(alpha, beta)`` is
found with MacKay's fixed point, run on the thin SVD ``F = U S V^T`` (``sigma_i = s_i^2``)::

    gamma = sum_i beta sigma_i / (alpha + beta sigma_i)
    alpha <- gamma / m^T m,            beta <- (n - gamma) / ||F m - t||^2

For classification the targets are the one-hot columns ``t_k = 1[y == k]`` and the score is the
mean over classes of the maximised evidences. Higher is better.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_evidence", "logme", "logme_evidence"]

DEFAULT_MAX_ITER = 100
DEFAULT_TOL = 1e-8

# The evidence can increase all the way to a boundary: alpha -> inf when the target is orthogonal
# to the column space of F (the features explain nothing), beta -> inf when F fits the target
# exactly (n <= d). Its limit there is finite, so the fixed point is stopped at a scale-aware cap
# instead of running off to inf: alpha <= _CAP * beta * max sigma_i (past that the prior swamps
# every direction of F) and beta <= _CAP * n / ||t||^2 (noise variance 1e-12 of the target's).
_CAP = 1e12


def _as_features(features: Any) -> np.ndarray:
    if type(features).__module__.startswith("torch"):
        features = features.detach().cpu().double().numpy()
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(
            f"features must be a 2-D array (n_samples x n_features), got shape "
            f"{tuple(matrix.shape)}; reshape a single feature to (n, 1)."
        )
    n = matrix.shape[0]
    if n < 2:
        raise ValueError(f"LogME needs at least 2 samples, got n = {n}.")
    if matrix.shape[1] < 1:
        raise ValueError("features has no columns (d = 0); LogME needs at least one feature.")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(
            "features hold NaN or inf entries; LogME is only defined for finite features "
            "(check the backbone's outputs for overflow)."
        )
    return matrix


def _as_labels(labels: Any, n: int) -> np.ndarray:
    if type(labels).__module__.startswith("torch"):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class ids, got shape {array.shape}.")
    if array.shape[0] != n:
        raise ValueError(
            f"labels and features disagree on the number of samples: {array.shape[0]} labels "
            f"for {n} feature rows."
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"labels must be integers (class ids >= 0), got dtype {array.dtype}; "
            "encode the classes as integers first."
        )
    if np.any(array < 0):
        raise ValueError("labels must be non-negative integers (class ids >= 0).")
    return array


def _as_target(target: Any, n: int) -> np.ndarray:
    if type(target).__module__.startswith("torch"):
        target = target.detach().cpu().double().numpy()
    vector = np.asarray(target, dtype=np.float64)
    if vector.ndim != 1:
        raise ValueError(f"target must be a 1-D vector, got shape {vector.shape}.")
    if vector.shape[0] != n:
        raise ValueError(
            f"target and features disagree on the number of samples: {vector.shape[0]} target "
            f"values for {n} feature rows."
        )
    if not np.all(np.isfinite(vector)):
        raise ValueError("target holds NaN or inf entries; it must be finite.")
    if not np.any(vector):
        raise ValueError(
            "target is identically zero; its evidence grows without bound as beta -> inf."
        )
    return vector


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}.")
    return value


def logme_evidence(features: Any, target: Any, alpha: float, beta: float) -> float:
    """Per-sample log evidence ``L(alpha, beta)`` of one target vector, from the dense formula.

    This is the direct (``O(n d^2 + d^3)``) evaluation, used as a reference::

        A = alpha I_d + beta F^T F
        m = beta A^-1 F^T t
        L = (1/n) [ (n/2) log beta + (d/2) log alpha - (n/2) log(2 pi)
                    - (beta/2) ||F m - t||^2 - (alpha/2) m^T m - (1/2) log det A ]

    It equals ``log N(t; 0, alpha^-1 F F^T + beta^-1 I_n) / n``, the log marginal likelihood of
    ``t`` under ``t = F w + eps``, ``w ~ N(0, alpha^-1 I_d)``, ``eps ~ N(0, beta^-1 I_n)``.

    Parameters
    ----------
    features : array_like or torch.Tensor, shape (n, d)
        Feature matrix ``F``; converted to float64.
    target : array_like or torch.Tensor, shape (n,)
        Target vector ``t`` (for LogME, a one-hot class indicator).
    alpha : float
        Prior precision of the weights, ``> 0``.
    beta : float
        Noise precision, ``> 0``.

    Returns
    -------
    float
        ``L(alpha, beta)``.

    Raises
    ------
    ValueError
        For malformed or non-finite inputs, or non-positive ``alpha``/``beta``.
    """
    F = _as_features(features)
    t = _as_target(target, F.shape[0])
    alpha = _positive("alpha", alpha)
    beta = _positive("beta", beta)
    n, d = F.shape
    A = alpha * np.eye(d) + beta * (F.T @ F)
    m = beta * np.linalg.solve(A, F.T @ t)
    sign, logdet = np.linalg.slogdet(A)
    if sign <= 0:  # A is symmetric positive definite for alpha > 0; only rounding can break that
        raise ValueError("alpha I + beta F^T F is not positive definite (numerically singular).")
    residual = F @ m - t
    total = (
        0.5 * n * np.log(beta)
        + 0.5 * d * np.log(alpha)
        - 0.5 * n * np.log(2.0 * np.pi)
        - 0.5 * beta * float(residual @ residual)
        - 0.5 * alpha * float(m @ m)
        - 0.5 * logdet
    )
    return float(total / n)


def _spectral_terms(
    sigma: np.ndarray, z: np.ndarray, perp: float, alpha: float, beta: float
) -> tuple[float, float, float, float]:
    """gamma, m^T m, ||F m - t||^2 and log det A restricted to the SVD's r directions.

    With ``z = U^T t`` and ``perp = ||t - U z||^2`` (the part of ``t`` outside the column space)::

        m = V diag(beta s_i / (alpha + beta sigma_i)) z
        m^T m = sum_i beta^2 sigma_i z_i^2 / (alpha + beta sigma_i)^2
        ||F m - t||^2 = perp + sum_i (alpha / (alpha + beta sigma_i))^2 z_i^2
    """
    denom = alpha + beta * sigma
    gamma = float(np.sum(beta * sigma / denom))
    mm = float(np.sum(beta * beta * sigma * z * z / (denom * denom)))
    shrink = alpha / denom
    residual = perp + float(np.sum(shrink * shrink * z * z))
    logdet_r = float(np.sum(np.log(denom)))
    return gamma, mm, residual, logdet_r


def _fit_spectral(
    sigma: np.ndarray,
    z: np.ndarray,
    perp: float,
    t_norm2: float,
    n: int,
    d: int,
    max_iter: int,
    tol: float,
) -> tuple[float, float, float]:
    """MacKay's fixed point on the SVD; returns (alpha, beta, evidence per sample)."""
    sigma_max = float(sigma.max()) if sigma.size else 0.0
    beta_cap = _CAP * n / t_norm2
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        gamma, mm, residual, _ = _spectral_terms(sigma, z, perp, alpha, beta)
        if sigma_max > 0:  # with F = 0 the evidence does not depend on alpha: keep it
            alpha_cap = _CAP * beta * sigma_max
            new_alpha = min(gamma / mm, alpha_cap) if mm > 0 else alpha_cap
        else:
            new_alpha = alpha
        new_beta = min((n - gamma) / residual, beta_cap) if residual > 0 else beta_cap
        converged = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    _, mm, residual, logdet_r = _spectral_terms(sigma, z, perp, alpha, beta)
    # directions of R^d outside the row space of F contribute alpha alone to A
    logdet = logdet_r + (d - sigma.size) * np.log(alpha)
    total = (
        0.5 * n * np.log(beta)
        + 0.5 * d * np.log(alpha)
        - 0.5 * n * np.log(2.0 * np.pi)
        - 0.5 * beta * residual
        - 0.5 * alpha * mm
        - 0.5 * logdet
    )
    return alpha, beta, float(total / n)


def _check_iteration(max_iter: int, tol: float) -> None:
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter}.")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite positive number, got {tol}.")


def _svd(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors U (n x r) and squared singular values sigma (r,), r = min(n, d)."""
    U, s, _ = np.linalg.svd(F, full_matrices=False)
    return U, s * s


def fit_evidence(
    features: Any, target: Any, *, max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL
) -> tuple[float, float, float]:
    """Maximise the log evidence of one target vector over ``(alpha, beta)``.

    Runs MacKay's fixed point from ``alpha = beta = 1`` on the thin SVD ``F = U S V^T``
    (``sigma_i = s_i^2``, ``z = U^T t``), so each iteration costs ``O(min(n, d))``::

        gamma = sum_i beta sigma_i / (alpha + beta sigma_i)
        alpha <- gamma / m^T m
        beta  <- (n - gamma) / ||F m - t||^2

    until the relative change of both ``alpha`` and ``beta`` is below ``tol`` or ``max_iter``
    updates were made. When the supremum lies at a boundary (``alpha -> inf``: the target is
    orthogonal to the features; ``beta -> inf``: ``F`` fits ``t`` exactly, possible for
    ``n <= d``) the parameter is held at a large, scale-aware cap where the evidence has reached its
    limit to within rounding.

    The fixed point finds a local maximum. For ``n > d`` this is in practice the global one and
    the score is invariant to rescaling ``F`` (``alpha -> c^2 alpha``). For ``n <= d`` the evidence
    can have two boundary maxima (``alpha -> inf`` and ``beta -> inf``), and which one the
    iteration reaches from ``alpha = beta = 1`` can then depend on the scale of ``F``.

    Parameters
    ----------
    features : array_like or torch.Tensor, shape (n, d)
        Feature matrix ``F``; converted to float64.
    target : array_like or torch.Tensor, shape (n,)
        Target vector ``t``, not identically zero.
    max_iter : int, optional
        Maximum number of fixed-point updates.
    tol : float, optional
        Relative tolerance on the change of ``alpha`` and ``beta``.

    Returns
    -------
    alpha : float
        Maximising prior precision.
    beta : float
        Maximising noise precision.
    evidence : float
        ``L(alpha, beta)`` (see :func:`logme_evidence`) at the returned parameters.
    """
    _check_iteration(max_iter, tol)
    F = _as_features(features)
    t = _as_target(target, F.shape[0])
    n, d = F.shape
    U, sigma = _svd(F)
    z = U.T @ t
    outside = t - U @ z
    return _fit_spectral(
        sigma, z, float(outside @ outside), float(t @ t), n, d, int(max_iter), float(tol)
    )


def logme(
    features: Any, labels: Any, *, max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL
) -> float:
    r"""LogME transferability score of features for a classification task (higher is better).

    For each class ``k`` (the distinct values of ``labels``, mapped with ``np.unique``, so they need
    not be ``0..C-1``) the one-hot target ``t_k = 1[y == k]`` is fitted with the Bayesian linear
    model ``t_k = F w + eps``, ``w ~ N(0, alpha^-1 I_d)``, ``eps ~ N(0, beta^-1 I_n)``, and its log
    evidence per sample

    .. math::

        L_k(\alpha, \beta) = \frac{1}{n} \Big[ \frac{n}{2}\log\beta
            + \frac{d}{2}\log\alpha - \frac{n}{2}\log 2\pi
            - \frac{\beta}{2}\lVert F m - t_k \rVert^2 - \frac{\alpha}{2} m^\top m
            - \frac{1}{2}\log\det A \Big],
        \qquad A = \alpha I + \beta F^\top F, \quad m = \beta A^{-1} F^\top t_k

    is maximised over ``(alpha, beta)`` with MacKay's fixed point (see :func:`fit_evidence`). The
    score is ``(1/C) sum_k max L_k``. One thin SVD of ``F`` is shared by all classes.

    Parameters
    ----------
    features : array_like or torch.Tensor, shape (n, d)
        Features of the target training set from the backbone; converted to float64.
    labels : array_like or torch.Tensor of int, shape (n,)
        Class ids (non-negative integers); at least two distinct classes.
    max_iter : int, optional
        Maximum number of fixed-point updates per class.
    tol : float, optional
        Relative tolerance on the change of ``alpha`` and ``beta``.

    Returns
    -------
    float
        The LogME score.

    Raises
    ------
    ValueError
        If ``features`` is not 2-D, has fewer than 2 rows or non-finite entries; if ``labels`` is
        not a 1-D integer array of the same length with values ``>= 0``; or if fewer than two
        classes are present.

    References
    ----------
    K. You, Y. Liu, J. Wang, M. Long. LogME: Practical Assessment of Pre-trained Models for
    Transfer Learning. ICML 2021. Extended in JMLR 23 (2022), "Ranking and Tuning Pre-trained
    Models: A New Paradigm for Exploiting Model Hubs".
    """
    _check_iteration(max_iter, tol)
    F = _as_features(features)
    y = _as_labels(labels, F.shape[0])
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError(
            f"LogME needs at least 2 classes in labels, found {classes.size} ({classes.tolist()})."
        )
    n, d = F.shape
    U, sigma = _svd(F)
    targets = np.zeros((n, classes.size))
    targets[np.arange(n), codes.reshape(-1)] = 1.0
    Z = U.T @ targets  # (r, C)
    outside = targets - U @ Z
    perps = np.einsum("ij,ij->j", outside, outside)
    counts = targets.sum(axis=0)  # ||t_k||^2
    evidences = [
        _fit_spectral(sigma, Z[:, k], float(perps[k]), float(counts[k]), n, d, max_iter, tol)[2]
        for k in range(classes.size)
    ]
    return float(np.mean(evidences))
