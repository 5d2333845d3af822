"""Closed-form beta_eff of an MLP block's line graph, without building the line graph.

The line graph has one node per weight ``(l, j, i)`` (neuron ``i`` of layer ``l-1`` to neuron ``j``
of layer ``l``) and an arc ``(l, j, i) -> (l+1, k, j)`` for every pair of weights that share neuron
``j``. Under gradient flow with learning rate ``eta`` the arc weight is::

    P[(l,j,i),(l+1,k,j)] = -eta * mean_b( h^{l-1}_{b,i} * d^l_{b,j} * e^{l+1}_{b,k} )

Three arc-weight variants ``A`` are supported:

========== ======================================= ==========================================
variant    A                                       cost per batch
========== ======================================= ==========================================
signed     P                                       O(B * weights)
mean-abs   eta * mean_b |h_i d_j e_k|              O(B * weights)
abs-mean   |P|                                     O(B * n_{l-1} n_l n_{l+1}) per layer pair
========== ======================================= ==========================================

With ``s_down(l,j,i) = sum_k A[(l,j,i),(l+1,k,j)]`` (the row sum, ``s_in``) and
``s_up(l,j,i) = sum_m A[(l-1,i,m),(l,j,i)]`` (the column sum, ``s_out``)::

    beta_eff = sum_{l=2}^{L-1} sum_{j,i} s_up(l,j,i) s_down(l,j,i)
               / sum_{l=1}^{L-1} sum_{i,j,k} A[(l,j,i),(l+1,k,j)]

For the two cheap variants the sums over ``k`` and ``m`` factor through the per-sample totals
``E^{l+1}_b = sum_k e^{l+1}_{b,k}`` and ``H^{l-2}_b = sum_m h^{l-2}_{b,m}`` (of absolute values for
mean-abs), so every ``s`` matrix is a single ``(n_l x B) @ (B x n_{l-1})`` product.

:class:`EdgeStatistics` accumulates the *sums over samples* of these quantities, so statistics of
many batches (an evaluation interval of training) add up exactly to those of their union; the arc
weights are the means over all accumulated samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ncap.capacitance.mlp import mlp_forward_backward
from ncap.capacitance.variants import VARIANTS, check_variants

__all__ = ["VARIANTS", "EdgeStatistics", "probe_beta_eff", "check_variants"]


class EdgeStatistics:
    """Additive sufficient statistics of an MLP block's line graph, for beta_eff.

    Parameters
    ----------
    sizes : sequence of int
        Neuron counts ``(n_0, n_1, ..., n_L)`` of the block (``L >= 3`` weight layers).
    variants : str or iterable of str
        Which of ``VARIANTS`` to track. ``"abs-mean"`` keeps one ``n_{l-1} x n_l x n_{l+1}`` tensor
        per layer pair, the others two ``n_l x n_{l-1}`` matrices per inner layer.
    dtype : torch.dtype
        Accumulator dtype (float64 by default: sums over many samples cancel in the signed variant).
    max_abs_mean_entries : int
        Refuse to track ``"abs-mean"`` when its tensors would hold more entries than this.

    Attributes
    ----------
    n_samples : int
        Number of samples accumulated since construction or the last :meth:`reset`.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        variants: str | Iterable[str] = VARIANTS,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        max_abs_mean_entries: int = 50_000_000,
    ) -> None:
        self.sizes = tuple(int(n) for n in sizes)
        if len(self.sizes) < 4:
            raise ValueError(
                f"sizes {self.sizes} describe {len(self.sizes) - 1} weight layers; the line graph "
                "needs at least 3 weight layers (4 sizes n_0..n_3)."
            )
        self.variants = check_variants(variants)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if "abs-mean" in self.variants:
            entries = sum(
                self.sizes[a] * self.sizes[a + 1] * self.sizes[a + 2]
                for a in range(len(self.sizes) - 2)
            )
            if entries > max_abs_mean_entries:
                raise ValueError(
                    f"the abs-mean variant would keep {entries:,} accumulator entries for layer "
                    f"sizes {self.sizes} (limit {max_abs_mean_entries:,}); drop 'abs-mean' from "
                    "variants, use narrower probe layers, or raise max_abs_mean_entries."
                )
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> EdgeStatistics:
        """Forget every accumulated sample."""
        n = self.sizes
        n_layers = len(n) - 1
        zeros = lambda *shape: torch.zeros(shape, dtype=self.dtype, device=self.device)  # noqa: E731
        self.n_samples = 0
        self._down: dict[str, list[torch.Tensor | None]] = {}
        self._up: dict[str, list[torch.Tensor | None]] = {}
        self._den: dict[str, torch.Tensor] = {}
        for v in ("signed", "mean-abs"):
            if v in self.variants:
                # s_down for weight layers a = 0..L-2, s_up for a = 1..L-1; only 1..L-2 enter the
                # numerator, so the others are left as None.
                self._down[v] = [
                    zeros(n[a + 1], n[a]) if 0 < a < n_layers - 1 else None for a in range(n_layers)
                ]
                self._up[v] = [
                    zeros(n[a + 1], n[a]) if 0 < a < n_layers - 1 else None for a in range(n_layers)
                ]
                self._den[v] = zeros()
        if "abs-mean" in self.variants:
            self._pair = [zeros(n[a], n[a + 1], n[a + 2]) for a in range(n_layers - 1)]
        return self

    def update(
        self, hs: Sequence[torch.Tensor], ds: Sequence[torch.Tensor], es: Sequence[torch.Tensor]
    ) -> EdgeStatistics:
        """Add one batch of per-sample quantities (0-based lists as in :mod:`ncap.capacitance.mlp`).

        ``hs[a]`` is the input of weight layer ``a`` (``B x n_a``), ``ds[a]`` the activation
        derivative at its output (``B x n_{a+1}``, for ``a < L-1``) and ``es[a]`` the per-sample
        error at its pre-activation (``B x n_{a+1}``; only ``a >= 1`` is used).
        """
        n_layers = len(self.sizes) - 1
        if hs[0].device != self.device:
            self.to(hs[0].device)
        cast = lambda t: t.detach().to(device=self.device, dtype=self.dtype)  # noqa: E731
        hs = [cast(h) for h in hs[:n_layers]]
        ds = [cast(d) for d in ds[: n_layers - 1]]
        es = [None] + [cast(e) for e in es[1:n_layers]]
        batch = hs[0].shape[0]
        for v in ("signed", "mean-abs"):
            if v not in self.variants:
                continue
            f = torch.abs if v == "mean-abs" else (lambda t: t)
            h_tot = [f(h).sum(dim=1) for h in hs]  # H^a_b = sum_m h^a_{b,m}
            d_tot = [f(d).sum(dim=1) for d in ds]
            e_tot = [None] + [f(e).sum(dim=1) for e in es[1:]]  # E^{a+1}_b
            for a in range(n_layers - 1):
                # denominator: sum_{i,j,k} of h_i d_j e_k for the pair (a, a+1), per sample
                self._den[v] += (h_tot[a] * d_tot[a] * e_tot[a + 1]).sum()
                if a > 0:
                    # s_down(a)[j, i] = sum_b h^a_{b,i} d^{a+1}_{b,j} E^{a+2}_b
                    self._down[v][a] += (f(ds[a]) * e_tot[a + 1][:, None]).T @ f(hs[a])
                    # s_up(a)[j, i] = sum_b H^{a-1}_b d^a_{b,i} e^{a+1}_{b,j}
                    self._up[v][a] += f(es[a]).T @ (f(ds[a - 1]) * h_tot[a - 1][:, None])
        if "abs-mean" in self.variants:
            for a in range(n_layers - 1):
                de = (ds[a][:, :, None] * es[a + 1][:, None, :]).reshape(batch, -1)
                self._pair[a] += (hs[a].T @ de).reshape(self._pair[a].shape)
        self.n_samples += batch
        return self

    def to(self, device: torch.device | str) -> EdgeStatistics:
        """Move the accumulators to ``device`` (done automatically by :meth:`update`)."""
        self.device = torch.device(device)
        move = lambda t: None if t is None else t.to(self.device)  # noqa: E731
        for v in self._den:
            self._den[v] = move(self._den[v])
            self._down[v] = [move(t) for t in self._down[v]]
            self._up[v] = [move(t) for t in self._up[v]]
        if "abs-mean" in self.variants:
            self._pair = [move(t) for t in self._pair]
        return self

    def state_dict(self) -> dict[str, Any]:
        """The accumulated sums (tensors, lists and ints only: ``torch.load(weights_only=True)``)."""
        state: dict[str, Any] = {"n_samples": self.n_samples, "variants": list(self.variants)}
        for v in self._den:
            state[f"{v}/den"] = self._den[v]
            state[f"{v}/down"] = list(self._down[v])
            state[f"{v}/up"] = list(self._up[v])
        if "abs-mean" in self.variants:
            state["abs-mean/pair"] = list(self._pair)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> EdgeStatistics:
        """Restore the sums of :meth:`state_dict` (same sizes and variants), bit for bit."""
        if tuple(state["variants"]) != self.variants:
            raise ValueError(
                f"statistics of variants {tuple(state['variants'])} cannot be loaded into an "
                f"accumulator of variants {self.variants}."
            )
        copy = lambda t: None if t is None else t.to(device=self.device, dtype=self.dtype)  # noqa: E731
        self.n_samples = int(state["n_samples"])
        for v in self._den:
            self._den[v] = copy(state[f"{v}/den"])
            self._down[v] = [copy(t) for t in state[f"{v}/down"]]
            self._up[v] = [copy(t) for t in state[f"{v}/up"]]
        if "abs-mean" in self.variants:
            self._pair = [copy(t) for t in state["abs-mean/pair"]]
        return self

    def merge(self, other: EdgeStatistics) -> EdgeStatistics:
        """Add another accumulator's sums into this one (same sizes and variants)."""
        if other.sizes != self.sizes or other.variants != self.variants:
            raise ValueError("can only merge EdgeStatistics with the same sizes and variants.")
        for v in self._den:
            self._den[v] += other._den[v].to(self._den[v])
            for mine, theirs in ((self._down[v], other._down[v]), (self._up[v], other._up[v])):
                for a, t in enumerate(theirs):
                    if t is not None:
                        mine[a] += t.to(mine[a])
        if "abs-mean" in self.variants:
            for a, t in enumerate(other._pair):
                self._pair[a] += t.to(self._pair[a])
        self.n_samples += other.n_samples
        return self

    # -- read-out ------------------------------------------------------------------------------
    def numerator_denominator(self, variant: str, *, lr: float) -> tuple[float, float]:
        """Return ``(sum s_up * s_down, sum A)`` for arc weights averaged and scaled by ``lr``."""
        (variant,) = check_variants(variant)
        if variant not in self.variants:
            raise ValueError(f"variant {variant!r} is not tracked here (tracked: {self.variants}).")
        if self.n_samples == 0:
            raise ValueError(
                "no samples accumulated: beta_eff needs at least one training step (a forward "
                "and a backward pass through the probe) since the last reset."
            )
        n_layers = len(self.sizes) - 1
        if variant == "abs-mean":
            abs_pair = [t.abs() for t in self._pair]
            num = sum(
                # both indexed [i, j] for the node (a, j, i): s_up = sum_m |T[a-1]|[m, i, j],
                # s_down = sum_k |T[a]|[i, j, k]
                (abs_pair[a - 1].sum(dim=0) * abs_pair[a].sum(dim=2)).sum()
                for a in range(1, n_layers - 1)
            )
            den = sum(t.sum() for t in abs_pair)
            scale = lr / self.n_samples
        else:
            num = sum(
                (self._up[variant][a] * self._down[variant][a]).sum()
                for a in range(1, n_layers - 1)
            )
            den = self._den[variant]
            scale = (-lr if variant == "signed" else lr) / self.n_samples
        return float(num) * scale * scale, float(den) * scale

    def beta_eff(self, variant: str, *, lr: float) -> float:
        """beta_eff of the accumulated line graph for ``variant`` and learning rate ``lr``."""
        _check_lr(lr)
        num, den = self.numerator_denominator(variant, lr=lr)
        if den == 0.0:
            raise ValueError(
                f"beta_eff ({variant}) is undefined: the total arc weight is zero (all per-sample "
                "errors vanished, or the probe's activations are all zero)."
            )
        return num / den


def _check_lr(lr: float) -> None:
    try:
        value = float(lr)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"lr must be a positive finite learning rate, got {lr!r}.")


def probe_beta_eff(
    weights: Sequence[Any],
    biases: Sequence[Any],
    x: Any,
    y: Any,
    *,
    lr: float,
    variant: str,
    activation: str = "relu",
) -> float:
    """beta_eff of the line graph of an MLP block on one batch, by the closed forms.

    Parameters
    ----------
    weights : sequence of (n_{l}, n_{l-1}) arrays or tensors
        Weight matrices in torch ``Linear`` layout, at least 3.
    biases : sequence of (n_l,) arrays or tensors
    x : (B, n_0) array or tensor
        Inputs of the block.
    y : (B,) integer array or tensor
        Class labels; the errors are those of the per-sample softmax cross-entropy.
    lr : float
        Learning rate ``eta`` of the gradient flow; beta_eff is linear in it.
    variant : {"signed", "mean-abs", "abs-mean"}
    activation : {"relu", "tanh"}

    Returns
    -------
    float
        ``sum_{l=2}^{L-1} sum_{j,i} s_up s_down / sum_{l=1}^{L-1} sum_{i,j,k} A`` in float64.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sizes = [5, 4, 4, 3]
    >>> ws = [rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    >>> bs = [np.zeros(o) for o in sizes[1:]]
    >>> x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)
    >>> b = probe_beta_eff(ws, bs, x, y, lr=1e-3, variant="mean-abs")
    >>> round(probe_beta_eff(ws, bs, x, y, lr=2e-3, variant="mean-abs") / b, 12)
    2.0
    """
    (variant,) = check_variants(variant)
    _check_lr(lr)
    block = mlp_forward_backward(weights, biases, x, y, activation=activation)
    sizes = [block.hs[0].shape[1]] + [e.shape[1] for e in block.es]
    stats = EdgeStatistics(sizes, variants=variant, max_abs_mean_entries=10**12)
    stats.update(block.hs, block.ds, block.es)
    return stats.beta_eff(variant, lr=lr)
