"""Distribution shifts of a dataset: new target tasks derived from an existing one.

A shift is named by a short string and applied to a loaded :class:`~ncap.data.dataset.ImageDataset`:

- ``"rot90"``: every image (train, validation, test) rotated by 90 degrees (a geometric shift);
- ``"invert"``: pixel intensities inverted, ``pixel -> 1 - pixel`` (a photometric shift);
- ``"label-noise-P"``: a fraction ``P`` (e.g. ``label-noise-0.4``) of the *training* labels replaced
  by a different class drawn uniformly, seeded; validation and test labels stay clean, so the task
  measures how well a model learns through noisy supervision.

>>> import torch
>>> from ncap.data.folders import dataset_from_arrays
>>> data = dataset_from_arrays(torch.zeros(10, 4, 4, dtype=torch.uint8), torch.arange(10) % 2, n_val=2)
>>> float(apply_shift(data, "invert").x_train.max())
255.0
>>> check_shift("blur")
Traceback (most recent call last):
...
ncap.exceptions.ConfigError: unknown shift 'blur'; choose one of rot90, invert, label-noise-P (0 < P < 1).
"""

from __future__ import annotations

import dataclasses
import re

import torch

from ncap.data.dataset import ImageDataset
from ncap.exceptions import ConfigError

__all__ = ["apply_shift", "check_shift"]

_NOISE = re.compile(r"label-noise-(0?\.\d+)$")


def check_shift(shift: str) -> str:
    """Return ``shift`` if it names a known shift, else raise ValueError listing the known ones."""
    if shift in ("rot90", "invert"):
        return shift
    match = _NOISE.match(shift)
    if match and 0 < float(match.group(1)) < 1:
        return shift
    raise ConfigError(
        f"unknown shift {shift!r}; choose one of rot90, invert, label-noise-P (0 < P < 1)."
    )


def _map_images(dataset: ImageDataset, fn) -> ImageDataset:
    def apply(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else fn(x).contiguous()

    return dataclasses.replace(
        dataset,
        x_train=apply(dataset.x_train),
        x_val=apply(dataset.x_val),
        x_test=apply(dataset.x_test),
    )


def _invert(dataset: ImageDataset) -> ImageDataset:
    # stored = (pixel - mean) / std, so 1 - pixel is stored as (1 - 2 mean) / std - stored
    mean = torch.tensor(dataset.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, dtype=torch.float64).view(1, -1, 1, 1)

    def invert(x: torch.Tensor) -> torch.Tensor:
        out = (1.0 - 2.0 * mean) / std - x.double()
        if x.dtype == torch.uint8:
            return out.round().clamp(0, 255).to(torch.uint8)
        return out.to(x.dtype)

    return _map_images(dataset, invert)


def _label_noise(dataset: ImageDataset, fraction: float, seed: int) -> ImageDataset:
    y = dataset.y_train.clone()
    generator = torch.Generator().manual_seed(seed)
    flip = torch.rand(len(y), generator=generator) < fraction
    # a different class, uniformly: add an offset in [1, num_classes) modulo num_classes
    offset = torch.randint(1, dataset.num_classes, (len(y),), generator=generator)
    y[flip] = (y[flip] + offset[flip]) % dataset.num_classes
    info = dataset.info | {"label_noise": {"fraction": fraction, "flipped": int(flip.sum())}}
    return dataclasses.replace(dataset, y_train=y, info=info)


def apply_shift(dataset: ImageDataset, shift: str, *, seed: int = 0) -> ImageDataset:
    """``dataset`` under ``shift`` (see the module docstring); ``seed`` draws the label noise."""
    check_shift(shift)
    if shift == "rot90":
        out = _map_images(dataset, lambda x: torch.rot90(x, 1, dims=(-2, -1)))
    elif shift == "invert":
        out = _invert(dataset)
    else:
        out = _label_noise(dataset, float(_NOISE.match(shift).group(1)), seed)
    return dataclasses.replace(
        out, name=f"{dataset.name}+{shift}", info=out.info | {"shift": shift}
    )
