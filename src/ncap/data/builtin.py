"""The built-in offline tasks: Fashion-MNIST, its class subsets, and scikit-learn's digits.

- ``fashion-mnist``: the 10 Fashion-MNIST classes, from the Debian package ``dataset-fashion-mnist``
  (or ``$NCAP_FASHION_MNIST_DIR``);
- ``fashion-mnist-0-4`` / ``fashion-mnist-5-9``: classes 0-4 (the zoo's source task) and 5-9 (the
  default target), relabelled 0..4;
- ``fashion-mnist-5-9-500``: the low-data target, 500 training images of classes 5-9;
- ``fashion-mnist-footwear``: sandal, sneaker and ankle boot (classes 5, 7, 9), a fine-grained task;
- ``digits``: scikit-learn's 8x8 digits upsampled to 28x28 (always available);
- generated offline, seeded, 1000 images per class, cached as uint8 (:mod:`ncap.data.generated`):
  ``glyphs-digits``, ``glyphs-letters`` (A-J) and ``glyphs-letters-k-t`` (K-T): characters rendered
  from matplotlib's fonts, grey (:mod:`ncap.data.glyphs`); ``shapes``: eight figures, RGB
  (:mod:`ncap.data.shapes`); ``textures`` and ``textures-stripes`` (its four stripe orientations):
  RGB (:mod:`ncap.data.textures`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ncap._paths import data_root
from ncap.data.dataset import (
    MEAN,
    STD,
    ImageDataset,
    hold_out,
    split_indices,
    split_record,
    standardise,
    subset_classes,
)
from ncap.data.glyphs import DIGITS, LETTERS_A_J, LETTERS_K_T, glyphs
from ncap.data.idx import fashion_mnist_dir, idx_file, read_idx
from ncap.data.shapes import shapes
from ncap.data.textures import STRIPE_CLASSES, textures
from ncap.data.torchvision import download_fashion_mnist
from ncap.exceptions import DatasetMissing

__all__ = ["DATASETS", "FASHION_CLASSES"]


FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip


def _fashion_mnist(
    classes: tuple[int, ...],
    name: str,
    *,
    n_train: int | None,
    n_val: int | None,
    seed: int,
    default_train: int,
    default_val: int,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> ImageDataset:
    directory = fashion_mnist_dir(root)
    if directory is None and download:
        directory = download_fashion_mnist(data_root(root))
    if directory is None:
        raise DatasetMissing(
            "Fashion-MNIST is not installed. On Debian/Ubuntu: `sudo apt-get install "
            "dataset-fashion-mnist` (scripts/bootstrap.sh does this); elsewhere download the four "
            "*-ubyte.gz files from github.com/zalandoresearch/fashion-mnist and set "
            "NCAP_FASHION_MNIST_DIR to their folder (or put them in "
            f"{data_root(root) / 'FashionMNIST' / 'raw'}). The 'digits' dataset needs no download."
        )
    x = read_idx(idx_file(directory, "train-images-idx3-ubyte"))
    y = read_idx(idx_file(directory, "train-labels-idx1-ubyte")).astype(np.int64)
    x_test = read_idx(idx_file(directory, "t10k-images-idx3-ubyte"))
    y_test = read_idx(idx_file(directory, "t10k-labels-idx1-ubyte")).astype(np.int64)
    x, y = subset_classes(x, y, classes)
    x_test, y_test = subset_classes(x_test, y_test, classes)
    n_val = default_val if n_val is None else n_val
    n_train = default_train if n_train is None else n_train
    train_idx, val_idx = split_indices(len(y), n_val, seed)
    train_idx = train_idx[:n_train]
    return ImageDataset(
        name=name,
        x_train=standardise(x[train_idx], 255.0),
        y_train=torch.from_numpy(y[train_idx]),
        x_val=standardise(x[val_idx], 255.0),
        y_val=torch.from_numpy(y[val_idx]),
        x_test=standardise(x_test, 255.0),
        y_test=torch.from_numpy(y_test),
        num_classes=len(classes),
        classes=tuple(FASHION_CLASSES[c] for c in classes),
        info={"source": str(directory), "original_classes": list(classes)}
        | split_record(val_idx, seed),
    )


def _digits(
    *, n_train: int | None, n_val: int | None, seed: int, size: int = 28, **_: Any
) -> ImageDataset:
    from sklearn.datasets import load_digits  # lazy: scikit-learn, only the digits dataset needs it

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = torch.nn.functional.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False
    )
    x = ((images - MEAN) / STD).contiguous()
    y = torch.from_numpy(bunch.target.astype(np.int64))
    n_val = 450 if n_val is None else n_val
    x_train, y_train, x_val, y_val, record = hold_out(x, y, n_val=n_val, seed=seed, n_train=n_train)
    return ImageDataset(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        num_classes=10,
        classes=tuple(str(d) for d in range(10)),
        info={"source": "sklearn.datasets.load_digits (8x8, upsampled)"} | record,
    )


def _fm(classes, name, default_train, default_val):
    def load(*, n_train=None, n_val=None, seed=0, root=None, download=True):
        return _fashion_mnist(
            classes,
            name,
            n_train=n_train,
            n_val=n_val,
            seed=seed,
            default_train=default_train,
            default_val=default_val,
            root=root,
            download=download,
        )

    return load


DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "fashion-mnist": _fm(tuple(range(10)), "fashion-mnist", 45_000, 15_000),
    "fashion-mnist-0-4": _fm((0, 1, 2, 3, 4), "fashion-mnist-0-4", 22_500, 7_500),
    "fashion-mnist-5-9": _fm((5, 6, 7, 8, 9), "fashion-mnist-5-9", 22_500, 7_500),
    "fashion-mnist-5-9-500": _fm((5, 6, 7, 8, 9), "fashion-mnist-5-9-500", 500, 2_000),
    "fashion-mnist-footwear": _fm((5, 7, 9), "fashion-mnist-footwear", 13_500, 4_500),
    "digits": _digits,
    "glyphs-digits": glyphs("glyphs-digits", DIGITS),
    "glyphs-letters": glyphs("glyphs-letters", LETTERS_A_J),
    "glyphs-letters-k-t": glyphs("glyphs-letters-k-t", LETTERS_K_T),
    "shapes": shapes("shapes"),
    "textures": textures("textures"),
    "textures-stripes": textures("textures-stripes", STRIPE_CLASSES),
}
