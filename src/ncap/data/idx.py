"""IDX files (the MNIST/Fashion-MNIST distribution format) and where Fashion-MNIST is installed."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ncap._paths import data_root
from ncap.exceptions import ConfigError

__all__ = ["DEBIAN_FASHION_MNIST", "fashion_mnist_dir", "has_idx", "idx_file", "read_idx"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) such as the MNIST/Fashion-MNIST distribution files."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ConfigError(f"{path} is not an IDX file (bad magic number).")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ConfigError(f"{path}: unknown IDX element type 0x{data[2]:02x}.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim).reshape(shape)


def has_idx(directory: Path, stem: str = "train-images-idx3-ubyte") -> bool:
    return (directory / f"{stem}.gz").exists() or (directory / stem).exists()


def fashion_mnist_dir(root: str | os.PathLike | None = None) -> Path | None:
    """Directory of the Fashion-MNIST IDX files, or None when they are not installed.

    Looks in ``$NCAP_FASHION_MNIST_DIR``, the Debian package's folder, then torchvision's layout
    under the data root (``<root>/FashionMNIST/raw``).
    """
    env = os.environ.get("NCAP_FASHION_MNIST_DIR")
    candidates = [Path(env)] if env else []
    candidates += [DEBIAN_FASHION_MNIST, data_root(root) / "FashionMNIST" / "raw"]
    return next((c for c in candidates if has_idx(c)), None)


def idx_file(directory: Path, stem: str) -> Path:
    gz = directory / f"{stem}.gz"
    return gz if gz.exists() else directory / stem
