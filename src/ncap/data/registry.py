"""One front door to every dataset: :func:`load_dataset` by name or image-folder path."""

from __future__ import annotations

import operator
import os
from pathlib import Path

from ncap._paths import data_root
from ncap.data.builtin import DATASETS
from ncap.data.dataset import ImageDataset, resize_images
from ncap.data.folders import load_image_folder
from ncap.data.idx import fashion_mnist_dir
from ncap.data.torchvision import TORCHVISION_DATASETS
from ncap.exceptions import ConfigError

__all__ = ["describe_datasets", "list_datasets", "load_dataset"]


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (besides image-folder paths)."""
    return sorted(set(DATASETS) | set(TORCHVISION_DATASETS))


def load_dataset(
    name: str,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    root: str | os.PathLike | None = None,
    download: bool = True,
    channels: int | None = None,
) -> ImageDataset:
    """Load a dataset by name, or an image folder by path.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets` or the path of an image folder.
    n_train, n_val : int, optional
        Training images kept and validation images held out of the training data (seeded by
        ``seed``); defaults depend on the dataset (15 000 held out for the large ones).
    image_size : int, optional
        Resize the stored images (e.g. 14 for a fast NAS benchmark; the storage size of an image
        folder). Models still get their own input size per batch.
    root : path, optional
        Data root of the torchvision datasets (default ``$NCAP_DATA_ROOT`` or ``~/.cache/ncap/data``).
    download : bool
        Download a missing torchvision dataset (needs internet).
    channels : 1 or 3, optional
        Image folders only: convert the images to grey (1) or RGB (3); default: grey when every
        image is grey.

    Raises
    ------
    ValueError
        For an unknown name that is not a directory; the message lists the valid names.
    FileNotFoundError
        For a dataset whose files are missing and cannot be downloaded; the message says what to
        download and where to put it.
    """
    for what, value in (("n_train", n_train), ("n_val", n_val)):
        if value is not None and not _positive_int(value):
            raise ConfigError(f"{what} must be a positive number of images, got {value!r}.")
    if channels is not None and not Path(name).is_dir():
        raise ConfigError(
            f"channels={channels} converts image folders only; {name!r} is a built-in dataset."
        )
    if name in DATASETS:
        dataset = DATASETS[name](
            n_train=n_train, n_val=n_val, seed=seed, root=root, download=download
        )
    elif name in TORCHVISION_DATASETS:
        dataset = TORCHVISION_DATASETS[name](
            n_train=n_train,
            n_val=n_val,
            seed=seed,
            root=data_root(root),
            download=download,
            image_size=image_size,
        )
    elif Path(name).is_dir():
        dataset = load_image_folder(
            name, seed=seed, image_size=image_size, channels=channels, n_train=n_train, n_val=n_val
        )
        image_size = None  # (already stored at that size)
    else:
        raise ConfigError(
            f"unknown dataset {name!r}: not a known name and not a directory. Datasets: "
            f"{', '.join(list_datasets())}; or pass the path of an image folder "
            "(one sub-folder per class)."
        )
    dataset.validate()
    if n_train is not None and len(dataset.y_train) < n_train:
        raise ConfigError(
            f"n_train={n_train} but {name} has only {len(dataset.y_train)} training images "
            f"after holding out {len(dataset.y_val)} for validation; choose n_train <= "
            f"{len(dataset.y_train)} (or a smaller n_val)."
        )
    return resize_images(dataset, image_size) if image_size else dataset


def _positive_int(value) -> bool:
    try:
        return not isinstance(value, bool) and operator.index(value) >= 1
    except TypeError:
        return False


def describe_datasets() -> list[tuple[str, str]]:
    """``(name, note)`` per dataset name: whether it is installed, or where it is looked for."""
    rows = []
    for name in list_datasets():
        if name.startswith("fashion"):
            installed = fashion_mnist_dir() is not None
            note = "" if installed else " (not installed; downloaded when online)"
        elif name in DATASETS:
            note = ""
        else:
            note = f"  torchvision format under {data_root()} (--data-root); downloaded when online"
        rows.append((name, note))
    return rows
