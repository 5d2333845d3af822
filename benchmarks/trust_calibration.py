"""Is the trust statement calibrated? A check on bench-v2's report half (issue 26; the procedure of
docs/benchmark-v3-protocol.md, section 5, "Calibration check", applied to bench-v2, which was
already evaluated: this is not the v3 study).

The score is ncap's shipped default ``fit/base``, its predictions leave-one-target-out as in the
bench-v2 study (``ncap.bench.study.combine.cell_scores``: the fit for target t sees the other
targets' seed-1 runs, their truth from seed 0), on the report half (scored seed 1), at 5% and 10% of
T. Each candidate's predictive distribution is ``Normal(link_mean, (k95 * link_sd)^2)`` in logit
space, ``k95`` the shipped recalibration factor of ``fit/base`` at that budget (fixed on the
selection half), exactly what ``ncap rank`` uses (``ncap.ranking.scoring.trust_of``).

From each cell (target), 200 subsets of k in {3, 5, 8} of the models with complete data are drawn
(``default_rng(29)``); the pick is the subset's highest predicted accuracy; the trust statement
(4000 draws, ``default_rng(0)``) is compared with the truth: the run's own final accuracy
(``final(t, m, 1)``, primary) and the other seed's (``final(t, m, 0)``, secondary). Reported: a
reliability table of P(best) in deciles (mean predicted, observed frequency, count, 95% interval),
and the mean predicted vs realised regret (accuracy points).

Intervals: a cluster bootstrap over targets (2000 replicates, ``default_rng(27)``), not the
protocol's two-way bootstrap: the subsets of one cell share its models, and resampling models
would change which subsets exist. *Calibrated* (the protocol's rule): every decile with >= 50
subsets has the mean prediction inside the interval of its observed frequency.

    PYTHONPATH=src python benchmarks/trust_calibration.py [--results benchmarks/results/bench-v2.json]
        [--out benchmarks/results/bench-v2-trust]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from ncap.bench.stats import percentile_interval
from ncap.bench.study.candidates import candidates
from ncap.bench.study.combine import cell_scores
from ncap.bench.study.halves import keep_masks
from ncap.bench.study.table import build_table, logit
from ncap.predict.recommended import recalibration_factor
from ncap.predict.trust import Predictive, trust_statement

BUDGETS = (0.05, 0.1)
SIZES = (3, 5, 8)
SUBSETS = 200
SUBSET_SEED, BOOT_SEED, REPLICATES = 29, 27, 2000
SCORE = "fit/base"
SEED = 1  # the report half
MIN_COUNT = 50


def subsets_of(results: dict, diagnosis: dict | None = None) -> list[dict]:
    """One row per (budget, target, k, subset): P(best), E[regret], and what happened.
    ``diagnosis`` receives, per budget, the sd of the standardised residuals
    ``(logit(truth) - link_mean) / (k95 * link_sd)`` over all report-half runs and within cells
    (each cell's mean residual removed): what the independent draws assume vs what a ranking
    within one cell meets."""
    table = build_table(
        results, seeds=[SEED], budgets=BUDGETS, names=["last-observed", "tse-e1"], workers=2
    )
    cand = next(c for c in candidates(("interval",)) if c.name == SCORE)
    keep = keep_masks(table, sorted({k[2] for k in table.final}))  # both seeds, as the study
    rng = np.random.default_rng(SUBSET_SEED)
    rows = []
    z_all: dict[float, list[float]] = {}
    z_within: dict[float, list[float]] = {}
    for f in BUDGETS:
        k95 = recalibration_factor(SCORE, f)["95"]
        for t in table.targets:
            sc = cell_scores(cand, table, f, t, SEED, sigma={}, keep=keep)
            own = np.array([table.final.get((t, m, SEED), np.nan) for m in table.models])
            other = np.array([table.final.get((t, m, 1 - SEED), np.nan) for m in table.models])
            ok = np.flatnonzero(keep[t] & np.isfinite(sc.link_mean) & np.isfinite(sc.link_sd))
            res = (logit(own[ok]) - sc.link_mean[ok]) / (k95 * sc.link_sd[ok])
            z_all.setdefault(f, []).extend(res)
            z_within.setdefault(f, []).extend(res - res.mean())
            for k in SIZES:
                for _ in range(SUBSETS):
                    idx = rng.choice(ok, size=k, replace=False)
                    idx = idx[np.argsort(-sc.link_mean[idx], kind="stable")]  # the pick first
                    preds = [Predictive(table.models[i], "logit", float(sc.link_mean[i]),
                                        float(k95 * sc.link_sd[i])) for i in idx]  # fmt: skip
                    st = trust_statement(preds)
                    row = {"budget": f, "target": t, "k": k, "p_best": st.p_best,
                           "expected_regret": st.expected_regret, "warnings": list(st.warnings)}  # fmt: skip
                    for name, truth in (("own", own), ("other", other)):
                        tr = truth[idx]
                        row[f"best_{name}"] = bool(tr[0] >= tr.max())
                        row[f"regret_{name}"] = float(tr.max() - tr[0]) * 100.0
                    rows.append(row)
    if diagnosis is not None:
        for f in BUDGETS:
            diagnosis[str(f)] = {
                "sd_standardised_residual_all": float(np.std(z_all[f])),
                "sd_standardised_residual_within_cell": float(np.std(z_within[f])),
            }
    return rows


def _interval(x: np.ndarray) -> list[float | None]:
    """The 95% percentile interval of the finite replicates; [None, None] (JSON null) if none."""
    lo, hi = percentile_interval(x)
    return [None, None] if math.isnan(lo) else [lo, hi]


def summarise(rows: list[dict], truth: str, budgets=BUDGETS) -> dict:
    """Per budget: the reliability table (deciles of P(best)) and regret, with target-cluster
    bootstrap intervals; per k: mean predicted vs observed."""
    out = {}
    targets = sorted({r["target"] for r in rows})
    boot = np.random.default_rng(BOOT_SEED).integers(0, len(targets), (REPLICATES, len(targets)))
    for f in budgets:
        sub = [r for r in rows if r["budget"] == f]
        p = np.array([r["p_best"] for r in sub])
        hit = np.array([r[f"best_{truth}"] for r in sub], dtype=float)
        er = np.array([r["expected_regret"] for r in sub])
        rr = np.array([r[f"regret_{truth}"] for r in sub])
        tix = np.array([targets.index(r["target"]) for r in sub])
        decile = np.minimum((p * 10).astype(int), 9)
        # per (target, decile) sums, so a replicate is a weighted sum over drawn targets
        counts = np.zeros((len(targets), 10))
        hits = np.zeros((len(targets), 10))
        np.add.at(counts, (tix, decile), 1.0)
        np.add.at(hits, (tix, decile), hit)
        w = np.zeros((REPLICATES, len(targets)))
        np.add.at(w, (np.arange(REPLICATES)[:, None], boot), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            freq_boot = (w @ hits) / (w @ counts)
        table, calibrated, direction = [], True, []
        for d in range(10):
            m = decile == d
            if not m.any():
                continue
            ci = _interval(freq_boot[:, d])
            entry = {"decile": f"{d / 10:.1f}-{(d + 1) / 10:.1f}", "count": int(m.sum()),
                     "mean_predicted": float(p[m].mean()), "observed": float(hit[m].mean()),
                     "observed_ci95": ci}  # fmt: skip
            entry["inside"] = bool(ci[0] <= entry["mean_predicted"] <= ci[1])
            if entry["count"] >= MIN_COUNT and not entry["inside"]:
                calibrated = False
                direction.append("over" if entry["observed"] < entry["mean_predicted"] else "under")
            table.append(entry)
        t_er = np.zeros(len(targets))
        t_rr = np.zeros(len(targets))
        t_n = np.zeros(len(targets))
        np.add.at(t_er, tix, er)
        np.add.at(t_rr, tix, rr)
        np.add.at(t_n, tix, 1.0)
        diff_boot = (w @ (t_rr - t_er)) / (w @ t_n)
        per_k = {}
        for k in SIZES:
            m = np.array([r["k"] == k for r in sub])
            per_k[str(k)] = {
                "mean_p_best": float(p[m].mean()),
                "observed_best": float(hit[m].mean()),
                "mean_expected_regret": float(er[m].mean()),
                "mean_realised_regret": float(rr[m].mean()),
                "coin_warnings": float(
                    np.mean(
                        ["no better than a coin" in r["warnings"] for r, mm in zip(sub, m) if mm]
                    )
                ),  # fmt: skip
            }
        out[str(f)] = {
            "subsets": len(sub),
            "reliability": table,
            "calibrated": calibrated,
            "direction": sorted(set(direction)),
            "mean_p_best": float(p.mean()),
            "observed_best": float(hit.mean()),
            "mean_expected_regret": float(er.mean()),
            "mean_realised_regret": float(rr.mean()),
            "realised_minus_expected_regret_ci95": _interval(diff_boot),
            "per_k": per_k,
        }
    return out


def truth_sections(out: dict, scores: dict | None = None) -> list[str]:
    """The markdown of each budget and truth: verdict, reliability table, per-k table
    (``scores``: the score of each budget, named in its heading)."""
    lines: list[str] = []
    for truth, label in (("own", "the run's own final accuracy (primary)"),
                         ("other", "the other seed's final accuracy (secondary)")):  # fmt: skip
        for f, s in out[truth].items():
            scored = f" (`{scores[f]}`)" if scores else ""
            lines += [
                f"## {100 * float(f):g}% of T{scored}, truth: {label}",
                "",
                f"Calibrated (every decile with >= {MIN_COUNT} subsets inside): "
                f"**{s['calibrated']}**"
                + (f" ({', '.join(s['direction'])}confident)" if s["direction"] else "")
                + f". Mean P(best) {s['mean_p_best']:.3f} vs observed {s['observed_best']:.3f}; "
                f"mean expected regret {s['mean_expected_regret']:.2f} vs realised "
                f"{s['mean_realised_regret']:.2f} points (realised - expected "
                f"[{s['realised_minus_expected_regret_ci95'][0]:+.2f}, "
                f"{s['realised_minus_expected_regret_ci95'][1]:+.2f}]).",
                "",
                "| P(best) decile | subsets | mean predicted | observed [95%] |",
                "|---|---|---|---|",
            ]
            for e in s["reliability"]:
                ci = e["observed_ci95"]
                lines.append(f"| {e['decile']} | {e['count']} | {e['mean_predicted']:.3f} | "
                             f"{e['observed']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] |")  # fmt: skip
            lines += ["", "| k | mean P(best) | observed | E[regret] | realised | coin warnings |",
                      "|---|---|---|---|---|---|"]  # fmt: skip
            for k, v in s["per_k"].items():
                lines.append(f"| {k} | {v['mean_p_best']:.3f} | {v['observed_best']:.3f} | "
                             f"{v['mean_expected_regret']:.2f} | {v['mean_realised_regret']:.2f} | "
                             f"{100 * v['coin_warnings']:.0f}% |")  # fmt: skip
            lines.append("")
    return lines


def render(out: dict) -> str:
    lines = [
        "# Is the trust statement calibrated? bench-v2's report half",
        "",
        f"Score `{SCORE}` (leave-one-target-out as in the bench-v2 study), the shipped 95% "
        "recalibration factor; 200 subsets of k = 3, 5, 8 models per target (`default_rng(29)`); "
        f"{len(out['targets'])} targets. Intervals: target-cluster bootstrap (2000). Command: "
        "`PYTHONPATH=src python benchmarks/trust_calibration.py` (sha256 of bench-v2.json "
        f"{out['data_sha256'][:12]}...).",
        "",
    ]
    lines += [
        "## Why: the errors of one cell share a part",
        "",
        "sd of the standardised residuals `(logit(truth) - mean) / (k95 sd)` of the report half's "
        "runs, over all runs and within cells (each cell's mean residual removed). The trust "
        "statement draws the candidates independently with sd 1 on this scale; a ranking within one "
        "cell meets only the within-cell part:",
        "",
        "| budget | all runs | within cells |",
        "|---|---|---|",
    ]
    for f, d in out["diagnosis"].items():
        lines.append(f"| {100 * float(f):g}% | {d['sd_standardised_residual_all']:.3f} | "
                     f"{d['sd_standardised_residual_within_cell']:.3f} |")  # fmt: skip
    lines.append("")
    lines += truth_sections(out)
    return "\n".join(lines)


def write_outputs(out: dict, text: str, out_dir: Path) -> None:
    """``calibration.json`` and ``report.md`` into ``out_dir``; the report also on stdout."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(out, indent=1) + "\n")
    (out_dir / "report.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="benchmarks/results/bench-v2.json")
    parser.add_argument("--out", default="benchmarks/results/bench-v2-trust")
    args = parser.parse_args()
    raw = Path(args.results).read_bytes()
    results = json.loads(raw)
    diagnosis: dict = {}
    rows = subsets_of(results, diagnosis)
    out = {
        "format": "ncap-trust-calibration/1",
        "source": Path(args.results).name,
        "data_sha256": hashlib.sha256(raw).hexdigest(),
        "score": SCORE,
        "half": "report (scored seed 1)",
        "targets": sorted({r["target"] for r in rows}),
        "own": summarise(rows, "own"),
        "other": summarise(rows, "other"),
        "diagnosis": diagnosis,
    }
    out["calibrated"] = all(s["calibrated"] for s in out["own"].values())
    write_outputs(out, render(out), Path(args.out))


if __name__ == "__main__":
    main()
