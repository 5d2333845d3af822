"""The network a run trains and probes: ``probe(backbone(adapter(x)))``.

Its own module so that the training loop (:mod:`ncap.training.loop`) and the fixed-batch
measurement (:mod:`ncap.training.fixed_batch`), which both hold one, import it without importing
each other.
"""

from __future__ import annotations

import torch
from torch import nn

from ncap.capacitance.probe import NeuralCapacitanceProbe
from ncap.training.runtime import autocast

__all__ = ["ProbedClassifier"]


class ProbedClassifier(nn.Module):
    """``probe(backbone(adapter(x)))``: the backbone under autocast when asked, the probe in float32."""

    def __init__(
        self,
        front: nn.Module,
        probe: NeuralCapacitanceProbe,
        *,
        device: torch.device,
        precision: str,
    ) -> None:
        super().__init__()
        self.front = front
        self.probe = probe
        self.device_type = device
        self.precision = precision

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features of ``x`` (float32), the probe's input."""
        with autocast(self.device_type, self.precision):
            features = self.front(x)
        return features.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(self.features(x))
