"""The explicit line graph of an MLP block, as a scipy.sparse matrix: the reference implementation.

Nodes are the weights, ordered layer by layer and row-major within each weight matrix: the weight
``W^{a+1}[j, i]`` (0-based layer ``a``, shape ``(n_{a+1}, n_a)``) is node
``offset[a] + j * n_a + i`` with ``offset[a] = sum_{c < a} n_{c+1} n_c``. Arcs run from a weight to
the weights one layer downstream that share its output neuron: ``(a, j, i) -> (a+1, k, j)``, with
``P[(a,j,i),(a+1,k,j)] = -eta * mean_b(h^a_{b,i} d^{a+1}_{b,j} e^{a+2}_{b,k})`` (1-based layer
numbers in the superscripts). Its row ``(a, j, i)`` therefore holds the couplings that drive
``dW^{a+1}_{ji}/dt = sum_k P[...] W^{a+2}_{kj}``.

This builds every arc (``sum_l n_{l-1} n_l n_{l+1}`` of them) by brute force and exists for tests
and teaching; :func:`ncap.probe_beta_eff` computes beta_eff in closed form at a fraction of the
cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ncap.capacitance.mlp import mlp_forward_backward
from ncap.capacitance.statistics import _check_lr
from ncap.capacitance.variants import check_variants

__all__ = ["DEFAULT_MAX_ARCS", "line_graph", "node_offsets"]

DEFAULT_MAX_ARCS = 5_000_000


def node_offsets(sizes: Sequence[int]) -> list[int]:
    """Index of the first node of each weight layer (and the total as the last entry)."""
    offsets = [0]
    for a in range(len(sizes) - 1):
        offsets.append(offsets[-1] + sizes[a] * sizes[a + 1])
    return offsets


def line_graph(
    weights: Sequence[Any],
    biases: Sequence[Any],
    x: Any,
    y: Any,
    *,
    lr: float,
    variant: str = "signed",
    activation: str = "relu",
    max_arcs: int = DEFAULT_MAX_ARCS,
) -> sp.csr_matrix:
    """Build the weighted line graph of an MLP block on a batch, arc by arc.

    Parameters
    ----------
    weights, biases, x, y, activation
        As in :func:`ncap.probe_beta_eff` (any number >= 1 of weight layers is accepted here).
    lr : float
        Learning rate ``eta``.
    variant : {"signed", "mean-abs", "abs-mean"}
        ``P``, ``eta * mean_b |h_i d_j e_k|`` or ``|P|``.
    max_arcs : int
        Refuse (``ValueError``) when the graph would have more arcs than this.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_weights, n_weights)
        Explicit zeros are dropped.
    """
    (variant,) = check_variants(variant)
    _check_lr(lr)
    sizes = [np.shape(weights[0])[1]] + [np.shape(w)[0] for w in weights]
    n_arcs = sum(sizes[a] * sizes[a + 1] * sizes[a + 2] for a in range(len(sizes) - 2))
    if n_arcs > max_arcs:
        raise ValueError(
            f"the explicit line graph of layer sizes {sizes} has {n_arcs:,} arcs, above max_arcs="
            f"{max_arcs:,}; use ncap.probe_beta_eff (closed form, no line graph) or raise max_arcs."
        )
    block = mlp_forward_backward(weights, biases, x, y, activation=activation, min_layers=1)
    batch = block.hs[0].shape[0]
    offsets = node_offsets(sizes)
    rows, cols, vals = [], [], []
    for a in range(len(sizes) - 2):
        h, d, e = block.hs[a], block.ds[a], block.es[a + 1]
        if variant == "mean-abs":
            arc = lr * torch.einsum("bi,bj,bk->ijk", h.abs(), d.abs(), e.abs()) / batch
        else:
            arc = -lr * torch.einsum("bi,bj,bk->ijk", h, d, e) / batch
            if variant == "abs-mean":
                arc = arc.abs()
        i, j, k = np.meshgrid(
            np.arange(sizes[a]), np.arange(sizes[a + 1]), np.arange(sizes[a + 2]), indexing="ij"
        )
        rows.append((offsets[a] + j * sizes[a] + i).ravel())
        cols.append((offsets[a + 1] + k * sizes[a + 1] + j).ravel())
        vals.append(arc.numpy().ravel())
    n_nodes = offsets[-1]
    if not rows:
        return sp.csr_matrix((n_nodes, n_nodes))
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_nodes, n_nodes),
    )
    matrix.eliminate_zeros()
    return matrix
