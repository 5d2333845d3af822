"""beta_eff of a weighted directed graph: the Gao-Barzel-Barabasi mean-field coupling.

For an adjacency matrix ``P`` (``n x n``, ``P[i, j]`` the weight of the arc that couples node ``i``
to node ``j`` in ``dx_i/dt = f(x_i) + sum_j P_ij g(x_i, x_j)``)::

    s_in  = P 1          (row sums)
    s_out = 1^T P        (column sums)
    beta_eff = (1^T P P 1) / (1^T P 1) = sum_i s_out_i * s_in_i / sum_ij P_ij
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["beta_eff", "as_float64_matrix"]


def as_float64_matrix(adjacency: Any) -> np.ndarray | sp.csr_matrix:
    """Validate an adjacency matrix and return it as float64 (dense numpy or CSR).

    Accepts a dense numpy array (or anything ``np.asarray`` understands), a torch tensor (dense or
    sparse) or a scipy.sparse matrix/array.

    Raises
    ------
    ValueError
        If the matrix is not two-dimensional and square, is empty, or holds NaN/inf.
    """
    if sp.issparse(adjacency):
        matrix = sp.csr_matrix(adjacency, dtype=np.float64, copy=True)  # never alter the caller's
        matrix.sum_duplicates()
        values = matrix.data
    else:
        if type(adjacency).__module__.startswith("torch"):
            tensor = adjacency.detach().cpu()
            if tensor.is_sparse:
                tensor = tensor.to_dense()
            adjacency = tensor.double().numpy()
        matrix = np.asarray(adjacency, dtype=np.float64)
        values = matrix
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"adjacency must be a square 2-D matrix (n x n), got shape {tuple(matrix.shape)}; "
            "pass the n x n matrix of arc weights P[i, j]."
        )
    if matrix.shape[0] == 0:
        raise ValueError("adjacency is empty (0 x 0); beta_eff needs at least one node.")
    if not np.all(np.isfinite(values)):
        raise ValueError(
            "adjacency holds NaN or inf entries; beta_eff is only defined for finite arc weights "
            "(check for a diverged training run or an overflow upstream)."
        )
    return matrix


def beta_eff(adjacency: Any) -> float:
    """Mean-field coupling strength beta_eff of a weighted directed graph.

    Parameters
    ----------
    adjacency : array-like, torch.Tensor or scipy.sparse matrix of shape (n, n)
        Arc weights ``P``; entries may be negative.

    Returns
    -------
    float
        ``beta_eff = (1^T P P 1) / (1^T P 1) = sum_i s_out_i s_in_i / sum_ij P_ij`` with
        ``s_in = P 1`` and ``s_out = 1^T P``.

    Raises
    ------
    ValueError
        For a non-square, empty or non-finite matrix, and when the total arc weight
        ``sum_ij P_ij`` is zero, where the weighted average defining beta_eff is undefined.

    Notes
    -----
    ``beta_eff(P.T) == beta_eff(P)``, ``beta_eff(c * P) == c * beta_eff(P)`` and a k-regular
    unweighted graph has ``beta_eff == k``.

    Examples
    --------
    >>> import numpy as np
    >>> ring = np.roll(np.eye(5), 1, axis=1) + np.roll(np.eye(5), 2, axis=1)
    >>> beta_eff(ring)
    2.0
    """
    matrix = as_float64_matrix(adjacency)
    s_in = np.asarray(matrix.sum(axis=1)).ravel()
    s_out = np.asarray(matrix.sum(axis=0)).ravel()
    total = float(s_in.sum())
    if total == 0.0:
        raise ValueError(
            "beta_eff is undefined: the total arc weight sum_ij P_ij is zero, so the "
            "s_out-weighted average of s_in has no weight (a graph without arcs, or signed "
            "weights that cancel exactly)."
        )
    return float(np.dot(s_out, s_in) / total)
