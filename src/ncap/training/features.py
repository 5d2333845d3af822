"""A backbone's features of a dataset's training images, before any fine-tuning."""

from __future__ import annotations

import torch
from torch import nn

from ncap.data.dataset import ImageDataset
from ncap.training.config import FinetuneConfig
from ncap.training.loop import _check_inputs, model_front, model_input_spec, place

__all__ = ["backbone_features"]


def backbone_features(
    module: nn.Module,
    input_spec,
    dataset: ImageDataset,
    config: FinetuneConfig,
    *,
    batch: int = 512,
    device: torch.device | str = "cpu",
    max_images: int | None = None,
) -> torch.Tensor:
    """The features (float32, on the CPU, one row per training image) of ``module`` behind the
    input adapter the fine-tuning would use (:func:`ncap.training.loop.model_front`), in eval
    mode and without gradients (of the first ``max_images`` training images when given: the split
    is a seeded random one, so they are a random subset). The module's mode is restored afterwards. A backbone that cannot
    take the inputs or returns no (batch, features) tensor fails as its fine-tuning would
    (:class:`~ncap.exceptions.CandidateError`)."""
    spec = model_input_spec(input_spec, dataset, config)
    front = place(model_front(dataset, module, spec), device)
    _check_inputs(front, None, dataset, torch.device(device))
    was_training = module.training
    front.eval()
    x = dataset.x_train if max_images is None else dataset.x_train[:max_images]
    try:
        with torch.no_grad():
            return torch.cat(
                [front(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
            )
    finally:
        module.train(was_training)
