"""Forward and per-sample backward pass of an MLP block, by hand, as plain tensor functions.

Conventions (torch ``Linear`` layout; ``L`` weight layers, ``W^l`` of shape ``(n_l, n_{l-1})``)::

    h^0 = x;  z^l = h^{l-1} W^l^T + b^l;  h^l = act(z^l) for l < L;  logits = z^L
    d^l = act'(z^l)   (l < L)
    e^l = d loss_b / d z^l   with loss_b the per-sample softmax cross-entropy
    e^L = softmax(z^L) - onehot(y);   e^l = d^l * (e^{l+1} W^{l+1})

Python lists are 0-based: ``weights[a]`` is ``W^{a+1}``, ``hs[a]`` is ``h^a`` (the input of
``weights[a]``), ``ds[a]`` is ``d^{a+1}`` and ``es[a]`` is ``e^{a+1}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "ACTIVATIONS",
    "BlockPass",
    "activation_and_derivative",
    "derivative_from_output",
    "as_tensor",
    "check_block",
    "mlp_forward_backward",
]

ACTIVATIONS = ("relu", "tanh")


def activation_and_derivative(
    z: torch.Tensor, activation: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(act(z), act'(z))`` for ``activation`` in ``ACTIVATIONS``.

    The ReLU derivative at 0 is 0, as in torch's autograd.
    """
    if activation == "relu":
        return torch.relu(z), (z > 0).to(z.dtype)
    if activation == "tanh":
        h = torch.tanh(z)
        return h, 1.0 - h * h
    raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}.")


def derivative_from_output(h: torch.Tensor, activation: str) -> torch.Tensor:
    """``act'(z)`` from ``h = act(z)`` alone: ``1[h > 0]`` for ReLU (0 at 0, as in autograd),
    ``1 - h^2`` for tanh; the same values as :func:`activation_and_derivative`'s.

    >>> z = torch.tensor([-1.0, 0.0, 2.0])
    >>> derivative_from_output(torch.relu(z), "relu")
    tensor([0., 0., 1.])
    """
    if activation == "relu":
        return torch.sign(h)  # h >= 0: exactly 0 or 1
    if activation == "tanh":
        return 1.0 - h * h
    raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}.")


def as_tensor(value: Any, *, dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """Convert numpy arrays, lists and tensors to a CPU-or-same-device torch tensor."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        tensor = torch.as_tensor(np.asarray(value))
    return tensor.to(dtype) if dtype is not None else tensor


@dataclass(frozen=True)
class BlockPass:
    """Per-sample quantities of one batch through an MLP block (0-based lists, see module doc)."""

    hs: list[torch.Tensor]  # L tensors, hs[a] of shape (B, n_a)
    ds: list[torch.Tensor]  # L-1 tensors, ds[a] of shape (B, n_{a+1})
    es: list[torch.Tensor]  # L tensors, es[a] of shape (B, n_{a+1})
    logits: torch.Tensor  # (B, n_L)


def check_block(
    weights: Sequence[Any], biases: Sequence[Any], *, min_layers: int = 3
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Validate an MLP block and return its weights and biases as float64 tensors."""
    if len(weights) < min_layers:
        raise ValueError(
            f"the block has {len(weights)} weight layers; the line graph of an MLP needs at least "
            f"{min_layers} (only nodes of an inner layer have both upstream and downstream arcs). "
            "Add hidden layers to the probe."
        )
    if len(biases) != len(weights):
        raise ValueError(
            f"got {len(weights)} weight matrices but {len(biases)} bias vectors; pass one bias per "
            "layer (zeros for a layer without bias)."
        )
    ws = [as_tensor(w) for w in weights]
    bs = [as_tensor(b) for b in biases]
    for a, (w, b) in enumerate(zip(ws, bs, strict=True)):
        if w.ndim != 2:
            raise ValueError(
                f"weights[{a}] has shape {tuple(w.shape)}; each weight must be a 2-D matrix in "
                "torch Linear layout (n_out, n_in)."
            )
        if b.shape != (w.shape[0],):
            raise ValueError(
                f"biases[{a}] has shape {tuple(b.shape)} but weights[{a}] has {w.shape[0]} "
                f"outputs; expected a vector of shape ({w.shape[0]},)."
            )
        if a > 0 and w.shape[1] != ws[a - 1].shape[0]:
            raise ValueError(
                f"weights[{a}] expects {w.shape[1]} inputs but weights[{a - 1}] has "
                f"{ws[a - 1].shape[0]} outputs; weights must chain as (n_1, n_0), (n_2, n_1), ..."
            )
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise ValueError(f"weights[{a}] or biases[{a}] hold NaN or inf values.")
    return ws, bs


def _check_batch(x: torch.Tensor, y: torch.Tensor, n_in: int, n_classes: int) -> None:
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(
            f"x has shape {tuple(x.shape)}; expected (batch, {n_in}) to match the first weight "
            "matrix."
        )
    if x.shape[0] == 0:
        raise ValueError("the batch is empty; pass at least one sample.")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y has shape {tuple(y.shape)}; expected one integer label per row of x "
            f"({x.shape[0]},)."
        )
    if not torch.isfinite(x).all():
        raise ValueError("x holds NaN or inf values.")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}) for a block with {n_classes} outputs; got values "
            f"in [{int(y.min())}, {int(y.max())}]."
        )


def mlp_forward_backward(
    weights: Sequence[Any],
    biases: Sequence[Any],
    x: Any,
    y: Any,
    *,
    activation: str = "relu",
    min_layers: int = 3,
) -> BlockPass:
    """Forward pass and per-sample errors of the softmax cross-entropy loss, in float64.

    Parameters
    ----------
    weights, biases : sequences of arrays/tensors
        ``weights[a]`` of shape ``(n_{a+1}, n_a)``, ``biases[a]`` of shape ``(n_{a+1},)``.
    x : array-like of shape (B, n_0)
    y : integer array-like of shape (B,), labels in ``[0, n_L)``
    activation : {"relu", "tanh"}

    Returns
    -------
    BlockPass
        ``hs``, ``ds``, ``es`` and the logits; ``es[a]`` is ``d loss_b / d z^{a+1}`` for the
        per-sample loss (not the batch mean).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}.")
    ws, bs = check_block(weights, biases, min_layers=min_layers)
    x = as_tensor(x)
    y = as_tensor(y, dtype=None).long()
    _check_batch(x, y, ws[0].shape[1], ws[-1].shape[0])
    hs, ds = [x], []
    z = x
    for a, (w, b) in enumerate(zip(ws, bs, strict=True)):
        z = hs[a] @ w.T + b
        if a < len(ws) - 1:
            h, d = activation_and_derivative(z, activation)
            hs.append(h)
            ds.append(d)
    logits = z
    e = torch.softmax(logits, dim=1)
    e[torch.arange(len(y)), y] -= 1.0
    es = [e]
    for a in range(len(ws) - 2, -1, -1):
        es.insert(0, ds[a] * (es[0] @ ws[a + 1]))
    return BlockPass(hs=hs, ds=ds, es=es, logits=logits)
