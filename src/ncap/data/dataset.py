"""A target task as in-memory tensors: :class:`ImageDataset`, its encodings and seeded splits.

Every dataset comes with a training split and a validation split held out from the training data by a
seeded permutation (the paper holds out part of the training images for validation); a test split is
kept separately when the source has one. Images are float32 ``(N, C, H, W)`` tensors, standardised.

Images may be stored in any affine encoding of pixel values in [0, 1] (``ImageDataset.mean``/``std``,
``stored = (pixel - mean) / std``): standardised float32 for the built-in tasks, uint8 for real
datasets (a quarter of the memory). :mod:`ncap.data.inputs` maps them to each model's convention per batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ncap.exceptions import ConfigError

__all__ = [
    "MEAN",
    "STD",
    "UINT8",
    "ImageDataset",
    "default_n_val",
    "hold_out",
    "resize_images",
    "split_indices",
    "split_record",
    "standardise",
    "subset_classes",
    "to_grey",
]

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics (in [0, 1])
UINT8 = (0.0,), (1.0 / 255.0,)  # the encoding of uint8 images: stored = pixel * 255


@dataclass
class ImageDataset:
    """Train/validation(/test) image tensors of one classification task."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    classes: tuple[str, ...]
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # the encoding of the stored images: stored = (pixel - mean) / std, pixels in [0, 1]
    mean: tuple[float, ...] = (MEAN,)
    std: tuple[float, ...] = (STD,)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return (int(self.x_train.shape[-2]), int(self.x_train.shape[-1]))

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (sizes, shape, classes, encoding, provenance of the split)."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "storage": {
                "dtype": str(self.x_train.dtype).removeprefix("torch."),
                "mean": list(self.mean),
                "std": list(self.std),
            },
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": None if self.y_test is None else len(self.y_test),
        } | self.info

    def validate(self) -> None:
        """Raise ValueError for empty splits or labels outside [0, num_classes)."""
        for split, y in (("train", self.y_train), ("validation", self.y_val)):
            if len(y) == 0:
                raise ConfigError(
                    f"dataset {self.name!r} has an empty {split} split; give it samples (or a "
                    "smaller validation fraction)."
                )
            if y.dtype != torch.int64:
                raise ConfigError(
                    f"dataset {self.name!r}: {split} labels are {y.dtype}; give integer class "
                    "indices (int64)."
                )
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise ConfigError(
                    f"dataset {self.name!r}: {split} labels span [{int(y.min())}, {int(y.max())}] "
                    f"but num_classes is {self.num_classes}; labels must lie in "
                    f"[0, {self.num_classes})."
                )


def standardise(images_uint8_or_unit: np.ndarray, scale: float) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images_uint8_or_unit, dtype=np.float32)) / scale
    return ((x - MEAN) / STD).unsqueeze(1)


def split_indices(n: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < n_val < n:
        raise ConfigError(
            f"cannot hold out {n_val} of {n} training images for validation; choose n_val "
            f"between 1 and {n - 1}."
        )
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val:], order[:n_val]


def default_n_val(n: int) -> int:
    """Validation images held out of ``n`` training images: 15 000 (the paper's), at most 30%."""
    return max(1, min(15_000, round(0.3 * n)))


def split_record(val_idx: np.ndarray, seed: int) -> dict[str, Any]:
    """How the validation split was drawn, for the results: seed, size, a digest of the indices."""
    digest = hashlib.sha256(np.sort(np.asarray(val_idx, dtype=np.int64)).tobytes()).hexdigest()
    return {"split_seed": seed, "val_indices_sha256": digest[:16]}


def hold_out(
    x: torch.Tensor, y: torch.Tensor, *, n_val: int, seed: int, n_train: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The seeded validation split of ``(x, y)``: train and validation parts and the record of it.

    The training part is optionally truncated to ``n_train`` images.
    """
    train_idx, val_idx = split_indices(len(y), n_val, seed)
    if n_train is not None:
        train_idx = train_idx[:n_train]
    tr, va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return x[tr], y[tr], x[va], y[va], split_record(val_idx, seed)


def subset_classes(x, y, classes):
    keep = np.isin(y, classes)
    remap = {c: k for k, c in enumerate(classes)}
    return x[keep], np.array([remap[v] for v in y[keep]], dtype=np.int64)


def resize_images(dataset: ImageDataset, size: int) -> ImageDataset:
    """The same dataset with every split resized to ``size x size`` (bilinear, antialiased)."""

    def resize(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None or tuple(x.shape[-2:]) == (size, size):
            return x
        out = torch.nn.functional.interpolate(
            x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        return out.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else out

    return dataclasses.replace(
        dataset,
        x_train=resize(dataset.x_train),
        x_val=resize(dataset.x_val),
        x_test=resize(dataset.x_test),
        info=dataset.info | {"image_size": size},
    )


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


def to_grey(dataset: ImageDataset) -> ImageDataset:
    """The same dataset with RGB images converted to one grey channel (BT.601 luma).

    Pixels are decoded from the stored encoding, weighted and stored again as uint8 (uint8 input)
    or in the dataset's first channel's encoding; a one-channel dataset is returned as it is.
    """
    if dataset.channels == 1:
        return dataset
    if dataset.channels != 3:
        raise ConfigError(
            f"dataset {dataset.name!r} has {dataset.channels} channels; only RGB (3) converts to grey."
        )
    mean = torch.tensor(dataset.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, dtype=torch.float64).view(1, -1, 1, 1)
    weights = torch.tensor(LUMA, dtype=torch.float64).view(1, 3, 1, 1)
    uint8 = dataset.x_train.dtype == torch.uint8
    out_mean, out_std = UINT8 if uint8 else (dataset.mean[:1], dataset.std[:1])

    def convert(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        grey = ((x.double() * std + mean) * weights).sum(1, keepdim=True)
        if uint8:
            return (grey * 255.0).round().clamp(0, 255).to(torch.uint8)
        return ((grey - out_mean[0]) / out_std[0]).to(x.dtype)

    return dataclasses.replace(
        dataset,
        x_train=convert(dataset.x_train),
        x_val=convert(dataset.x_val),
        x_test=convert(dataset.x_test),
        mean=tuple(out_mean),
        std=tuple(out_std),
        info=dataset.info | {"grey": "BT.601 luma"},
    )
