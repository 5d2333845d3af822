"""Is the trust statement calibrated on bench-v3? The check of docs/benchmark-v3-protocol.md,
section 5, as fixed by its Deviation 4, on bench-v3's report half (issue 26).

At each budget the score is the study's adopted default there (``report.json``, "defaults"). A
fitted default's predictive distribution is its primary cross-fitted prediction (other dataset
family, other architecture family; :class:`ncap.bench.study.combine.CrossFit`) with the selection
half's 95% recalibration factor; the last observed accuracy (LO) gets ``logit(LO) + r``, r drawn
from the cross-fitted residuals ``logit(final(other seed)) - logit(LO)`` of the runs a primary
cross-fitted model of that candidate would train on (seed 1, other dataset family, other
architecture family). A rank average gives no distribution (its budget is reported as not
checked). Subsets, draws, the reliability table and the target-cluster bootstrap are those of
``benchmarks/trust_calibration.py``.

    PYTHONPATH=src python benchmarks/trust_calibration_v3.py [--results benchmarks/results/bench-v3.json]
        [--study benchmarks/results/bench-v3-study] [--out benchmarks/results/bench-v3-trust]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from trust_calibration import (
    SIZES,
    SUBSET_SEED,
    SUBSETS,
    summarise,
    truth_sections,
    write_outputs,
)

from ncap.bench.study.combine import _cross_fitted
from ncap.bench.study.table import logit
from ncap.bench.study.v3_base import BUDGETS, LO, StudyV3
from ncap.predict.trust import Empirical, Predictive, trust_statement

SEED = 1  # the report half


def _lo_residual_pools(study: StudyV3, table, keep, f: float, t: str) -> dict[str, np.ndarray]:
    """Per architecture family: the cross-fitted residuals a candidate of that family may use."""
    family = study.target_family[t]
    truth_seed = 1 - SEED
    pools = {}
    for key in sorted(set(study.crossfit.model_keys)):
        allowed = study.crossfit.train_models(key)
        ys = []
        for other in table.targets:
            if study.target_family[other] == family:
                continue
            rows = keep[other] & allowed
            lo = table.feature[("lo", f, other, SEED)][rows]
            ys.append(logit(table.truth(other, truth_seed)[rows]) - lo)
        y = np.concatenate(ys)
        pools[key[0]] = y[np.isfinite(y)]
    return pools


def subsets_of(study: StudyV3, report: dict, selection: dict, workers: int) -> tuple[list, dict]:
    table = study.table(SEED, workers, None)
    keep = study.keep(table)
    rng = np.random.default_rng(SUBSET_SEED)
    rows, checked = [], {}
    for f in BUDGETS:
        name = report["defaults"][str(f)]["score"]
        cand = study.by_name[name]
        kind = "fit" if cand.kind == "fit" else ("lo" if name == LO else None)
        checked[str(f)] = {"score": name, "checked": kind is not None}
        if kind is None:
            continue
        k95 = (selection["recalibration"].get(name) or {}).get(str(f), {}).get("95", 1.0)
        for t in table.targets:
            own = np.array([table.final.get((t, m, SEED), np.nan) for m in table.models])
            other = np.array([table.final.get((t, m, 1 - SEED), np.nan) for m in table.models])
            if kind == "fit":
                sc = _cross_fitted(cand, table, f, t, SEED, keep, study.crossfit)
                center, spread = sc.link_mean, sc.link_sd
            else:
                center = table.feature[("lo", f, t, SEED)]
                spread = np.zeros(len(table.models))
                pools = _lo_residual_pools(study, table, keep, f, t)
            ok = np.flatnonzero(keep[t] & np.isfinite(center) & np.isfinite(spread))
            if kind == "fit":
                dist = {i: Predictive(table.models[i], "logit", float(center[i]),
                                      float(k95 * spread[i])) for i in ok}  # fmt: skip
            else:
                res = {g: tuple(v.tolist()) for g, v in pools.items()}
                dist = {i: Empirical(table.models[i], float(center[i]),
                                     res[study.model_family[i]]) for i in ok}  # fmt: skip

            for k in SIZES:
                for _ in range(SUBSETS):
                    idx = rng.choice(ok, size=k, replace=False)
                    idx = idx[np.argsort(-center[idx], kind="stable")]  # the pick first
                    st = trust_statement([dist[i] for i in idx])
                    row = {"budget": f, "target": t, "k": k, "p_best": st.p_best,
                           "expected_regret": st.expected_regret, "warnings": list(st.warnings)}  # fmt: skip
                    for label, truth in (("own", own), ("other", other)):
                        tr = truth[idx]
                        row[f"best_{label}"] = bool(tr[0] >= tr.max())
                        row[f"regret_{label}"] = float(tr.max() - tr[0]) * 100.0
                    rows.append(row)
    return rows, checked


def render(out: dict) -> str:
    lines = [
        "# Is the trust statement calibrated? bench-v3's report half",
        "",
        "The adopted default of each budget, its predictive distribution cross-fitted (other "
        "dataset family, other architecture family; LO: cross-fitted residuals); 200 subsets of "
        f"k = 3, 5, 8 models per target (`default_rng(29)`); {len(out['targets'])} targets. "
        "Intervals: target-cluster bootstrap (2000). Command: `PYTHONPATH=src python "
        "benchmarks/trust_calibration_v3.py` (sha256 of bench-v3.json "
        f"{out['data_sha256'][:12]}...).",
        "",
        "| budget | default score | checked |",
        "|---|---|---|",
    ]
    for f, c in out["checked"].items():
        lines.append(f"| {100 * float(f):g}% | `{c['score']}` | {c['checked']} |")
    lines.append("")
    lines += truth_sections(out, {f: c["score"] for f, c in out["checked"].items()})
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="benchmarks/results/bench-v3.json")
    parser.add_argument("--study", default="benchmarks/results/bench-v3-study")
    parser.add_argument("--out", default="benchmarks/results/bench-v3-trust")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    raw = Path(args.results).read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    study_dir = Path(args.study)
    selection = json.loads((study_dir / "selection.json").read_text())
    report = json.loads((study_dir / "report.json").read_text())
    if report["data_sha256"] != sha or selection["data_sha256"] != sha:
        raise SystemExit(f"the study in {study_dir} was not computed from {args.results}")
    study = StudyV3(json.loads(raw), replicates=int(selection["replicates"]))
    rows, checked = subsets_of(study, report, selection, args.workers)
    budgets = [f for f in BUDGETS if checked[str(f)]["checked"]]
    out = {
        "format": "ncap-trust-calibration/1",
        "source": Path(args.results).name,
        "data_sha256": sha,
        "half": "report (scored seed 1)",
        "checked": checked,
        "targets": sorted({r["target"] for r in rows}),
        "own": summarise(rows, "own", budgets),
        "other": summarise(rows, "other", budgets),
    }
    out["calibrated"] = {f: s["calibrated"] for f, s in out["own"].items()}
    write_outputs(out, render(out), Path(args.out))


if __name__ == "__main__":
    main()
