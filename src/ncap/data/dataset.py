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
- ``digits``: scikit-learn's 8x8 digits upsampled to 28x28 (always available);
- ``cifar10``, ``cifar100``, ``svhn``, ``mnist``, ``cub200``: torchvision's datasets (and CUB-200-2011)
  under ``data_root`` (``$NCAP_DATA_ROOT`` or ``~/.cache/ncap/data``), downloaded when online; see
  :mod:`ncap.torchvision_datasets`.

Images may be stored in any affine encoding of pixel values in [0, 1] (``ImageDataset.mean``/``std``,
``stored = (pixel - mean) / std``): standardised float32 for the built-in tasks, uint8 for real
datasets (a quarter of the memory). :mod:`ncap.inputs` maps them to each model's convention per batch.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "ImageDataset",
    "dataset_from_arrays",
    "default_n_val",
    "fashion_mnist_dir",
    "hold_out",
    "list_datasets",
    "load_dataset",
    "load_image_folder",
    "read_idx",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
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
                raise ValueError(
                    f"dataset {self.name!r} has an empty {split} split; give it samples (or a "
                    "smaller validation fraction)."
                )
            if y.dtype != torch.int64:
                raise ValueError(
                    f"dataset {self.name!r}: {split} labels are {y.dtype}; give integer class "
                    "indices (int64)."
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


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where torchvision-format datasets live: ``root``, ``$NCAP_DATA_ROOT``, or ``<cache>/data``."""
    if root is not None:
        return Path(root)
    if os.environ.get("NCAP_DATA_ROOT"):
        return Path(os.environ["NCAP_DATA_ROOT"])
    from ncap.zoo import cache_dir

    return cache_dir() / "data"


def _has_idx(directory: Path, stem: str = "train-images-idx3-ubyte") -> bool:
    return (directory / f"{stem}.gz").exists() or (directory / stem).exists()


def fashion_mnist_dir(root: str | os.PathLike | None = None) -> Path | None:
    """Directory of the Fashion-MNIST IDX files, or None when they are not installed.

    Looks in ``$NCAP_FASHION_MNIST_DIR``, the Debian package's folder, then torchvision's layout
    under the data root (``<root>/FashionMNIST/raw``).
    """
    env = os.environ.get("NCAP_FASHION_MNIST_DIR")
    candidates = [Path(env)] if env else []
    candidates += [DEBIAN_FASHION_MNIST, data_root(root) / "FashionMNIST" / "raw"]
    return next((c for c in candidates if _has_idx(c)), None)


def _idx_file(directory: Path, stem: str) -> Path:
    gz = directory / f"{stem}.gz"
    return gz if gz.exists() else directory / stem


def _standardise(images_uint8_or_unit: np.ndarray, scale: float) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images_uint8_or_unit, dtype=np.float32)) / scale
    return ((x - MEAN) / STD).unsqueeze(1)


def _split(n: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < n_val < n:
        raise ValueError(
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
    train_idx, val_idx = _split(len(y), n_val, seed)
    if n_train is not None:
        train_idx = train_idx[:n_train]
    tr, va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return x[tr], y[tr], x[va], y[va], split_record(val_idx, seed)


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
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> ImageDataset:
    directory = fashion_mnist_dir(root)
    if directory is None and download:
        from ncap.torchvision_datasets import download_fashion_mnist

        directory = download_fashion_mnist(data_root(root))
    if directory is None:
        raise FileNotFoundError(
            "Fashion-MNIST is not installed. On Debian/Ubuntu: `sudo apt-get install "
            "dataset-fashion-mnist` (scripts/bootstrap.sh does this); elsewhere download the four "
            "*-ubyte.gz files from github.com/zalandoresearch/fashion-mnist and set "
            "NCAP_FASHION_MNIST_DIR to their folder (or put them in "
            f"{data_root(root) / 'FashionMNIST' / 'raw'}). The 'digits' dataset needs no download."
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
        info={"source": str(directory), "original_classes": list(classes)}
        | split_record(val_idx, seed),
    )


def _digits(
    *, n_train: int | None, n_val: int | None, seed: int, size: int = 28, **_: Any
) -> ImageDataset:
    from sklearn.datasets import load_digits

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
    "digits": _digits,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (besides image-folder paths)."""
    from ncap.torchvision_datasets import TORCHVISION_DATASETS

    return sorted(set(DATASETS) | set(TORCHVISION_DATASETS))


def _as_nchw_uint8_or_unit(x: Any, what: str) -> tuple[torch.Tensor, tuple, tuple]:
    """Images as an ``(N, C, H, W)`` tensor and their encoding (uint8 or floats in [0, 1])."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"{what} must be images shaped (N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 "
            f"or 3, got shape {tuple(x.shape)}."
        )
    if x.dtype == torch.uint8:
        return x.contiguous(), (0.0,) * x.shape[1], (1.0 / 255.0,) * x.shape[1]
    if not torch.is_floating_point(x):
        raise ValueError(f"{what} must be uint8 (0-255) or float (0-1) pixels, got {x.dtype}.")
    x = x.float().contiguous()
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError(
            f"{what} holds float pixels outside [0, 1] (or NaN/inf); pass uint8 images, or floats "
            "scaled to [0, 1] (ncap applies each model's own normalisation)."
        )
    return x, (0.0,) * x.shape[1], (1.0,) * x.shape[1]


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
    reported separately.
    """
    x, mean, std = _as_nchw_uint8_or_unit(x_train, "x_train")
    y = torch.as_tensor(np.asarray(y_train)).long()
    if len(x) != len(y):
        raise ValueError(f"x_train has {len(x)} images but y_train {len(y)} labels.")
    info: dict[str, Any] = {"source": "arrays"}
    if x_val is None:
        n_val = default_n_val(len(y)) if n_val is None else n_val
        x, y, xv, yv, record = hold_out(x, y, n_val=n_val, seed=seed)
        info |= record
    else:
        xv, mean_v, std_v = _as_nchw_uint8_or_unit(x_val, "x_val")
        yv = torch.as_tensor(np.asarray(y_val)).long()
        if (mean_v, std_v) != (mean, std):
            raise ValueError("x_val must have the same dtype and channels as x_train.")
    xt = yt = None
    if x_test is not None:
        xt, mean_t, std_t = _as_nchw_uint8_or_unit(x_test, "x_test")
        yt = torch.as_tensor(np.asarray(y_test)).long()
        if (mean_t, std_t) != (mean, std):
            raise ValueError("x_test must have the same dtype and channels as x_train.")
    num_classes = int(max(int(y.max()), int(yv.max())) + 1) if classes is None else len(classes)
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


def load_image_folder(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ImageDataset:
    """Load ``path/<class>/<image>`` (or ``path/train/<class>/...`` + ``path/val/<class>/...``).

    Images are stored as uint8. ``image_size`` resizes them to a square; by default they keep
    their size when all share one, else they are resized to 224. ``channels`` (1 or 3) defaults to
    1 when every image is grayscale, else 3. Without a ``val`` folder, ``val_fraction`` of the
    images are held out (seeded); a ``test`` folder beside ``train`` is the test split.
    """
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {str(root)!r} does not exist; pass a directory with one sub-folder of "
            "images per class (optionally split into train/ and val/)."
        )
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    splits = {"train": root / "train", "val": root / "val", "test": root / "test"}
    has_splits = splits["train"].is_dir() and splits["val"].is_dir()
    class_root = splits["train"] if has_splits else root
    classes = sorted(p.name for p in class_root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ValueError(
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
            raise ValueError(
                f"no images found under {str(folder)!r} (looked for {sorted(IMAGE_SUFFIXES)})."
            )
        return found

    parts = {k: files_of(v) for k, v in splits.items() if has_splits and v.is_dir()}
    if not has_splits:
        parts = {"all": files_of(root)}
    every = [f for files in parts.values() for f, _ in files]
    sizes, modes = set(), set()
    for f in every:
        with Image.open(f) as img:
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
            with Image.open(f) as img:
                img = img.convert(mode)
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
        n_val = max(1, int(round(val_fraction * len(y))))
        x_train, y_train, x_val, y_val, record = hold_out(x, y, n_val=n_val, seed=seed)
        info |= record
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


def resize_images(dataset: ImageDataset, size: int) -> ImageDataset:
    """The same dataset with every split resized to ``size x size`` (bilinear, antialiased)."""
    import dataclasses

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


def load_dataset(
    name: str,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    root: str | os.PathLike | None = None,
    download: bool = True,
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

    Raises
    ------
    ValueError
        For an unknown name that is not a directory; the message lists the valid names.
    FileNotFoundError
        For a dataset whose files are missing and cannot be downloaded; the message says what to
        download and where to put it.
    """
    from ncap.torchvision_datasets import TORCHVISION_DATASETS

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
        return load_image_folder(name, seed=seed, image_size=image_size)
    else:
        raise ValueError(
            f"unknown dataset {name!r}: not a known name and not a directory. Datasets: "
            f"{', '.join(list_datasets())}; or pass the path of an image folder "
            "(one sub-folder per class)."
        )
    dataset.validate()
    return resize_images(dataset, image_size) if image_size else dataset
