"""Rendered glyphs: letters and digits drawn from the TrueType fonts matplotlib ships, grey, 28 px.

A notMNIST-like task. Each (font, character) is rendered once with FreeType (matplotlib's
``FT2Font``, no figure) into a 64-px master, fitted to a 48-px box; every image then takes a master
of its class from a random font and draws, per image: a stroke change (thinner, as is, bolder,
much bolder), a scale, rotation, shear and position, and the glyph's and the background's grey
levels, plus a little pixel noise. The affine warp is one batched ``grid_sample`` at 56 px,
averaged down to 28 px.

Only matplotlib's own fonts are used (the list below, in this order), so the pool is the same on
every machine with the same matplotlib fonts; the fonts found are part of the cache key and the
dataset's record.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch

from ncap.data.dataset import ImageDataset
from ncap.data.generated import generated_dataset, to_uint8
from ncap.exceptions import DatasetMissing

__all__ = ["GLYPH_FONTS", "glyph_fonts", "glyphs", "render_glyphs"]

# matplotlib's fonts with every ASCII digit and capital letter (its DejaVu Display, STIX size and
# non-Unicode, Computer Modern symbol/extension and LastResort fonts have none, or boxes)
GLYPH_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf", "cmmi10.ttf",
)  # fmt: skip

SIZE = 28
_MASTER, _BOX = 64, 48
VERSION = 1


def glyph_fonts() -> tuple[str, ...]:
    """Paths of the fonts of :data:`GLYPH_FONTS` this matplotlib ships (DatasetMissing if none)."""
    import matplotlib  # lazy: matplotlib, only for glyph fonts

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    found = tuple(
        os.path.join(folder, f) for f in GLYPH_FONTS if os.path.exists(os.path.join(folder, f))
    )
    if not found:
        raise DatasetMissing(
            f"no TrueType fonts found in {folder}; the glyph datasets need matplotlib's bundled "
            "fonts (reinstall matplotlib: pip install --force-reinstall matplotlib)."
        )
    return found


def _render(path: str, char: str) -> np.ndarray:
    """One character as a float32 ``(64, 64)`` master in [0, 1], its ink fitted to a 48-px box."""
    from matplotlib.ft2font import FT2Font, LoadFlags  # lazy: matplotlib, only for glyph fonts

    font = FT2Font(path)
    font.set_size(48, 72)
    font.set_text(char, 0, flags=LoadFlags.NO_HINTING)
    font.draw_glyphs_to_bitmap(antialiased=True)
    ink = np.asarray(font.get_image(), dtype=np.float32) / 255.0
    rows, cols = np.nonzero(ink > 0.05)
    if len(rows) == 0:
        raise DatasetMissing(f"font {os.path.basename(path)} renders {char!r} empty.")
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = _BOX / max(ink.shape)
    h, w = max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale))
    fitted = torch.nn.functional.interpolate(
        torch.from_numpy(ink)[None, None], size=(h, w), mode="bilinear", antialias=True
    )[0, 0].numpy()
    master = np.zeros((_MASTER, _MASTER), dtype=np.float32)
    top, left = (_MASTER - h) // 2, (_MASTER - w) // 2
    master[top : top + h, left : left + w] = fitted
    return master


@lru_cache(maxsize=4)
def render_glyphs(chars: str, fonts: tuple[str, ...]) -> np.ndarray:
    """Masters ``(fonts, chars, 64, 64)`` float32 of every character in every font."""
    return np.stack([np.stack([_render(f, c) for c in chars]) for f in fonts])


def _stroke(masters: torch.Tensor, stroke: torch.Tensor) -> torch.Tensor:
    """Per image: erode (-1), keep (0), dilate 3x3 (1) or 5x5 (2) the ``(N, 1, 64, 64)`` masters."""
    pool = torch.nn.functional.max_pool2d
    out = masters.clone()
    thin = stroke == -1
    out[thin] = -pool(-masters[thin], 3, stride=1, padding=1)
    for level, k in ((1, 3), (2, 5)):
        pick = stroke == level
        out[pick] = pool(masters[pick], k, stride=1, padding=k // 2)
    return out


def _draw(chars: str, fonts: tuple[str, ...]):
    def generate(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        masters = torch.from_numpy(render_glyphs(chars, fonts))
        n = len(labels)
        font = rng.integers(0, len(fonts), n)
        stroke = torch.from_numpy(rng.choice([-1, 0, 0, 1, 2], n))
        scale = rng.uniform(0.55, 0.95, n)  # glyph box as a share of the frame
        angle = np.deg2rad(rng.uniform(-25, 25, n))
        shear = rng.uniform(-0.2, 0.2, n)
        shift = rng.uniform(-1, 1, (n, 2)) * (1 - scale)[:, None] * 0.8
        fg = rng.uniform(0.7, 1.0, n).astype(np.float32)
        bg = rng.uniform(0.0, 0.25, n).astype(np.float32)
        noise = rng.normal(0.0, 1.0, (n, 1, SIZE, SIZE)).astype(np.float32) * 0.03
        out = np.empty((n, 1, SIZE, SIZE), dtype=np.uint8)
        for lo in range(0, n, 2048):
            sl = slice(lo, lo + 2048)
            m = masters[torch.from_numpy(font[sl]), torch.from_numpy(labels[sl])][:, None]
            m = _stroke(m, stroke[sl])
            # output -> input coordinates: undo the shift, rotation and shear, then the scale
            c, s, k = np.cos(angle[sl]), np.sin(angle[sl]), shear[sl]
            inv = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # R(-angle)
            shear_inv = np.zeros_like(inv)
            shear_inv[:, 0, 0] = shear_inv[:, 1, 1] = 1.0
            shear_inv[:, 0, 1] = -k
            a = (_BOX / _MASTER) / scale[sl][:, None, None] * (shear_inv @ inv)
            t = -(a @ shift[sl][:, :, None])
            theta = torch.from_numpy(np.concatenate([a, t], -1).astype(np.float32))
            grid = torch.nn.functional.affine_grid(theta, (len(m), 1, 2 * SIZE, 2 * SIZE), False)
            warped = torch.nn.functional.grid_sample(m, grid, "bilinear", "zeros", False)
            ink = torch.nn.functional.avg_pool2d(warped, 2).clamp(0, 1).numpy()
            img = bg[sl, None, None, None] + (fg - bg)[sl, None, None, None] * ink + noise[sl]
            out[sl] = to_uint8(img)
        return out

    return generate


DIGITS = "0123456789"
LETTERS_A_J = "ABCDEFGHIJ"
LETTERS_K_T = "KLMNOPQRST"


def glyphs(name: str, chars: str, *, per_class: int = 1000):
    """The loader of a glyph dataset of ``chars`` (one class per character)."""

    def load(*, n_train=None, n_val=None, seed=0, **_) -> ImageDataset:
        fonts = glyph_fonts()
        params = {
            "kind": "glyphs",
            "version": VERSION,
            "chars": chars,
            "fonts": [os.path.basename(f) for f in fonts],
            "size": SIZE,
        }
        return generated_dataset(
            name,
            _draw(chars, fonts),
            tuple(chars),
            params,
            per_class=per_class,
            n_train=n_train,
            n_val=n_val,
            seed=seed,
            default_val=2000,
        )

    return load
