"""What a model source returns: a feature extractor and what is known about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ncap.data.inputs import InputSpec

__all__ = ["Backbone", "parameter_count"]


@dataclass
class Backbone:
    """A feature extractor and what is known about it.

    ``num_features`` may be None: fine-tuning then reads it off the first forward pass.
    ``input_spec`` is the input convention the model was pretrained with (None: the dataset's
    stored images as they are).
    """

    name: str
    module: nn.Module
    num_features: int | None
    info: dict[str, Any] = field(default_factory=dict)  # source accuracy, parameter count, ...
    input_spec: InputSpec | None = None


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
