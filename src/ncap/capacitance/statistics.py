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
weights are the means over all accumulated samples. It queues batches and adds ``QUEUE_BATCHES`` of
them at a time (or fewer, when anything reads the sums), their products computed in the batches'
dtype and added to the float64 sums.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ncap.capacitance.mlp import mlp_forward_backward
from ncap.capacitance.variants import VARIANTS, check_variants

__all__ = ["VARIANTS", "EdgeStatistics", "probe_beta_eff", "check_variants"]

# batches EdgeStatistics.update queues and adds as one chunk: the bookkeeping is some hundred small
# operations, which cost a small model's CPU step more than their arithmetic does (16 batches of 64
# through lenet's 128-128-64-32 probe hold about 3 MB)
QUEUE_BATCHES = 16


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
        Number of samples accumulated (queued ones included) since construction or the last
        :meth:`reset`.
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
        self.n_samples = 0
        # the cheap variants' sums: one row per tracked variant, in this order
        self._cheap = tuple(v for v in ("signed", "mean-abs") if v in self.variants)
        self._den, self._down, self._up = self._zero_sums()
        self._queue: list[_Batch] = []
        if "abs-mean" in self.variants:
            self._pair = [
                torch.zeros(n[a], n[a + 1], n[a + 2], dtype=self.dtype, device=self.device)
                for a in range(n_layers - 1)
            ]
        return self

    def _zero_sums(self):
        """Zero sums of the cheap variants: the denominators (one per variant) and, per weight
        layer, s_down and s_up (``variants x n_{a+1} x n_a``; only the inner layers 1..L-2 enter
        the numerator, the others are None)."""
        n, n_layers, k = self.sizes, len(self.sizes) - 1, len(self._cheap)
        zeros = lambda *shape: torch.zeros(shape, dtype=self.dtype, device=self.device)  # noqa: E731
        inner = lambda a: zeros(k, n[a + 1], n[a]) if k and 0 < a < n_layers - 1 else None  # noqa: E731
        return zeros(k), [inner(a) for a in range(n_layers)], [inner(a) for a in range(n_layers)]

    def flush(self) -> None:
        """Add the queued batches to the sums now (anything that reads the sums does this)."""
        queue, self._queue = self._queue, []
        if not queue:
            return
        with torch.no_grad():
            if self._cheap:  # the queued batches as one chunk of samples
                n_layers = len(self.sizes) - 1
                join = lambda parts: parts[0] if len(parts) == 1 else torch.cat(parts)  # noqa: E731
                chunk = _Batch(
                    [join([q.hs[a] for q in queue]) for a in range(n_layers)],
                    [join([q.ds[a] for q in queue]) for a in range(n_layers - 1)],
                    [None] + [join([q.es[a] for q in queue]) for a in range(1, n_layers)],
                    queue[0].scale,
                )
                self._add_cheap(chunk)
            if "abs-mean" in self.variants:  # batch by batch: its B x n_{a+1} n_{a+2} products
                for batch in queue:  # are large, and its cost is in the flops, not the op count
                    self._add_abs_mean(batch)

    def _add_abs_mean(self, batch: _Batch) -> None:
        """Add one batch to the abs-mean sums ``T[a][i, j, k] = sum_b h_i d_j e_k``."""
        hs, ds, es = batch.hs, batch.ds, batch.es
        samples = hs[0].shape[0]
        for a in range(len(self.sizes) - 2):
            de = (ds[a][:, :, None] * es[a + 1][:, None, :]).reshape(samples, -1)
            self._pair[a].add_((hs[a].T @ de).reshape(self._pair[a].shape), alpha=batch.scale)

    def update(
        self,
        hs: Sequence[torch.Tensor],
        ds: Sequence[torch.Tensor],
        es: Sequence[torch.Tensor],
        *,
        error_scale: float = 1.0,
    ) -> EdgeStatistics:
        """Add one batch of per-sample quantities (0-based lists as in :mod:`ncap.capacitance.mlp`).

        ``hs[a]`` is the input of weight layer ``a`` (``B x n_a``), ``ds[a]`` the activation
        derivative at its output (``B x n_{a+1}``, for ``a < L-1``; booleans read as 0/1) and
        ``es[a]`` the per-sample error at its pre-activation (``B x n_{a+1}``; only ``a >= 1`` is
        used), multiplied by ``error_scale`` (with a mean-reduced loss, the gradients' ``e`` times
        the batch size).

        The batch is queued (the tensors are kept, not copied: do not modify them in place) and
        up to ``QUEUE_BATCHES`` batches are added as one chunk, or fewer when anything reads the
        sums: a few large operations cost less than many small ones. A chunk's sums are
        computed in the inputs' floating dtype and added to the accumulators (``dtype``), so what
        cancels over an interval of training cancels in float64.
        """
        if not error_scale > 0:
            raise ValueError(f"error_scale must be positive, got {error_scale!r}.")
        n_layers = len(self.sizes) - 1
        if hs[0].device != self.device:
            self.to(hs[0].device)
        # float32 or float64 as given; half precision (autocast) computed in float32
        dtype = hs[0].dtype if hs[0].dtype in (torch.float32, torch.float64) else torch.float32
        as_float = lambda t: t.detach().to(dtype)  # noqa: E731 - no copy when it already is
        batch = _Batch(
            [as_float(h) for h in hs[:n_layers]],
            [as_float(d) for d in ds[: n_layers - 1]],
            [None] + [as_float(e) for e in es[1:n_layers]],
            float(error_scale),
        )
        if self._queue and (self._queue[0].scale, self._queue[0].dtype) != (batch.scale, dtype):
            self.flush()  # a chunk shares one scale and one dtype
        self._queue.append(batch)
        self.n_samples += batch.hs[0].shape[0]
        if len(self._queue) >= QUEUE_BATCHES:
            self.flush()
        return self

    def _add_cheap(self, chunk: _Batch) -> None:
        """Add a chunk of samples to the cheap variants' sums."""
        hs, ds, es, scale = chunk.hs, chunk.ds, chunk.es, chunk.scale
        n_layers = len(self.sizes) - 1
        for k, variant in enumerate(self._cheap):
            if variant == "mean-abs":
                hs, ds = [h.abs() for h in hs], [d.abs() for d in ds]
                es = [None] + [e.abs() for e in es[1:]]
            h_tot = [h.sum(dim=1) for h in hs]  # H^a_b = sum_m h^a_{b,m}
            e_tot = [None] + [e.sum(dim=1) for e in es[1:]]  # E^{a+1}_b
            d_tot = [d.sum(dim=1) for d in ds]
            # denominator: sum over the pairs (a, a+1) and samples of sum_{i,j,k} h_i d_j e_k
            den = torch.stack(h_tot[:-1]) * torch.stack(d_tot) * torch.stack(e_tot[1:])
            self._den[k].add_(den.sum(), alpha=scale)
            for a in range(1, n_layers - 1):
                # s_down(a)[j, i] = sum_b h^a_{b,i} d^{a+1}_{b,j} E^{a+2}_b
                down = (ds[a] * e_tot[a + 1][:, None]).T @ hs[a]
                self._down[a][k].add_(down, alpha=scale)
                # s_up(a)[j, i] = sum_b H^{a-1}_b d^a_{b,i} e^{a+1}_{b,j}
                up = es[a].T @ (ds[a - 1] * h_tot[a - 1][:, None])
                self._up[a][k].add_(up, alpha=scale)

    def to(self, device: torch.device | str) -> EdgeStatistics:
        """Move the accumulators to ``device`` (done automatically by :meth:`update`)."""
        self.flush()
        self.device = torch.device(device)
        move = lambda t: None if t is None else t.to(self.device)  # noqa: E731
        self._den = move(self._den)
        self._down = [move(t) for t in self._down]
        self._up = [move(t) for t in self._up]
        if "abs-mean" in self.variants:
            self._pair = [move(t) for t in self._pair]
        return self

    def state_dict(self) -> dict[str, Any]:
        """The accumulated sums and the queued batches (tensors, lists, floats and ints only:
        ``torch.load(weights_only=True)``). The queue is kept as it is, so a run continued from
        this state adds its chunks where an uninterrupted run would."""
        state: dict[str, Any] = {"n_samples": self.n_samples, "variants": list(self.variants)}
        state["queue"] = [[list(q.hs), list(q.ds), list(q.es), q.scale] for q in self._queue]
        pick = lambda t, k: None if t is None else t[k].clone()  # noqa: E731
        for k, v in enumerate(self._cheap):
            state[f"{v}/den"] = self._den[k].clone()
            state[f"{v}/down"] = [pick(t, k) for t in self._down]
            state[f"{v}/up"] = [pick(t, k) for t in self._up]
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
        copy = lambda t: t.to(device=self.device, dtype=self.dtype)  # noqa: E731
        move = lambda ts: [None if t is None else t.to(self.device) for t in ts]  # noqa: E731
        self._queue = [  # (states of ncap before the queue have none)
            _Batch(move(hs), move(ds), move(es), float(scale))
            for hs, ds, es, scale in state.get("queue", [])
        ]
        self.n_samples = int(state["n_samples"])
        if self._cheap:
            self._den = torch.stack([copy(state[f"{v}/den"]) for v in self._cheap])
            for key, sums in (("down", self._down), ("up", self._up)):
                for a, t in enumerate(sums):
                    if t is not None:
                        sums[a] = torch.stack([copy(state[f"{v}/{key}"][a]) for v in self._cheap])
        if "abs-mean" in self.variants:
            self._pair = [copy(t) for t in state["abs-mean/pair"]]
        return self

    def merge(self, other: EdgeStatistics) -> EdgeStatistics:
        """Add another accumulator's sums into this one (same sizes and variants)."""
        if other.sizes != self.sizes or other.variants != self.variants:
            raise ValueError("can only merge EdgeStatistics with the same sizes and variants.")
        self.flush()
        other.flush()
        self._den += other._den.to(self._den)
        for mine, theirs in ((self._down, other._down), (self._up, other._up)):
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
        self.flush()
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
            k = self._cheap.index(variant)
            num = sum((self._up[a][k] * self._down[a][k]).sum() for a in range(1, n_layers - 1))
            den = self._den[k]
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


@dataclass(frozen=True)
class _Batch:
    """One batch of :meth:`EdgeStatistics.update` (``dtype``: of its tensors), or a chunk of
    queued batches joined along the samples."""

    hs: list[torch.Tensor]
    ds: list[torch.Tensor]
    es: list[torch.Tensor | None]
    scale: float

    @property
    def dtype(self) -> torch.dtype:
        return self.hs[0].dtype


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
