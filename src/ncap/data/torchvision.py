"""torchvision's classification datasets (and CUB-200-2011) as uint8 :class:`ImageDataset` objects.

Each loader reads the files in torchvision's layout under a data root, downloading them when they are
missing and ``download`` is true (it needs internet). Offline, a missing dataset raises
FileNotFoundError saying which archive to fetch and where to unpack it. The training split is divided
into training and a seeded held-out validation split (15 000 images for the large datasets, as in
the paper, see :func:`ncap.data.dataset.default_n_val`); the official test split is kept apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ncap.data.dataset import UINT8, ImageDataset, default_n_val, hold_out
from ncap.data.idx import idx_file, read_idx
from ncap.exceptions import DatasetMissing, MissingDependency

__all__ = ["TORCHVISION_DATASETS", "download_fashion_mnist", "load_cub200"]

CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"


def _torchvision():
    try:
        import torchvision  # optional: torchvision (ncap[zoo])
    except ImportError as err:  # pragma: no cover - the dev install has it
        raise MissingDependency(
            "torchvision datasets need torchvision: pip install 'ncap[zoo]'."
        ) from err
    return torchvision


def _fetch(name: str, make: Callable[[bool], Any], root: Path, download: bool, where: str):
    """``make(download=False)``, else with download; FileNotFoundError with instructions."""
    try:
        return make(False)
    except RuntimeError as missing:
        if not download:
            raise DatasetMissing(
                f"{name} is not in {root} and download=False; {where}, or allow the download "
                "(needs internet)."
            ) from missing
    try:
        return make(True)
    except (OSError, RuntimeError, ValueError) as err:
        raise DatasetMissing(
            f"{name} is not in {root} and could not be downloaded ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). {where[0].upper() + where[1:]}, then "
            "run again (or pass --data-root to where it already is)."
        ) from err


def _finish(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: tuple[str, ...],
    *,
    n_train: int | None,
    n_val: int | None,
    seed: int,
    source: str,
) -> ImageDataset:
    """uint8 NCHW tensors, the seeded validation split and the record of it."""
    x_all = torch.from_numpy(np.require(x, requirements=("C", "W")))
    y_all = torch.from_numpy(np.asarray(y, dtype=np.int64))
    n_val = default_n_val(len(y_all)) if n_val is None else n_val
    x_train, y_train, x_val, y_val, record = hold_out(
        x_all, y_all, n_val=n_val, seed=seed, n_train=n_train
    )
    channels = x_all.shape[1]
    return ImageDataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=torch.from_numpy(np.require(x_test, requirements=("C", "W"))),
        y_test=torch.from_numpy(np.asarray(y_test, dtype=np.int64)),
        num_classes=len(classes),
        classes=classes,
        info={"source": source} | record,
        mean=UINT8[0] * channels,
        std=UINT8[1] * channels,
    )


def _cifar(kind: str) -> Callable[..., ImageDataset]:
    def load(*, n_train=None, n_val=None, seed=0, root: Path, download=True, **_):
        tv = _torchvision()
        cls = tv.datasets.CIFAR10 if kind == "cifar10" else tv.datasets.CIFAR100
        where = f"download {cls.url} and unpack it into {root} (giving {root / cls.base_folder})"

        def make(split_train: bool):
            return lambda dl: cls(str(root), train=split_train, download=dl)

        train = _fetch(kind, make(True), root, download, where)
        test = _fetch(kind, make(False), root, download, where)
        return _finish(
            kind,
            train.data.transpose(0, 3, 1, 2),
            train.targets,
            test.data.transpose(0, 3, 1, 2),
            test.targets,
            tuple(train.classes),
            n_train=n_train,
            n_val=n_val,
            seed=seed,
            source=str(root / cls.base_folder),
        )

    return load


def _svhn(*, n_train=None, n_val=None, seed=0, root: Path, download=True, **_):
    tv = _torchvision()
    cls = tv.datasets.SVHN
    where = f"download {cls.split_list['train'][0]} and {cls.split_list['test'][0]} into {root / 'svhn'}"
    train = _fetch(
        "svhn", lambda dl: cls(str(root / "svhn"), "train", download=dl), root, download, where
    )
    test = _fetch(
        "svhn", lambda dl: cls(str(root / "svhn"), "test", download=dl), root, download, where
    )
    return _finish(
        "svhn",
        train.data,
        train.labels,
        test.data,
        test.labels,
        tuple(str(d) for d in range(10)),
        n_train=n_train,
        n_val=n_val,
        seed=seed,
        source=str(root / "svhn"),
    )


def _mnist(*, n_train=None, n_val=None, seed=0, root: Path, download=True, **_):
    raw = root / "MNIST" / "raw"
    if (
        not (raw / "train-images-idx3-ubyte").exists()
        and not (raw / "train-images-idx3-ubyte.gz").exists()
    ):
        tv = _torchvision()
        mirror = tv.datasets.MNIST.mirrors[0]
        where = (
            f"download the four files {', '.join(r for r, _ in tv.datasets.MNIST.resources)} from "
            f"{mirror} into {raw}"
        )
        _fetch("mnist", lambda dl: tv.datasets.MNIST(str(root), download=dl), root, download, where)
    images = {s: read_idx(idx_file(raw, f"{s}-images-idx3-ubyte")) for s in ("train", "t10k")}
    labels = {s: read_idx(idx_file(raw, f"{s}-labels-idx1-ubyte")) for s in ("train", "t10k")}
    return _finish(
        "mnist",
        images["train"][:, None],
        labels["train"],
        images["t10k"][:, None],
        labels["t10k"],
        tuple(str(d) for d in range(10)),
        n_train=n_train,
        n_val=n_val,
        seed=seed,
        source=str(raw),
    )


def download_fashion_mnist(root: Path) -> Path:
    """Download Fashion-MNIST in torchvision's layout; its raw folder, or FileNotFoundError."""
    tv = _torchvision()
    where = (
        "install the Debian package (`sudo apt-get install dataset-fashion-mnist`), or download "
        f"the four *-ubyte.gz files from {tv.datasets.FashionMNIST.mirrors[0]} into "
        f"{root / 'FashionMNIST' / 'raw'}"
    )
    _fetch(
        "Fashion-MNIST",
        lambda dl: tv.datasets.FashionMNIST(str(root), download=dl),
        root,
        True,
        where,
    )
    return root / "FashionMNIST" / "raw"


def load_cub200(
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    root: Path,
    download: bool = True,
    image_size: int | None = None,
) -> ImageDataset:
    """CUB-200-2011 (Caltech-UCSD Birds, 200 classes) from ``<root>/CUB_200_2011``.

    The official train/test split (``train_test_split.txt``) is used; validation is held out of the
    training images. Images of varying size are decoded once and stored as uint8 squares of
    ``image_size`` (default 224).
    """
    base = root / "CUB_200_2011"
    if not (base / "images.txt").exists():
        if download:
            tv = _torchvision()
            try:
                tv.datasets.utils.download_and_extract_archive(CUB_URL, str(root))
            except (OSError, RuntimeError, ValueError) as err:
                raise DatasetMissing(
                    f"CUB-200-2011 is not in {base} and could not be downloaded ({err}). Download "
                    f"{CUB_URL} and unpack it into {root}, then run again."
                ) from err
        else:
            raise DatasetMissing(
                f"CUB-200-2011 is not in {base}; download {CUB_URL} and unpack it into {root}."
            )

    def table(name: str) -> dict[int, str]:
        rows = (line.split(maxsplit=1) for line in (base / name).read_text().splitlines() if line)
        return {int(k): v.strip() for k, v in rows}

    paths, labels, is_train = (
        table(n) for n in ("images.txt", "image_class_labels.txt", "train_test_split.txt")
    )
    classes = table("classes.txt")
    size = image_size or 224
    ids = sorted(paths)
    images = np.empty((len(ids), size, size, 3), dtype=np.uint8)
    for k, i in enumerate(ids):
        with Image.open(base / "images" / paths[i]) as img:
            images[k] = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))
    y = np.array([int(labels[i]) - 1 for i in ids], dtype=np.int64)
    train = np.array([is_train[i] == "1" for i in ids])
    x = images.transpose(0, 3, 1, 2)
    return _finish(
        "cub200",
        x[train],
        y[train],
        x[~train],
        y[~train],
        tuple(classes[c] for c in sorted(classes)),
        n_train=n_train,
        n_val=n_val,
        seed=seed,
        source=str(base),
    )


TORCHVISION_DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
    "svhn": _svhn,
    "mnist": _mnist,
    "cub200": load_cub200,
}
