"""The beta_eff variants (no torch: the command line reads them before anything heavy loads).

>>> check_variants(["abs-mean", "signed"])
('signed', 'abs-mean')
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["VARIANTS", "check_variants"]

VARIANTS = ("signed", "mean-abs", "abs-mean")


def check_variants(variants: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise a variant name or a collection of names, refusing unknown ones."""
    names = (variants,) if isinstance(variants, str) else tuple(variants)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise ValueError(
            f"unknown beta_eff variant(s) {unknown or names!r}; choose from {VARIANTS} "
            "(signed: P itself; mean-abs: eta*mean|h d e|; abs-mean: |P|)."
        )
    return tuple(v for v in VARIANTS if v in names)
