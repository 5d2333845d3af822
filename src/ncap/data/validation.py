"""What a user hands ncap as data, checked once, before anything is trained.

Every array, label set and image encoding that enters a dataset passes here
(:func:`ncap.data.folders.dataset_from_arrays` and :func:`ncap.data.folders.load_image_folder`):

- :func:`images`: ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with C = 1 or 3, uint8 or
  floats in [0, 1], at least one image;
- :func:`labels`: a 1-d array of whole numbers (int, or floats that are whole), none negative;
- :func:`paired`: as many labels as images (never cut to the shorter);
- :func:`class_count`: the class count from the labels: without class names, the training labels
  must be exactly ``0 .. K-1`` (every index present; a stray huge value is named, not allocated),
  and the validation and test labels a subset of the training ones;
- :func:`to_8bit`: an image file's pixels as 8 bits per channel, 16-bit and 32-bit grey PNG/TIFF
  scaled from their own range rather than clipped to white.

Each refusal is a :class:`~ncap.exceptions.ConfigError` naming the argument or file and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ncap.exceptions import ConfigError

__all__ = ["class_count", "images", "labels", "paired", "to_8bit"]


def images(x: Any, what: str) -> tuple[torch.Tensor, tuple, tuple]:
    """Images as an ``(N, C, H, W)`` tensor and their encoding (uint8 or floats in [0, 1])."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or min(x.shape[2:]) < 1:
        raise ConfigError(
            f"{what} must be images shaped (N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 "
            f"or 3, got shape {tuple(x.shape)}."
        )
    if len(x) == 0:
        raise ConfigError(f"{what} holds no images; give at least one.")
    if x.dtype == torch.uint8:
        return x.contiguous(), (0.0,) * x.shape[1], (1.0 / 255.0,) * x.shape[1]
    if not torch.is_floating_point(x):
        raise ConfigError(
            f"{what} must be uint8 (0-255) or float (0-1) pixels, got {x.dtype}; convert it "
            "(e.g. x.astype(np.uint8) for 0-255 values, x / x.max() for others)."
        )
    x = x.float().contiguous()
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
        raise ConfigError(
            f"{what} holds float pixels outside [0, 1] (or NaN/inf); pass uint8 images, or floats "
            "scaled to [0, 1] (ncap applies each model's own normalisation)."
        )
    return x, (0.0,) * x.shape[1], (1.0,) * x.shape[1]


def labels(y: Any, what: str) -> torch.Tensor:
    """Integer class labels as int64; floats only when they are whole numbers; none negative."""
    if y is None:
        raise ConfigError(f"{what} is missing; give one class index per image.")
    array = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if array.ndim != 1:
        raise ConfigError(f"{what} must be a 1-d array of class indices, got shape {array.shape}.")
    if array.dtype.kind == "b":
        raise ConfigError(f"{what} holds booleans; give integer class indices (0, 1, ...).")
    whole = array.dtype.kind in "iu" or (
        array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all()
    )
    if not whole:
        example = next(
            (v for v in array.ravel() if not (isinstance(v, float) and v.is_integer())), None
        )
        raise ConfigError(
            f"{what} must hold integer class indices (0 .. num_classes-1), got {array.dtype} "
            f"values such as {example!r}; map class names to indices first (e.g. np.unique(y, "
            "return_inverse=True))."
        )
    if array.size and array.min() < 0:
        raise ConfigError(
            f"{what} holds the negative label {array.min().item()}; class indices start at 0 (map them "
            "with np.unique(y, return_inverse=True))."
        )
    if array.size and array.max() > np.iinfo(np.int64).max:
        raise ConfigError(f"{what} holds the label {array.max().item()}, beyond int64.")
    return torch.as_tensor(array.astype(np.int64))


def paired(x: torch.Tensor, y: torch.Tensor, x_name: str, y_name: str) -> None:
    """As many labels as images: a mismatch is named, never cut to the shorter."""
    if len(x) != len(y):
        raise ConfigError(
            f"{x_name} has {len(x)} images but {y_name} {len(y)} labels; give one label per image."
        )


def _listed(values: np.ndarray, limit: int = 5, total: int | None = None) -> str:
    """The first ``limit`` values, and how many there are in all (``total``, else their count)."""
    total = len(values) if total is None else total
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" ... ({total} in all)" if total > limit else "")


def class_count(
    y_train: torch.Tensor,
    others: Sequence[tuple[str, torch.Tensor | None]],
    classes: Sequence[str] | None,
) -> int:
    """The number of classes; ConfigError for a label set a classifier cannot be trained on.

    Without ``classes`` the training labels must be ``0 .. K-1`` with every index present (a gap
    is a class never seen in training, or a stray value such as 10**12); with ``classes``, every
    label must be below ``len(classes)``. Labels of the other splits (``(name, labels)``) must be
    training labels: a class the model never trained on cannot be predicted.
    """
    seen = np.unique(y_train.numpy())
    if classes is not None:
        if len(classes) < 2:
            raise ConfigError(f"classes names {len(classes)} class(es); a classifier needs >= 2.")
        if int(seen[-1]) >= len(classes):
            raise ConfigError(
                f"y_train holds the label {int(seen[-1])} but classes names {len(classes)}; labels "
                f"must lie in [0, {len(classes)})."
            )
        count = len(classes)
    else:
        if len(seen) < 2:
            raise ConfigError(
                f"y_train holds {len(seen)} class ({_listed(seen)}); a classifier needs >= 2."
            )
        count = int(seen[-1]) + 1
        if count != len(seen):
            missing = np.setdiff1d(np.arange(min(count, len(seen) + 6)), seen)
            raise ConfigError(
                f"y_train's labels are not 0 .. K-1: it holds {len(seen)} distinct labels up to "
                f"{int(seen[-1])} (missing: {_listed(missing, total=count - len(seen))}); "
                "renumber them with "
                "np.unique(y, return_inverse=True), or pass classes= naming every class."
            )
    for name, y in others:
        if y is None or len(y) == 0:
            continue
        extra = np.setdiff1d(np.unique(y.numpy()), seen)
        if len(extra):
            raise ConfigError(
                f"{name} holds label(s) {_listed(extra)} that y_train never has; every class "
                "evaluated must be trained on: add training images of it, or drop those images."
            )
    return count


# PIL modes of one channel of more than 8 bits: scaled to 8 bits from their own range
WIDE_GREY = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


def to_8bit(img, mode: str, path: Path):
    """``img`` (a PIL image) converted to ``mode`` ("L" or "RGB") at 8 bits per channel.

    PIL's own conversion clips 16-bit grey to 255 (a blank white image); here 16-bit grey is
    scaled by 255/65535, 32-bit integer grey by its 16-bit range when it fits one, and float grey
    when it lies in [0, 1]; any other range is refused naming the file.
    """
    if img.mode not in WIDE_GREY:
        return img.convert(mode)
    array = np.asarray(img)
    if img.mode.startswith("I;16") or (
        img.mode == "I" and array.min() >= 0 and array.max() < 2**16
    ):
        grey = (array.astype(np.uint32) * 255 + 32767) // 65535
    elif img.mode == "F" and np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1:
        grey = np.round(array * 255)
    else:
        raise ConfigError(
            f"image file {path} is {img.mode} grey with values in [{array.min()}, {array.max()}], "
            "which ncap cannot map to 8 bits; save it as an 8- or 16-bit PNG."
        )
    return Image.fromarray(grey.astype(np.uint8), "L").convert(mode)
