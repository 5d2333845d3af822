"""What a model source returns: a feature extractor and what is known about it."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ncap.data.inputs import InputSpec
from ncap.exceptions import ConfigError

__all__ = ["Backbone", "backbone_from_factory", "parameter_count"]


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


def backbone_from_factory(built: Any, label: str) -> Backbone:
    """What a user's factory returned (``py:`` and ``obj:`` candidates) as a :class:`Backbone`.

    It may return a Backbone, an ``nn.Module`` or a ``(module, num_features)`` pair with a
    positive int; anything else is a :class:`~ncap.exceptions.ConfigError` naming ``label``.

    >>> backbone_from_factory((nn.Linear(3, 4), 4), "py:m:f").num_features
    4
    >>> backbone_from_factory((nn.Linear(3, 4), 0), "py:m:f")
    Traceback (most recent call last):
    ncap.exceptions.ConfigError: py:m:f returned (module, 0); num_features must be a positive int.
    """
    if isinstance(built, Backbone):
        return built
    if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module):
        try:
            num_features = operator.index(built[1])
        except TypeError:
            num_features = 0
        if isinstance(built[1], bool) or num_features < 1:
            raise ConfigError(
                f"{label} returned (module, {built[1]!r}); num_features must be a positive int."
            )
        return Backbone(name="", module=built[0], num_features=num_features)
    if isinstance(built, nn.Module):
        return Backbone(name="", module=built, num_features=None)
    raise ConfigError(
        f"{label} returned {type(built).__name__}; a factory must return an nn.Module, a "
        "(module, num_features) pair or an ncap.models.Backbone."
    )
