"""The neural capacitance probe: a frozen random MLP on top of a backbone that measures beta_eff.

The probe replaces a pretrained model's classifier. Its weights are drawn from a seed and frozen;
the backbone under it is fine-tuned. While the usual training steps run, the probe collects the
forward activations ``h``, the activation derivatives ``d`` and, through tensor hooks, the
per-sample errors ``e = d loss_b / d z`` of its own layers, and adds them to
:class:`~ncap.capacitance.statistics.EdgeStatistics`.
Nothing in the training maths changes: the hooks only read gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ncap.capacitance.mlp import ACTIVATIONS, derivative_from_output
from ncap.capacitance.statistics import EdgeStatistics
from ncap.capacitance.variants import VARIANTS, check_variants

__all__ = ["NeuralCapacitanceProbe"]

LOSS_REDUCTIONS = ("mean", "sum")


class NeuralCapacitanceProbe(nn.Module):
    """Frozen random MLP head that accumulates the line-graph statistics of its own weights.

    Parameters
    ----------
    in_features : int
        Size of the backbone's feature vector.
    num_classes : int
        Number of target classes (the probe's output size).
    hidden : sequence of int
        Hidden widths; at least two (so the probe has >= 3 weight layers). Keep them comparable to
        ``in_features``: a narrow frozen ReLU probe cannot be fitted by the backbone.
    activation : {"relu", "tanh"}
    seed : int
        Seed of the random initialisation (He-normal weights for ReLU, Glorot-normal for tanh,
        zero biases).
    freeze : bool
        Freeze the probe's parameters (the method's setting).
    lr : float
        Learning rate ``eta`` that scales the arc weights (use the fine-tuning learning rate).
    loss_reduction : {"mean", "sum"}
        How the training loss reduces over the batch; with "mean" the per-sample errors are the
        gradients times the batch size.
    variants : str or iterable of str
        beta_eff variants to track (default: all three).

    Attributes
    ----------
    statistics : EdgeStatistics
        Sums over the samples since the last :meth:`reset_statistics`.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: Sequence[int] = (256, 128),
        activation: str = "relu",
        seed: int = 0,
        freeze: bool = True,
        lr: float = 1e-3,
        loss_reduction: str = "mean",
        variants: str | Iterable[str] = VARIANTS,
        max_abs_mean_entries: int = 50_000_000,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}.")
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(
                f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}."
            )
        hidden = tuple(int(w) for w in hidden)
        if len(hidden) < 2:
            raise ValueError(
                f"hidden={hidden} gives {len(hidden) + 1} weight layers; the probe needs at "
                "least 3 (pass two or more hidden widths, e.g. hidden=(256, 128))."
            )
        sizes = (int(in_features), *hidden, int(num_classes))
        if min(sizes) < 1:
            raise ValueError(f"all layer sizes must be positive, got {sizes}.")
        self.sizes = sizes
        self.activation = activation
        self.seed = seed
        self.lr = float(lr)
        self.loss_reduction = loss_reduction
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self._init_weights(seed)
        if freeze:
            self.requires_grad_(False)
        self.recording = True
        self.statistics = EdgeStatistics(
            sizes, variants=variants, max_abs_mean_entries=max_abs_mean_entries
        )

    @property
    def variants(self) -> tuple[str, ...]:
        return self.statistics.variants

    def _init_weights(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(int(seed))
        gain = math.sqrt(2.0) if self.activation == "relu" else 1.0
        with torch.no_grad():
            for layer in self.layers:
                fan_out, fan_in = layer.weight.shape
                std = (
                    gain / math.sqrt(fan_in)
                    if self.activation == "relu"
                    else gain * math.sqrt(2.0 / (fan_in + fan_out))
                )
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
                layer.bias.zero_()

    # -- nn.Module -------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.sizes[0]:
            raise ValueError(
                f"the probe expects features of shape (batch, {self.sizes[0]}), got "
                f"{tuple(features.shape)}; set in_features to the backbone's feature size."
            )
        record = self.recording and torch.is_grad_enabled()
        n_layers = len(self.layers)
        hs, zs = [features], []
        h = features
        for a, layer in enumerate(self.layers):
            z = layer(h)
            zs.append(z)
            if a < n_layers - 1:
                h = torch.relu(z) if self.activation == "relu" else torch.tanh(z)
                hs.append(h)
        if record and all(z.requires_grad for z in zs[1:]):
            self._attach_error_hooks(hs, zs)
        return zs[-1]

    def _attach_error_hooks(self, hs: list[torch.Tensor], zs: list[torch.Tensor]) -> None:
        """Read the per-sample errors ``e = d loss_b / d z`` of layers 1.. as backward passes them,
        and add the batch to the statistics once the last of them (layer 1's) has arrived."""
        batch = zs[0].shape[0]
        scale = float(batch) if self.loss_reduction == "mean" else 1.0
        errors: list[torch.Tensor | None] = [None] * len(zs)
        hs = [h.detach() for h in hs]

        def make_hook(a: int):
            def hook(grad: torch.Tensor) -> None:
                errors[a] = grad
                if a == 1:  # autograd reaches the first layer last
                    ds = [derivative_from_output(h, self.activation) for h in hs[1:]]
                    self.statistics.update(hs, ds, errors, error_scale=scale)

            return hook

        for a in range(1, len(zs)):
            zs[a].register_hook(make_hook(a))

    # -- beta_eff --------------------------------------------------------------------------------
    def reset_statistics(self) -> None:
        """Start a new interval: forget the accumulated statistics."""
        self.statistics.reset()

    @property
    def n_samples(self) -> int:
        """Samples accumulated since the last reset."""
        return self.statistics.n_samples

    def beta_eff(self, variant: str | None = None) -> float | dict[str, float]:
        """beta_eff of the probe's line graph over the samples since the last reset.

        Returns a float for one ``variant``, or a dict over all tracked variants when ``variant`` is
        None. Raises ``ValueError`` when nothing was accumulated.
        """
        if variant is not None:
            (variant,) = check_variants(variant)
            return self.statistics.beta_eff(variant, lr=self.lr)
        return {v: self.statistics.beta_eff(v, lr=self.lr) for v in self.variants}

    def extra_repr(self) -> str:
        return (
            f"sizes={self.sizes}, activation={self.activation!r}, seed={self.seed}, lr={self.lr}, "
            f"variants={self.variants}"
        )
