"""``ncap bench export-recommended``: turn a finished study into what ``ncap rank`` ships.

Two package-data files under ``src/ncap/predict/data/`` (read by :mod:`ncap.predict.shipped`):

- ``recommended.json``: the adopted default score per budget bin (``report.json``, "defaults"),
  the orientation of the dynamics scores and the interval recalibration factors (both frozen on
  the selection half, ``selection.json``), restricted to the predictors ``ncap rank`` can output
  (``nc/...`` and the shipped fitted scores);
- ``fitted.json``: the training rows of every shipped fitted score (``fit/base``): per budget
  fraction of the study, one row per run of *both* seeds and every target (the study trained each
  fit on the other targets only; the shipped fit uses all of them), its features at that budget
  and the gain ``logit(final accuracy of the other seed's run) - lo``. ``ncap rank`` fits the
  Bayesian ridge on these rows at run time, with the features its candidates have
  (:func:`ncap.predict.shipped.fitted_gain`).

Both record the benchmark's SHA-256, so a test can check they came from the committed data.

A bench-v3 study (``ncap-study-v3/1``) decided per budget (its protocol, section 3.5): its export
adds ``recommended_by_budget`` (``{f: {"score": name, "note": text or None}}``; the note says where
nothing beat the last observed accuracy reliably), keeps ``recommended`` per bin for readers of
the older format (the default at the bin's first budget), and ships the fitted scores that are a
default at some budget, with the features the study fitted them on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ncap.bench.study.combine import _design, _other_seed
from ncap.bench.study.halves import keep_masks
from ncap.bench.study.stages import BUDGETS, data_sha256, load_json
from ncap.bench.study.table import ScoreTable, build_table, logit
from ncap.bench.study.v3_base import FORMAT_V3
from ncap.exceptions import ConfigError
from ncap.predict.features import BASE_FEATURES
from ncap.predict.scores import Extrapolation, try_parse_score
from ncap.storage import atomic_write_json

__all__ = [
    "SHIPPED_FITS",
    "export_recommended",
    "fitted_rows",
    "lo_residuals",
    "recommended_settings",
    "shipped_fits_of",
]

SHIPPED_FITS = {"fit/base": BASE_FEATURES}
DIGITS = 7  # significant digits of the shipped rows (refits agree to ~1e-6 in the gain)


def _round(value: float) -> float | None:
    return float(f"{value:.{DIGITS}g}") if math.isfinite(value) else None


def shipped_fits_of(report: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """The fitted scores a study's export ships, each with its features: bench-v2's ``fit/base``;
    for a bench-v3 study, the ``fit/...`` scores adopted as the default at some budget."""
    if report.get("format") != FORMAT_V3:
        return dict(SHIPPED_FITS)
    from ncap.bench.study.candidates import candidates_v3  # lazy: only for a v3 export

    by_name = {c.name: c for c in candidates_v3()}
    chosen = sorted(
        {d["score"] for d in report["defaults"].values() if d["score"].startswith("fit/")}
    )
    return {name: tuple(by_name[name].features) for name in chosen}


def _defaults_by_budget(report: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    return {f: {"score": d["score"], "note": d["message"]} for f, d in report["defaults"].items()}


def recommended_settings(
    selection: dict[str, Any], report: dict[str, Any], *, source: str, sha: str
) -> dict[str, Any]:
    """``recommended.json``'s content from a committed study's ``selection`` and ``report``."""
    if selection.get("data_sha256") != sha or report.get("data_sha256") != sha:
        raise ConfigError(
            f"the study in the given directory was not computed from {source} (its data_sha256 "
            "differs); run `ncap bench evaluate` on this file first."
        )
    v3 = report.get("format") == FORMAT_V3
    if v3:
        by_budget = _defaults_by_budget(report)
        defaults = {b: by_budget[str(fs[0])]["score"] for b, fs in selection["bins"].items()}
    else:
        defaults = {b: d["score"] for b, d in report["defaults"].items()}
    fits = shipped_fits_of(report)
    shippable = set(fits)
    recal = {
        name: {f: {q: v[q] for q in ("68", "95")} for f, v in per.items()}
        for name, per in selection["recalibration"].items()
        if isinstance(try_parse_score(name), Extrapolation) or name in shippable
    }
    out = {
        "format": "ncap-recommended/1",
        "source": source,
        "data_sha256": sha,
        "protocol": selection["protocol"],
        "bins": selection["bins"],
        "recommended": defaults,
    }
    if v3:
        out["recommended_by_budget"] = by_budget
    return out | {
        "fits": {name: list(features) for name, features in fits.items()},
        "nc_helped": _nc_helped(selection, report)
        if v3
        else {b: d["nc_helped"] for b, d in report["defaults"].items()},
        "sigma": selection["sigma"],
        "recalibration": recal,
    }


def _nc_helped(selection: dict[str, Any], report: dict[str, Any]) -> dict[str, bool]:
    """Per bin: whether Q2 found a beta_eff-using score that beat its own no-beta control."""
    return {b: bool(report["tests"][f"Q2/{b}"]["passes"]) for b in selection["bins"]}


def fitted_rows(
    results: dict[str, Any],
    *,
    budgets=BUDGETS,
    fits: dict[str, tuple[str, ...]] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The training rows of the shipped fitted scores (module docstring), per budget; ``fits``
    (default :data:`SHIPPED_FITS`) names them with their features."""
    fits = dict(SHIPPED_FITS) if fits is None else fits
    table = _export_table(results, fits, budgets, workers, progress)
    return {name: _rows_of(table, features) for name, features in fits.items()}


def _export_table(results, fits, budgets, workers, progress) -> ScoreTable:
    seeds = list(results["plan"]["seeds"])
    dynamics = [f for feats in fits.values() for f in feats if f.startswith("dyn/")]
    names = ("last-observed", "tse-e1", *dict.fromkeys(dynamics))
    return build_table(results, seeds=seeds, budgets=budgets, workers=workers, progress=progress,
                       names=names)  # fmt: skip


def _rows_of(table: ScoreTable, features: Sequence[str]) -> dict[str, Any]:
    """Every kept run of both seeds at every budget: its features and its gain
    ``logit(final accuracy of the other seed's run) - lo``."""
    keep = keep_masks(table, table.seeds)
    per_budget = {}
    for f in table.budgets:
        x_rows, gains, labels = [], [], []
        for t in table.targets:
            rows = keep[t]
            for s in table.seeds:
                x = _design(table, features, f, t, s)[rows]
                lo = table.feature[("lo", f, t, s)][rows]
                other = _other_seed(table, s)
                truth = table.truth(t, other)[rows]
                models = [m for m, k in zip(table.models, rows) if k]
                for xi, gi, m in zip(x, logit(truth) - lo, models):
                    x_rows.append([_round(v) for v in xi])
                    gains.append(_round(float(gi)))
                    labels.append([t, m, s])
        per_budget[str(f)] = {"x": x_rows, "gain": gains, "runs": labels}
    return {"features": list(features), "budgets": per_budget}


def lo_residuals(table: ScoreTable) -> dict[str, list[float]]:
    """Per budget: the residuals ``logit(final of the other seed's run) - logit(LO)`` of every
    kept run with a finite one (LO's predictive distribution, bench-v3 protocol, Deviation 4 (d))."""
    rows = _rows_of(table, ("lo",))["budgets"]
    return {f: [g for g in r["gain"] if g is not None] for f, r in rows.items()}


def export_recommended(
    results_path: Path,
    results: dict[str, Any],
    study_dir: Path,
    out_dir: Path,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Write ``recommended.json`` and ``fitted.json`` into ``out_dir`` (atomically).

    A bench-v3 study's export updates the files already in ``out_dir`` (:func:`carry_over`): the
    fitted scores it did not adopt stay shipped as named alternatives, with their rows, factors
    and source; LO's residuals per budget come with it; ``fitted.json`` is rewritten only when the
    study adopted a fitted score."""
    sha = data_sha256(results_path)
    selection = load_json(study_dir / "selection.json")
    report = load_json(study_dir / "report.json")
    settings = recommended_settings(selection, report, source=results_path.name, sha=sha)
    shipped = shipped_fits_of(report)
    v3 = report.get("format") == FORMAT_V3
    table = _export_table(results, shipped, BUDGETS, workers, progress)
    rows = {name: _rows_of(table, features) for name, features in shipped.items()}
    fits: dict[str, Any] | None = {
        "format": "ncap-fitted/1",
        "source": results_path.name,
        "data_sha256": sha,
        "protocol": selection["protocol"],
        "fits": rows,
    }
    if v3:
        settings["residuals"] = {"last-observed": lo_residuals(table)}
        settings, fits = carry_over(settings, rows, out_dir, sha=sha, source=results_path.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"recommended": out_dir / "recommended.json", "fitted": out_dir / "fitted.json"}
    atomic_write_json(settings, paths["recommended"], indent=1)
    if fits is not None:
        atomic_write_json(fits, paths["fitted"], indent=None)
    return paths


def carry_over(
    settings: dict[str, Any], rows: dict[str, Any], out_dir: Path, *, sha: str, source: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A v3 study's settings with the fitted scores already shipped in ``out_dir`` kept as named
    alternatives (``carried``: their source), and the ``fitted.json`` to write (None: keep it)."""
    old_settings = load_json(out_dir / "recommended.json")
    old_fits = load_json(out_dir / "fitted.json")
    carried = {
        name: {
            "source": old_fits["source"],
            "data_sha256": old_fits["data_sha256"],
            "protocol": old_fits["protocol"],
        }
        for name in old_settings["fits"]
        if name not in rows
    }
    for name in carried:
        settings["fits"][name] = old_settings["fits"][name]
        if name in old_settings["recalibration"]:
            settings["recalibration"][name] = old_settings["recalibration"][name]
    settings["carried"] = carried
    if not rows:
        return settings, None
    fits = dict(old_fits)
    fits["fits"] = {n: v for n, v in old_fits["fits"].items() if n in carried}
    for name, spec in rows.items():
        fits["fits"][name] = spec | {"source": source, "data_sha256": sha}
    return settings, fits
