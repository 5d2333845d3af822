"""The selection rule (docs/benchmark-v2-protocol.md, section 2) and the split-conformal
recalibration factors (section 5), both fixed on the selection half."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ncap.bench.study.candidates import Candidate
from ncap.bench.study.halves import HalfEval
from ncap.bench.study.table import logit

__all__ = ["BINS", "DELTA", "Z", "choose", "recalibration", "select_winners", "sigma_of"]

BINS = {"early": (0.025, 0.05), "late": (0.1, 0.2)}
DELTA = 0.03
Z = {"68": 0.994, "95": 1.960}


def sigma_of(half: HalfEval, names: Sequence[str]) -> dict[str, float]:
    """σ per raw dynamics feature: the sign of its mean Kendall over targets and all budgets."""
    return {n: (1.0 if half.mean_kendall(n, half.budgets) >= 0 else -1.0) for n in names}


def choose(pool: Sequence[Candidate], score: Mapping[str, float], delta: float = DELTA) -> str:
    """The lowest-level candidate within ``delta`` of the best (ties: higher score, then name)."""
    best = max(score[c.name] for c in pool)
    near = [c for c in pool if score[c.name] >= best - delta]
    return min(near, key=lambda c: (c.level, -score[c.name], c.name)).name


def select_winners(
    half: HalfEval, cands: Sequence[Candidate], bins: Mapping[str, Sequence[float]] = BINS
) -> dict[str, dict]:
    """Per bin: S_b of every candidate, W_nc, W_non and W_all."""
    out = {}
    for b, budgets in bins.items():
        s = {c.name: half.mean_kendall(c.name, budgets) for c in cands}
        nc_pool = [c for c in cands if c.nc]
        non_pool = [c for c in cands if not c.nc]
        w_nc, w_non = choose(nc_pool, s), choose(non_pool, s)
        w_all = w_nc if s[w_nc] >= s[w_non] + DELTA else w_non
        out[b] = {"S": s, "W_nc": w_nc, "W_non": w_non, "W_all": w_all}
    return out


def recalibration(
    half: HalfEval, cands: Sequence[Candidate], final: Mapping[tuple[str, str, int], float],
    models: Sequence[str], keep: Mapping[str, np.ndarray],
) -> dict[str, dict[str, dict[str, float]]]:  # fmt: skip
    """``k[name][f][q]``: split-conformal factors from the half's own-run standardised residuals
    in link space (the truth is the scored run's own final accuracy)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for c in cands:
        if not c.predicts_accuracy:
            continue
        for f in half.budgets:
            r = standardised_residuals(half, c.name, f, final, models, keep)
            if r is None or r.size == 0:
                continue
            n = r.size
            sorted_r = np.sort(r)
            factors = {}
            for q, z in Z.items():
                j = min(math.ceil((n + 1) * int(q) / 100), n)
                factors[q] = float(sorted_r[j - 1] / z)
            out.setdefault(c.name, {})[str(f)] = factors | {"n": n}
    return out


def standardised_residuals(
    half: HalfEval, name: str, f: float, final, models, keep
) -> np.ndarray | None:
    """``|m - link(truth)| / sd`` over the half's runs with a link-space prediction."""
    rs = []
    for t in half.targets:
        sc = half.scores[(name, f, t)]
        if sc.link_mean is None or sc.link_sd is None:
            return None
        truth = np.array([final.get((t, m, half.seed), np.nan) for m in models])
        y = logit(truth) if sc.link == "logit" else truth
        ok = keep[t] & np.isfinite(sc.link_mean) & np.isfinite(sc.link_sd) & (sc.link_sd > 0)
        rs.append(np.abs(sc.link_mean[ok] - y[ok]) / sc.link_sd[ok])
    return np.concatenate(rs)
