"""Datasets from your own images: numpy arrays or tensors, and image folders (one sub-folder per class)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ncap.data import validation
from ncap.data.dataset import UINT8, ImageDataset, default_n_val, hold_out
from ncap.exceptions import ConfigError, DatasetMissing

__all__ = ["IMAGE_SUFFIXES", "dataset_from_arrays", "load_image_folder"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def dataset_from_arrays(
    x_train: Any,
    y_train: Any,
    *,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    n_val: int | None = None,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    name: str = "arrays",
) -> ImageDataset:
    """A dataset from numpy arrays (or tensors) of images and integer labels.

    Images are uint8 (0-255) or floats in [0, 1], shaped ``(N, H, W)``, ``(N, C, H, W)`` or
    ``(N, H, W, C)``. Without ``x_val``, ``n_val`` images (default :func:`default_n_val`) are held
    out of the training data by a seeded permutation. ``x_test``/``y_test`` are kept apart and
    reported separately. Every array and label set is checked first (:mod:`ncap.data.validation`:
    one label per image, labels ``0 .. K-1``, validation and test classes among the training ones).
    """
    x, mean, std = validation.images(x_train, "x_train")
    y = validation.labels(y_train, "y_train")
    validation.paired(x, y, "x_train", "y_train")
    xv = yv = xt = yt = None
    if x_val is not None:
        xv, mean_v, std_v = validation.images(x_val, "x_val")
        yv = validation.labels(y_val, "y_val")
        validation.paired(xv, yv, "x_val", "y_val")
        if (mean_v, std_v) != (mean, std):
            raise ConfigError("x_val must have the same dtype and channels as x_train.")
    elif y_val is not None:
        raise ConfigError("y_val is given without x_val; give both, or neither (n_val holds out).")
    if x_test is not None:
        xt, mean_t, std_t = validation.images(x_test, "x_test")
        yt = validation.labels(y_test, "y_test")
        validation.paired(xt, yt, "x_test", "y_test")
        if (mean_t, std_t) != (mean, std):
            raise ConfigError("x_test must have the same dtype and channels as x_train.")
    elif y_test is not None:
        raise ConfigError("y_test is given without x_test; give both, or neither.")
    # the label sets, on the user's arrays (before any hold-out): checked once, here
    num_classes = validation.class_count(y, [("y_val", yv), ("y_test", yt)], classes)
    info: dict[str, Any] = {"source": "arrays"}
    if x_val is None:
        n_val = default_n_val(len(y)) if n_val is None else n_val
        x, y, xv, yv, record = hold_out(x, y, n_val=n_val, seed=seed)
        info |= record
    dataset = ImageDataset(
        name=name,
        x_train=x,
        y_train=y,
        x_val=xv,
        y_val=yv,
        x_test=xt,
        y_test=yt,
        num_classes=num_classes,
        classes=tuple(classes) if classes is not None else tuple(map(str, range(num_classes))),
        info=info,
        mean=mean,
        std=std,
    )
    dataset.validate()
    return dataset


GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@contextlib.contextmanager
def _opened(path: Path):
    """``PIL.Image.open(path)``; a file PIL cannot identify is a ConfigError naming it."""
    try:
        img = Image.open(path)
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError(
            f"image file {path} cannot be read ({type(err).__name__}: {err}); repair or remove it."
        ) from None
    with img:
        yield img


def _seeded_subset(x, y, n: int, seed: int, what: str, folder: Path):
    """``n`` of the images of a split folder, drawn by a seeded permutation."""
    if not 0 < n <= len(y):
        raise ConfigError(f"{what}={n} but {folder} holds {len(y)} images; choose 1 to {len(y)}.")
    keep = torch.from_numpy(np.random.default_rng(seed).permutation(len(y))[:n])
    return x[keep], y[keep]


def load_image_folder(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    n_train: int | None = None,
    n_val: int | None = None,
) -> ImageDataset:
    """Load ``path/<class>/<image>`` (or ``path/train/<class>/...`` + ``path/val/<class>/...``).

    Images are stored as uint8. ``image_size`` resizes them to a square; by default they keep
    their size when all share one, else they are resized to 224. ``channels`` (1 or 3) defaults to
    1 when every image is grayscale, else 3. Without a ``val`` folder, ``val_fraction`` of the
    images are held out (seeded), or ``n_val`` images when given; ``n_train`` keeps that many
    training images (seeded). A ``test`` folder beside ``train`` is the test split. An image file
    that cannot be read and a class folder without images are errors naming the path; images of
    mixed sizes or modes are converted (to ``image_size`` or 224 px, to RGB unless all are grey),
    and ``info["converted"]`` records it.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetMissing(
            f"image folder {str(root)!r} does not exist; pass a directory with one sub-folder of "
            "images per class (optionally split into train/ and val/)."
        )
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}.")
    splits = {"train": root / "train", "val": root / "val", "test": root / "test"}
    has_splits = splits["train"].is_dir() and splits["val"].is_dir()
    class_root = splits["train"] if has_splits else root
    classes = sorted(p.name for p in class_root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ConfigError(
            f"image folder {str(class_root)!r} has {len(classes)} class sub-folders; a "
            "classification task needs at least 2 (one folder of images per class)."
        )

    def files_of(folder: Path) -> list[tuple[Path, int]]:
        found = [
            (f, label)
            for label, cls in enumerate(classes)
            for f in sorted((folder / cls).glob("*"))
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not found:
            raise ConfigError(
                f"no images found under {str(folder)!r} (looked for {sorted(IMAGE_SUFFIXES)})."
            )
        empty = [cls for label, cls in enumerate(classes) if all(lb != label for _, lb in found)]
        if empty and folder == class_root:
            raise ConfigError(
                f"class folder(s) {', '.join(str(folder / c) for c in empty)} hold no images "
                f"(looked for {sorted(IMAGE_SUFFIXES)}); add images or remove the folder(s)."
            )
        return found

    parts = {k: files_of(v) for k, v in splits.items() if has_splits and v.is_dir()}
    if not has_splits:
        parts = {"all": files_of(root)}
    every = [f for files in parts.values() for f, _ in files]
    sizes, modes = set(), set()
    for f in every:
        with _opened(f) as img:
            sizes.add(img.size)
            modes.add(img.mode)
    if channels is None:
        channels = 1 if modes <= GREY_MODES else 3
    if image_size is None:
        size = next(iter(sizes)) if len(sizes) == 1 else (224, 224)  # PIL size is (w, h)
    else:
        size = (image_size, image_size)
    mode = {1: "L", 3: "RGB"}[channels]

    def read(files: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.empty((len(files), size[1], size[0], channels), dtype=np.uint8)
        for k, (f, _) in enumerate(files):
            with _opened(f) as img:
                try:  # (decodes the pixels: a truncated file fails here); 16-bit grey scaled
                    img = validation.to_8bit(img, mode, f)
                except ConfigError:
                    raise
                except (OSError, ValueError) as err:
                    raise ConfigError(
                        f"image file {f} cannot be read ({err}); repair or remove it."
                    ) from None
                if img.size != size:
                    img = img.resize(size, Image.BILINEAR)
                images[k] = np.asarray(img).reshape(size[1], size[0], channels)
        labels = torch.tensor([label for _, label in files], dtype=torch.int64)
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels

    info: dict[str, Any] = {"source": str(root.resolve()), "stored_size": [size[1], size[0]]}
    x_test = y_test = None
    if has_splits:
        x_train, y_train = read(parts["train"])
        x_val, y_val = read(parts["val"])
        if "test" in parts:
            x_test, y_test = read(parts["test"])
    else:
        x, y = read(parts["all"])
        n_val = max(1, int(round(val_fraction * len(y)))) if n_val is None else n_val
        x_train, y_train, x_val, y_val, record = hold_out(
            x, y, n_val=n_val, seed=seed, n_train=n_train
        )
        info |= record
    if has_splits:
        if n_val is not None:  # the val folder's first n_val images (sorted by class, then name)
            x_val, y_val = _seeded_subset(x_val, y_val, n_val, seed, "n_val", splits["val"])
        if n_train is not None:
            x_train, y_train = _seeded_subset(
                x_train, y_train, n_train, seed, "n_train", splits["train"]
            )
    if len(sizes) > 1 or len(modes) > 1:
        info["converted"] = {
            "sizes": sorted(f"{w}x{h}" for w, h in sizes),
            "modes": sorted(modes),
            "to": f"{size[0]}x{size[1]} {mode}",
        }
    dataset = ImageDataset(
        name=str(root),
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(classes),
        classes=tuple(classes),
        info=info,
        mean=UINT8[0] * channels,
        std=UINT8[1] * channels,
    )
    dataset.validate()
    return dataset
