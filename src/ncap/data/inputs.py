"""What a model expects as input, and the per-batch adapter that turns dataset images into it.

A dataset stores images in any affine encoding of pixel values in [0, 1]: ``stored = (pixel - m) / s``
per channel (``m = 0, s = 1/255`` for uint8 storage; the Fashion-MNIST statistics for ncap's built-in
tasks). A model's :class:`InputSpec` says which channels, size and normalisation it was pretrained
with (timm's data config, torchvision's weights transforms). :func:`adapt_batch` maps one to the other
on the batch's device, so images stay small in memory (32 px CIFAR, uint8) and are resized only when a
batch is used (224 or 299 px for ImageNet models):

.. math::

    x_{model} = \\frac{\\operatorname{resize}(\\operatorname{expand}(x \\cdot s + m)) - \\mu}{\\sigma}

``expand`` repeats a single grey channel three times for RGB models and turns RGB images into grey
ones (ITU-R BT.601 luma, :data:`LUMA`) for grey models; other channel mismatches are errors. When
the dataset already matches the spec exactly the adapter is the identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ncap.exceptions import ConfigError

__all__ = [
    "INTERPOLATIONS",
    "LUMA",
    "InputAdapter",
    "InputSpec",
    "adapt_batch",
    "check_channels",
]

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
LUMA = (0.299, 0.587, 0.114)  # RGB -> grey, ITU-R BT.601 (PIL's convert("L"))


@dataclass(frozen=True)
class InputSpec:
    """Input convention of a model: channels, spatial size, interpolation and normalisation.

    Parameters
    ----------
    channels : int
        Channels the model's first layer takes (3 for ImageNet models).
    size : tuple of int or None
        ``(height, width)`` to resize to; None keeps the dataset's size.
    mean, std : tuple of float
        Per-channel normalisation of pixel values in [0, 1]: ``x = (pixel - mean) / std``.
    interpolation : str
        ``"bilinear"``, ``"bicubic"`` or ``"nearest"`` (antialiased, as torchvision resizes).
    source : str
        Where the spec came from, for the record (e.g. ``"timm data config"``).
    """

    channels: int
    size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    source: str = ""

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ConfigError(f"channels must be >= 1, got {self.channels}.")
        if len(self.mean) not in (1, self.channels) or len(self.std) not in (1, self.channels):
            raise ConfigError(
                f"mean/std need 1 or {self.channels} values, got {len(self.mean)} and "
                f"{len(self.std)}."
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std must be positive, got {self.std}.")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"unknown interpolation {self.interpolation!r}; choose one of {INTERPOLATIONS}."
            )
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ConfigError(
                f"size must be (height, width) with positive entries, got {self.size}."
            )

    def with_size(self, size: int | tuple[int, int] | None) -> InputSpec:
        """The same spec at another input size (an int means a square)."""
        if isinstance(size, int):
            size = (size, size)
        return dataclasses.replace(self, size=None if size is None else tuple(size))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["size"] = None if self.size is None else list(self.size)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out


def check_channels(data_channels: int, spec: InputSpec) -> None:
    """Raise ValueError unless ``data_channels`` images can feed a ``spec.channels`` model."""
    if data_channels == spec.channels or (data_channels, spec.channels) in ((1, 3), (3, 1)):
        return
    hint = (
        "convert the images to grayscale or RGB (e.g. an image folder loaded with channels=1)"
        if spec.channels == 1
        else f"give the model {data_channels}-channel input (timm: in_chans) or the data "
        f"{spec.channels} channels"
    )
    raise ConfigError(
        f"channel mismatch: the dataset has {data_channels}-channel images but the model takes "
        f"{spec.channels} channels; {hint}. Only grey <-> RGB (1 <-> 3) is converted automatically."
    )


def _per_channel(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(tuple(values), dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def adapt_batch(
    x: torch.Tensor,
    *,
    data_mean: Sequence[float],
    data_std: Sequence[float],
    spec: InputSpec,
) -> torch.Tensor:
    """Map a batch of stored images ``(N, C, H, W)`` to the model's input convention.

    Parameters
    ----------
    x : Tensor
        Stored images, ``stored = (pixel - data_mean) / data_std`` (any dtype; uint8 is cast).
    data_mean, data_std : sequence of float
        The dataset's encoding, one value or one per channel.
    spec : InputSpec
        The model's convention.

    Returns
    -------
    Tensor
        float32 ``(N, spec.channels, *size)`` with ``(pixel - spec.mean) / spec.std``.
    """
    if x.ndim != 4:
        raise ConfigError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}.")
    check_channels(x.shape[1], spec)
    pixels = x.float() * _per_channel(data_std, x) + _per_channel(data_mean, x)
    if pixels.shape[1] == 3 and spec.channels == 1:
        pixels = (pixels * _per_channel(LUMA, x)).sum(dim=1, keepdim=True)
    elif pixels.shape[1] != spec.channels:
        pixels = pixels.expand(-1, spec.channels, -1, -1)
    if spec.size is not None and tuple(pixels.shape[-2:]) != tuple(spec.size):
        mode = spec.interpolation
        # antialias=True is also PIL's cubic kernel (a = -0.5) when upsampling, as torchvision uses
        pixels = nn.functional.interpolate(
            pixels,
            size=tuple(spec.size),
            mode=mode,
            **({} if mode == "nearest" else {"align_corners": False, "antialias": True}),
        )
        if mode == "bicubic":  # cubic overshoot; PIL clamps the same way for 8-bit images
            pixels = pixels.clamp(0.0, 1.0)
    return (pixels - _per_channel(spec.mean, x)) / _per_channel(spec.std, x)


def is_identity(
    data_mean: Sequence[float],
    data_std: Sequence[float],
    data_channels: int,
    data_size: tuple[int, int],
    spec: InputSpec | None,
) -> bool:
    """True when stored images already are the model's input (no adapter needed)."""
    return spec is None or (
        tuple(data_mean) == tuple(spec.mean)
        and tuple(data_std) == tuple(spec.std)
        and data_channels == spec.channels
        and (spec.size is None or tuple(spec.size) == tuple(data_size))
    )


class InputAdapter(nn.Module):
    """:func:`adapt_batch` as the first layer of a model (no parameters)."""

    def __init__(
        self, *, data_mean: Sequence[float], data_std: Sequence[float], spec: InputSpec
    ) -> None:
        super().__init__()
        self.data_mean = tuple(float(v) for v in data_mean)
        self.data_std = tuple(float(v) for v in data_std)
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adapt_batch(x, data_mean=self.data_mean, data_std=self.data_std, spec=self.spec)

    def extra_repr(self) -> str:
        return f"channels={self.spec.channels}, size={self.spec.size}, {self.spec.interpolation}"
