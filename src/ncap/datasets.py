"""Datasets as in-memory tensors: the built-in offline tasks and image folders.

Every dataset comes with a training split and a validation split held out from the training data by a
seeded permutation (the paper holds out part of the training images for validation); a test split is
kept separately when the source has one. Images are float32 ``(N, C, H, W)`` tensors, standardised.

Built-in names (all offline):

- ``fashion-mnist``: the 10 Fashion-MNIST classes, from the Debian package ``dataset-fashion-mnist``
  (or ``$NCAP_FASHION_MNIST_DIR``);
- ``fashion-mnist-0-4`` / ``fashion-mnist-5-9``: classes 0-4 (the zoo's source task) and 5-9 (the
  default target), relabelled 0..4;
- ``fashion-mnist-5-9-500``: the low-data target, 500 training images of classes 5-9;
- ``digits``: scikit-learn's 8x8 digits upsampled to 28x28 (always available).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "ImageDataset",
    "fashion_mnist_dir",
    "list_datasets",
    "load_dataset",
    "load_image_folder",
    "read_idx",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics (in [0, 1])


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

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (sizes, shape, classes, provenance)."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": None if self.y_test is None else len(self.y_test),
        } | self.info

    def validate(self) -> None:
        """Raise ValueError for empty splits or labels outside [0, num_classes)."""
        for split, y in (("train", self.y_train), ("validation", self.y_val)):
            if len(y) == 0:
                raise ValueError(
                    f"dataset {self.name!r} has an empty {split} split; give it samples (or a "
                    "smaller validation fraction)."
                )
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise ValueError(
                    f"dataset {self.name!r}: {split} labels span [{int(y.min())}, {int(y.max())}] "
                    f"but num_classes is {self.num_classes}; labels must lie in "
                    f"[0, {self.num_classes})."
                )


# -- readers -----------------------------------------------------------------------------------
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) such as the MNIST/Fashion-MNIST distribution files."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_dir() -> Path | None:
    """Directory of the Fashion-MNIST IDX files, or None when they are not installed."""
    env = os.environ.get("NCAP_FASHION_MNIST_DIR")
    for candidate in ([Path(env)] if env else []) + [DEBIAN_FASHION_MNIST]:
        if (candidate / "train-images-idx3-ubyte.gz").exists() or (
            candidate / "train-images-idx3-ubyte"
        ).exists():
            return candidate
    return None


def _idx_file(directory: Path, stem: str) -> Path:
    gz = directory / f"{stem}.gz"
    return gz if gz.exists() else directory / stem


def _standardise(images_uint8_or_unit: np.ndarray, scale: float) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images_uint8_or_unit, dtype=np.float32)) / scale
    return ((x - MEAN) / STD).unsqueeze(1)


def _split(n: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val:], order[:n_val]


def _subset_classes(x, y, classes):
    keep = np.isin(y, classes)
    remap = {c: k for k, c in enumerate(classes)}
    return x[keep], np.array([remap[v] for v in y[keep]], dtype=np.int64)


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
) -> ImageDataset:
    directory = fashion_mnist_dir()
    if directory is None:
        raise FileNotFoundError(
            "Fashion-MNIST is not installed. On Debian/Ubuntu: `sudo apt-get install "
            "dataset-fashion-mnist` (scripts/bootstrap.sh does this); elsewhere download the four "
            "*-ubyte.gz files from github.com/zalandoresearch/fashion-mnist and set "
            "NCAP_FASHION_MNIST_DIR to their folder. The 'digits' dataset needs no download."
        )
    x = read_idx(_idx_file(directory, "train-images-idx3-ubyte"))
    y = read_idx(_idx_file(directory, "train-labels-idx1-ubyte")).astype(np.int64)
    x_test = read_idx(_idx_file(directory, "t10k-images-idx3-ubyte"))
    y_test = read_idx(_idx_file(directory, "t10k-labels-idx1-ubyte")).astype(np.int64)
    x, y = _subset_classes(x, y, classes)
    x_test, y_test = _subset_classes(x_test, y_test, classes)
    n_val = default_val if n_val is None else n_val
    n_train = default_train if n_train is None else n_train
    train_idx, val_idx = _split(len(y), n_val, seed)
    train_idx = train_idx[:n_train]
    return ImageDataset(
        name=name,
        x_train=_standardise(x[train_idx], 255.0),
        y_train=torch.from_numpy(y[train_idx]),
        x_val=_standardise(x[val_idx], 255.0),
        y_val=torch.from_numpy(y[val_idx]),
        x_test=_standardise(x_test, 255.0),
        y_test=torch.from_numpy(y_test),
        num_classes=len(classes),
        classes=tuple(FASHION_CLASSES[c] for c in classes),
        info={"source": str(directory), "split_seed": seed, "original_classes": list(classes)},
    )


def _digits(*, n_train: int | None, n_val: int | None, seed: int, size: int = 28) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = torch.nn.functional.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False
    )
    x = ((images - MEAN) / STD).contiguous()
    y = torch.from_numpy(bunch.target.astype(np.int64))
    n_val = 450 if n_val is None else n_val
    train_idx, val_idx = _split(len(y), n_val, seed)
    if n_train is not None:
        train_idx = train_idx[:n_train]
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return ImageDataset(
        name="digits",
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_val=x[val_idx],
        y_val=y[val_idx],
        num_classes=10,
        classes=tuple(str(d) for d in range(10)),
        info={"source": "sklearn.datasets.load_digits (8x8, upsampled)", "split_seed": seed},
    )


def _fm(classes, name, default_train, default_val):
    def load(*, n_train=None, n_val=None, seed=0):
        return _fashion_mnist(
            classes,
            name,
            n_train=n_train,
            n_val=n_val,
            seed=seed,
            default_train=default_train,
            default_val=default_val,
        )

    return load


DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "fashion-mnist": _fm(tuple(range(10)), "fashion-mnist", 45_000, 15_000),
    "fashion-mnist-0-4": _fm((0, 1, 2, 3, 4), "fashion-mnist-0-4", 22_500, 7_500),
    "fashion-mnist-5-9": _fm((5, 6, 7, 8, 9), "fashion-mnist-5-9", 22_500, 7_500),
    "fashion-mnist-5-9-500": _fm((5, 6, 7, 8, 9), "fashion-mnist-5-9-500", 500, 2_000),
    "digits": _digits,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (besides image-folder paths)."""
    return sorted(DATASETS)


def load_image_folder(
    path: str | os.PathLike,
    *,
    image_size: int = 28,
    channels: int = 1,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ImageDataset:
    """Load ``path/<class>/<image>`` (or ``path/train/<class>/...`` + ``path/val/<class>/...``).

    Images are resized to ``image_size`` square, converted to ``channels`` (1 or 3) and
    standardised. Without a ``val`` folder, ``val_fraction`` of the images are held out (seeded).
    """
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {str(root)!r} does not exist; pass a directory with one sub-folder of "
            "images per class (optionally split into train/ and val/)."
        )
    splits = {"train": root / "train", "val": root / "val"}
    has_splits = splits["train"].is_dir() and splits["val"].is_dir()
    class_root = splits["train"] if has_splits else root
    classes = sorted(p.name for p in class_root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ValueError(
            f"image folder {str(class_root)!r} has {len(classes)} class sub-folders; a "
            "classification task needs at least 2 (one folder of images per class)."
        )
    mode = {1: "L", 3: "RGB"}[channels]

    def read(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for label, cls in enumerate(classes):
            files = sorted(
                f for f in (folder / cls).glob("*") if f.suffix.lower() in IMAGE_SUFFIXES
            )
            for f in files:
                with Image.open(f) as img:
                    img = img.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                    images.append(
                        np.asarray(img, dtype=np.float32).reshape(image_size, image_size, -1)
                    )
                labels.append(label)
        if not images:
            raise ValueError(
                f"no images found under {str(folder)!r} (looked for {IMAGE_SUFFIXES})."
            )
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) / 255.0
        return ((x - MEAN) / STD).contiguous(), torch.tensor(labels, dtype=torch.int64)

    if has_splits:
        x_train, y_train = read(splits["train"])
        x_val, y_val = read(splits["val"])
    else:
        x, y = read(root)
        n_val = max(1, int(round(val_fraction * len(y))))
        train_idx, val_idx = (torch.from_numpy(i) for i in _split(len(y), n_val, seed))
        x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    dataset = ImageDataset(
        name=str(root),
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        num_classes=len(classes),
        classes=tuple(classes),
        info={"source": str(root.resolve()), "split_seed": seed, "image_size": image_size},
    )
    dataset.validate()
    return dataset


def resize_images(dataset: ImageDataset, size: int) -> ImageDataset:
    """The same dataset with every split resized to ``size x size`` (bilinear, antialiased)."""
    import dataclasses

    def resize(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None or tuple(x.shape[-2:]) == (size, size):
            return x
        return torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )

    return dataclasses.replace(
        dataset,
        x_train=resize(dataset.x_train),
        x_val=resize(dataset.x_val),
        x_test=resize(dataset.x_test),
        info=dataset.info | {"image_size": size},
    )


def load_dataset(
    name: str,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
) -> ImageDataset:
    """Load a built-in dataset by name, or an image folder by path.

    ``image_size`` resizes the images of a built-in dataset (e.g. 14 for a fast NAS benchmark).

    Raises
    ------
    ValueError
        For an unknown name that is not a directory; the message lists the valid names.
    """
    if name in DATASETS:
        dataset = DATASETS[name](n_train=n_train, n_val=n_val, seed=seed)
        dataset.validate()
        return resize_images(dataset, image_size) if image_size else dataset
    if Path(name).is_dir():
        return load_image_folder(name, seed=seed, image_size=image_size or 28)
    raise ValueError(
        f"unknown dataset {name!r}: not a built-in name and not a directory. Built-in datasets: "
        f"{', '.join(list_datasets())}; or pass the path of an image folder "
        "(one sub-folder per class)."
    )
