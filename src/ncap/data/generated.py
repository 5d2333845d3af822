"""Procedurally generated datasets: a seeded, class-balanced pool, cached as uint8, split like the others.

A generator is a function ``generate(labels, rng) -> uint8 (N, C, H, W)`` that draws one image per
label from a NumPy ``Generator``. :func:`generated_dataset` draws a pool of ``per_class`` images of
every class (labels ``arange(N) % C``, shuffled with the pool's fixed seed), caches it under
``<cache>/datasets`` (``$NCAP_CACHE_DIR`` or ``~/.cache/ncap``) keyed by the generator's name,
version and parameters, and holds out the seeded validation split as every built-in does. The
pool's seed is fixed (0): ``seed`` picks the split, not the images, so a target is the same task
for every split seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ncap._paths import cache_dir
from ncap.data.dataset import UINT8, ImageDataset, hold_out
from ncap.storage import atomic_write_bytes

__all__ = ["POOL_SEED", "Generator", "generated_dataset", "generated_pool"]

POOL_SEED = 0
Generator = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _key(name: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"name": name, "params": params}, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def generated_pool(
    name: str,
    generate: Generator,
    num_classes: int,
    per_class: int,
    params: dict[str, Any],
    *,
    cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The pool ``(x uint8 NCHW, y int64, record)``: generated once, then read from the cache."""
    key = _key(name, params | {"num_classes": num_classes, "per_class": per_class})
    path = cache_dir() / "datasets" / f"{key}.npz"
    if cache and path.exists():
        try:
            with np.load(path) as stored:
                return stored["x"], stored["y"], {"cache": str(path), "generated_seconds": None}
        except Exception:  # a damaged cache entry: generate again
            pass
    rng = np.random.default_rng(POOL_SEED)
    y = rng.permutation(np.arange(num_classes * per_class) % num_classes).astype(np.int64)
    start = time.perf_counter()
    x = generate(y, rng)
    seconds = time.perf_counter() - start
    if cache:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, x=x, y=y)
        atomic_write_bytes(buffer.getvalue(), path)
    return x, y, {"cache": str(path) if cache else None, "generated_seconds": seconds}


def generated_dataset(
    name: str,
    generate: Generator,
    classes: tuple[str, ...],
    params: dict[str, Any],
    *,
    per_class: int,
    n_train: int | None,
    n_val: int | None,
    seed: int,
    default_val: int,
    cache: bool = True,
) -> ImageDataset:
    """An :class:`ImageDataset` of a generated pool (uint8 storage) with the seeded hold-out."""
    x, y, record = generated_pool(name, generate, len(classes), per_class, params, cache=cache)
    n_val = default_val if n_val is None else n_val
    x_train, y_train, x_val, y_val, split = hold_out(
        torch.from_numpy(np.ascontiguousarray(x)),
        torch.from_numpy(y),
        n_val=n_val,
        seed=seed,
        n_train=n_train,
    )
    channels = int(x.shape[1])
    return ImageDataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        num_classes=len(classes),
        classes=classes,
        info={"source": f"generated ({name}, pool seed {POOL_SEED})", "generator": params}
        | record
        | split,
        mean=UINT8[0] * channels,
        std=UINT8[1] * channels,
    )


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] (any float array) as uint8, rounded."""
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def supersampled_grid(size: int, factor: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] of a ``size * factor`` square grid, ``(x, y)``."""
    n = size * factor
    t = (np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0
    gx, gy = np.meshgrid(t, t)
    return gx, gy


def downsample(images: np.ndarray, factor: int = 2) -> np.ndarray:
    """Average ``factor x factor`` blocks of ``(..., H, W)`` (anti-aliasing a supersampled image)."""
    *lead, h, w = images.shape
    blocks = images.reshape(*lead, h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(-3, -1))


def random_colours(
    rng: np.random.Generator, n: int, *, min_contrast: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Background and foreground RGB colours ``(n, 3)`` in [0, 1] whose grey levels differ by at
    least ``min_contrast`` (so a grey conversion keeps the figure visible)."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    bg = rng.random((n, 3), dtype=np.float32)
    fg = rng.random((n, 3), dtype=np.float32)
    for _ in range(50):
        bad = np.abs((fg - bg) @ weights) < min_contrast
        if not bad.any():
            break
        fg[bad] = rng.random((int(bad.sum()), 3), dtype=np.float32)
    # the rare pair still too close after 50 draws: black on white or white on black
    bad = np.abs((fg - bg) @ weights) < min_contrast
    fg[bad] = np.where(((bg[bad] @ weights) > 0.5)[:, None], 0.0, 1.0)
    return bg, fg
