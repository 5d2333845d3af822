"""The study's cell-level scores (``fit/...``, ``ravg/...``) at the rung budgets of a simulation.

The candidates of the pre-registered study (:mod:`ncap.bench.study.candidates`) that are not scored
run by run, the fitted cross-target models (D2, e.g. ``fit/base``) and the rank averages (D1),
are computed for a cell (target ``t``, scored seed ``s``) at a budget ``f`` exactly as the study
does, by :func:`ncap.bench.study.combine.cell_scores` on a score table built by
:func:`ncap.bench.study.table.build_table` at the simulation's rung budgets (which may include
budgets the study did not use). A fitted model is trained on the other targets' runs of seed ``s``
at budget ``f`` (leave one target out), with the other seed's final accuracy as truth, and
predicts the final accuracy of the runs of ``t``.

In the bootstrap over models, :meth:`CellScorer.boot` *refits* per replicate: the table is
restricted to the drawn models (a model drawn twice is two rows, in the training set of the other
targets as well as among the candidates) and :func:`cell_scores` is called again. A rank average
is recomputed among the drawn candidates. The orientation of raw dynamics components (``sigma``)
is the one the study froze on its selection half; it is only needed by rank averages that have a
``dyn/`` component (the fitted models read raw features).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ncap.bench.study.candidates import Candidate, candidates, candidates_v3
from ncap.bench.study.combine import cell_scores
from ncap.bench.study.halves import keep_masks
from ncap.bench.study.table import ScoreTable, build_table, measurements_of, names_needed
from ncap.bench.study.v3_base import is_v3
from ncap.exceptions import ConfigError
from ncap.predict.scores import DynamicsFeature, try_parse_score

__all__ = ["CellScorer", "is_cell_method", "study_candidates"]


def is_cell_method(name: str) -> bool:
    """Whether ``name`` is one of the study's cell-level candidates (fitted or rank average)."""
    return name.startswith(("fit/", "ravg/"))


def _is_dynamics(name: str) -> bool:
    return isinstance(try_parse_score(name), DynamicsFeature)


def study_candidates(results: Mapping[str, Any]) -> dict[str, Candidate]:
    """The study's cell-level candidates for this results file's beta_eff measurements (bench-v3's
    list for a bench-v3 file)."""
    listing = candidates_v3 if is_v3(results) else candidates
    cands = listing(measurements_of(dict(results)))
    return {c.name: c for c in cands if c.kind != "run"}


@dataclass
class CellScorer:
    """Cell-level scores of ``methods`` from ``table`` (every seed, the rung budgets)."""

    table: ScoreTable
    cands: dict[str, Candidate]
    sigma: dict[str, float] = field(default_factory=dict)
    keep: dict[str, np.ndarray] = field(default_factory=dict)
    _point: dict[tuple[str, str, int, float], np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        results: Mapping[str, Any],
        methods: Sequence[str],
        budgets: Sequence[float],
        *,
        sigma: Mapping[str, float] | None = None,
        workers: int | None = None,
    ) -> CellScorer:
        known = study_candidates(results)
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ConfigError(
                f"unknown study score(s) {unknown}; the cell-level candidates of this results file "
                f"are {sorted(known)}."
            )
        cands = {m: known[m] for m in methods}
        sigma = dict(sigma or {})
        unoriented = sorted(
            {x for c in cands.values() for x in c.components if _is_dynamics(x)} - set(sigma)
        )
        if unoriented:
            raise ConfigError(
                f"the rank average(s) read raw dynamics {unoriented}, whose sign the study froze on "
                "its selection half; pass the study's selection.json (--study-selection) or its "
                "'sigma' mapping."
            )
        measurements = measurements_of(dict(results))
        table = build_table(
            dict(results),
            seeds=list(results["plan"]["seeds"]),
            budgets=sorted({float(b) for b in budgets}),
            workers=workers,
            names=names_needed(list(cands.values()), measurements),
        )
        return cls(table, cands, sigma, keep_masks(table, table.seeds))

    def _scores(self, table: ScoreTable, keep, method: str, t: str, s: int, f: float):
        return cell_scores(self.cands[method], table, f, t, s, sigma=self.sigma, keep=keep).value

    def point(self, method: str, t: str, s: int, f: float) -> np.ndarray:
        """The scores of every model (the table's order) of cell (t, s) at budget ``f``."""
        key = (method, t, s, float(f))
        if key not in self._point:
            self._point[key] = self._scores(self.table, self.keep, method, t, s, float(f))
        return self._point[key]

    def boot(
        self, methods: Sequence[str], cells: Sequence[tuple[str, int]], budgets: Sequence[float],
        draws: np.ndarray,
    ) -> dict[tuple[str, str, int, float], np.ndarray]:  # fmt: skip
        """Per (method, t, s, f), a ``(replicates, n)`` array: row ``b`` holds the scores of the
        drawn candidates ``draws[b]``, refitted (or re-ranked) on the drawn models only."""
        out = {
            (m, t, s, float(f)): np.empty(draws.shape)
            for m in methods
            for t, s in cells
            for f in budgets
        }
        for b, draw in enumerate(draws):
            table = self.table.subset(draw)
            keep = {t: k[draw] for t, k in self.keep.items()}
            for m, t, s, f in out:
                out[(m, t, s, f)][b] = self._scores(table, keep, m, t, s, f)
        return out
