"""beta_eff measured instantaneously on a fixed batch, at evaluation points.

The probe's statistics (:class:`~ncap.probe.NeuralCapacitanceProbe`) accumulate over the training
steps of an evaluation interval: a running average over changing weights and changing batches. The
alternative measured here is an *instantaneous* value: at an evaluation point, the backbone's
features of a fixed set of training images (the same seeded images at every evaluation, the backbone
in eval mode, no gradient, no weight update) go through the probe's frozen weights, and beta_eff of
its line graph is computed in closed form on that one batch (:func:`ncap.probe_beta_eff`). All
three variants come from one pass (:func:`fixed_batch_beta_eff`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ncap.capacitance.mlp import mlp_forward_backward
from ncap.capacitance.statistics import EdgeStatistics
from ncap.capacitance.variants import VARIANTS, check_variants
from ncap.data.dataset import ImageDataset
from ncap.exceptions import ConfigError
from ncap.results import TrajectoryPoint
from ncap.training.callbacks import Callback
from ncap.training.probed import ProbedClassifier

__all__ = ["FixedBatchBetaEff", "fixed_batch_beta_eff", "fixed_probe_batch"]


def fixed_probe_batch(
    dataset: ImageDataset, size: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` training images and labels drawn by a seeded permutation (all when fewer)."""
    if size < 1:
        raise ConfigError(f"the fixed probe batch needs at least one image, got size={size}.")
    order = torch.randperm(len(dataset.y_train), generator=torch.Generator().manual_seed(seed))
    idx = order[:size]
    return dataset.x_train[idx], dataset.y_train[idx]


def fixed_batch_beta_eff(
    model: ProbedClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    variants: Iterable[str] = VARIANTS,
    batch: int = 512,
) -> dict[str, float | None]:
    """beta_eff of the probe's line graph on ``(x, y)`` with the current weights, every variant.

    The backbone runs in eval mode under ``torch.no_grad()`` (BatchNorm uses its running
    statistics and updates nothing; the training mode is restored), so neither the weights, the
    buffers nor the random number generators change. None where a variant is undefined (zero
    total arc weight).
    """
    variants = check_variants(tuple(variants))
    probe = model.probe
    device = next(probe.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            features = torch.cat(
                [model.features(x[i : i + batch].to(device)) for i in range(0, len(x), batch)]
            )
    finally:
        model.train(was_training)
    block = mlp_forward_backward(
        [layer.weight.detach() for layer in probe.layers],
        [layer.bias.detach() for layer in probe.layers],
        features,
        y.to(device),
        activation=probe.activation,
    )
    stats = EdgeStatistics(probe.sizes, variants=variants, max_abs_mean_entries=10**12)
    stats.update(block.hs, block.ds, block.es)
    out: dict[str, float | None] = {}
    for variant in variants:
        try:
            out[variant] = stats.beta_eff(variant, lr=probe.lr)
        except ValueError:
            out[variant] = None
    return out


class FixedBatchBetaEff(Callback):
    """A fine-tuning callback that adds ``{key: {variant: beta_eff}}`` on a fixed batch to every
    evaluation point (:func:`ncap.training.loop.finetune`'s ``callbacks``).

    >>> import torch
    >>> from ncap.data.folders import dataset_from_arrays
    >>> data = dataset_from_arrays(torch.rand(40, 28, 28), torch.arange(40) % 4, n_val=8)
    >>> x, y = fixed_probe_batch(data, 16)
    >>> FixedBatchBetaEff(x, y).key
    'beta_eff_fixed'
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        variants: Iterable[str] = VARIANTS,
        key: str = "beta_eff_fixed",
    ) -> None:
        self.x, self.y, self.variants, self.key = x, y, check_variants(tuple(variants)), key
        self.model: ProbedClassifier | None = None

    def on_train_start(self, model: ProbedClassifier) -> None:
        self.model = model

    def on_evaluate(self, point: TrajectoryPoint) -> None:
        if self.model is None:
            raise RuntimeError("FixedBatchBetaEff.on_evaluate before on_train_start.")
        point[self.key] = fixed_batch_beta_eff(self.model, self.x, self.y, variants=self.variants)
