"""Where ncap keeps its files: the cache (pretrained zoo, weights) and the torchvision data root."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_root"]


def cache_dir() -> Path:
    """ncap's cache folder: ``$NCAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/ncap``, else ``~/.cache/ncap``."""
    if os.environ.get("NCAP_CACHE_DIR"):
        return Path(os.environ["NCAP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ncap"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where torchvision-format datasets live: ``root``, ``$NCAP_DATA_ROOT``, or ``<cache>/data``."""
    if root is not None:
        return Path(root)
    if os.environ.get("NCAP_DATA_ROOT"):
        return Path(os.environ["NCAP_DATA_ROOT"])
    return cache_dir() / "data"
