"""Procedural textures: oriented stripes, checkers, dots and two kinds of noise, RGB 28 px.

Eight classes: stripes at 0, 45, 90 and 135 degrees (each jittered by up to 8 degrees), checkers
and a lattice of dots (both at a random rotation), white noise (every pixel drawn independently)
and smooth noise (Gaussian-blurred noise, blobs of 1.5-3 px). Every image draws its period (4-10
px), phase, two colours (grey levels at least 0.3 apart), hard or soft stripe edges, and pixel
noise; pattern values in [0, 1] mix the two colours. Vectorised NumPy over the batch.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from ncap.data.dataset import ImageDataset
from ncap.data.generated import generated_dataset, random_colours, to_uint8

__all__ = ["TEXTURE_CLASSES", "textures"]

TEXTURE_CLASSES = (
    "stripes-0", "stripes-45", "stripes-90", "stripes-135",
    "checkers", "dots", "white-noise", "smooth-noise",
)  # fmt: skip
STRIPE_CLASSES = TEXTURE_CLASSES[:4]
SIZE = 28
VERSION = 1


def _patterns(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pattern values ``(n, H, W)`` in [0, 1] of every label."""
    n = len(labels)
    pix = np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2
    gx, gy = np.meshgrid(pix, pix)
    period = rng.uniform(4.0, 10.0, n).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 2)).astype(np.float32)
    base = np.array([0, 45, 90, 135, 0, 0, 0, 0], dtype=np.float32)[labels]
    rotated = rng.uniform(0, 90, n).astype(np.float32)
    jitter = rng.uniform(-8, 8, n).astype(np.float32)
    theta = np.deg2rad(np.where(labels < 4, base + jitter, rotated))[:, None, None]
    u = (gx * np.cos(theta) + gy * np.sin(theta)) * 2 * np.pi / period + phase[:, 0, None, None]
    v = (-gx * np.sin(theta) + gy * np.cos(theta)) * 2 * np.pi / period + phase[:, 1, None, None]
    hard = rng.random(n) < 0.5
    white = rng.random((n, SIZE, SIZE), dtype=np.float32)
    blur = rng.uniform(1.5, 3.0, n)
    out = np.empty((n, SIZE, SIZE), dtype=np.float32)
    stripes = labels < 4
    wave = 0.5 + 0.5 * np.sin(u)
    out[stripes] = np.where(hard[stripes, None, None], wave[stripes] > 0.5, wave[stripes])
    checkers = labels == 4
    out[checkers] = (np.sin(u[checkers]) * np.sin(v[checkers]) > 0).astype(np.float32)
    dots = labels == 5
    # distance to the nearest lattice point, in periods; a dot of radius 0.25 period
    fu = np.mod(u[dots] / (2 * np.pi), 1.0) - 0.5
    fv = np.mod(v[dots] / (2 * np.pi), 1.0) - 0.5
    out[dots] = np.clip((0.28 - np.hypot(fu, fv)) * period[dots] + 0.5, 0, 1)
    noise = labels == 6
    out[noise] = white[noise]
    for i in np.flatnonzero(labels == 7):
        smooth = gaussian_filter(white[i], blur[i], mode="wrap")
        out[i] = (smooth - smooth.min()) / max(float(np.ptp(smooth)), 1e-6)
    return out


def _draw(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(labels)
    pattern = _patterns(labels, rng)
    bg, fg = random_colours(rng, n)
    noise = rng.normal(0, 0.03, (n, 3, SIZE, SIZE)).astype(np.float32)
    img = bg[:, :, None, None] + (fg - bg)[:, :, None, None] * pattern[:, None] + noise
    return to_uint8(img)


def textures(name: str, classes: tuple[str, ...] = TEXTURE_CLASSES, *, per_class: int = 1000):
    """The loader of a texture dataset of ``classes`` (a subset of :data:`TEXTURE_CLASSES`)."""
    kinds = np.array([TEXTURE_CLASSES.index(c) for c in classes])

    def load(*, n_train=None, n_val=None, seed=0, **_) -> ImageDataset:
        params = {"kind": "textures", "version": VERSION, "size": SIZE, "classes": list(classes)}
        return generated_dataset(
            name,
            lambda labels, rng: _draw(kinds[labels], rng),
            classes,
            params,
            per_class=per_class,
            n_train=n_train,
            n_val=n_val,
            seed=seed,
            default_val=2000,
        )

    return load
