"""bench-v3 study outputs for people: the report as markdown and one plot (Kendall tau against budget
for each family of scores' best member, under the strict cross-fitting, with the noise ceiling)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncap.storage import atomic_write_json, atomic_write_text

__all__ = ["plot_family_bests", "render_report_v3", "render_selection_v3", "write_study_v3"]


def _ci(s: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not s or s.get("value") is None:
        return "n/a"
    lo, hi = s["ci95"]
    return f"{s['value']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _pct(f: str) -> str:
    return f"{100 * float(f):g}%"


def render_selection_v3(sel: Mapping[str, Any]) -> str:
    lines = [
        "# bench-v3 study: selection half (frozen choices)",
        "",
        f"Protocol: `{sel['protocol']}`. Data sha256 `{sel['data_sha256'][:16]}…`; "
        f"{sel['n_candidates']} candidates; scored seed {sel['seeds']['scored']}, truth seed "
        f"{sel['seeds']['truth']}; {sel['replicates']} two-way bootstrap replicates.",
        "",
        "| budget | W_nc (S) | W_non (S) | W_all |",
        "|---|---|---|---|",
    ]
    for f, w in sel["winners"].items():
        lines.append(
            f"| {_pct(f)} | `{w['W_nc']}` ({w['S_W_nc']:.3f}) | `{w['W_non']}` "
            f"({w['S_W_non']:.3f}) | `{w['W_all']}` |"
        )
    lines += ["", "Q2 pools (beta_eff-using rank averages and fits), winner per bin:", ""]
    for b, q in sel["q2_winners"].items():
        lines.append(f"- {b}: `{q['winner']}` (S {q['S']:.3f}), control `{q['control']}`")
    return "\n".join(lines) + "\n"


def render_report_v3(rep: Mapping[str, Any], sel: Mapping[str, Any]) -> str:
    ceiling = rep["noise_ceiling"]["kendall"]
    lines = [
        "# bench-v3 study: report half",
        "",
        f"Protocol: `{rep['protocol']}` (frozen before any bench-v3 run). Every fitted score is "
        "cross-fitted: a run's prediction comes from a model trained only on other dataset "
        "families and other architecture families. Intervals: 95% two-way bootstrap (models and "
        f"targets resampled, {rep['replicates']} replicates), conditional on the frozen choices. "
        f"Noise ceiling (Kendall between the two seeds' final accuracies): {_ci(ceiling)}.",
        "",
        "## Confirmatory tests (Holm over the five)",
        "",
        "| test | a | b | Δ Kendall [95% two-way] | p | Holm | family-cluster 95% |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in rep["tests"].items():
        fc = t["family_cluster"]["ci95"]
        lines.append(
            f"| {name} | `{t['a']}` | `{t['b']}` | {_ci(t)} | {t['p']:.3f} | "
            f"{'passes' if t['holm_passes'] else 'fails'} | [{fc[0]:+.3f}, {fc[1]:+.3f}] |"
        )
    lines += ["", "## The default per budget (section 3.5)", ""]
    lines += ["| budget | W_all | W_all − LO | default | note |", "|---|---|---|---|---|"]
    for f, d in rep["defaults"].items():
        lines.append(
            f"| {_pct(f)} | `{d['W_all']}` | {_ci(d['W_all_minus_lo'])} | `{d['score']}` | "
            f"{d['message'] or ('survives Holm' if d['survives_holm'] else '')} |"
        )
    lines += ["", "## Headline scores (report half)", ""]
    for f in rep["defaults"]:
        lines += [
            f"### {_pct(f)} of T",
            "",
            "| score | Kendall | − LO | − control | top-1 regret (points) |",
            "|---|---|---|---|---|",
        ]
        for name in rep["headline"]:
            e = rep["tables"][name][f]
            regret = e.get("top1_regret")
            reg = (
                f"{regret['value']:.1f} [{regret['ci95'][0]:.1f}, {regret['ci95'][1]:.1f}]"
                if regret
                else "n/a"
            )
            lines.append(
                f"| `{name}` | {_ci(e['kendall'])} | {_ci(e.get('minus_lo'))} | "
                f"{_ci(e.get('minus_control'))} | {reg} |"
            )
        lines.append("")
    lines += ["## Each family of scores: best member on the selection half", ""]
    lines += ["| family | budget | best | report Kendall | − LO |", "|---|---|---|---|---|"]
    for fam, per in rep["family_best"].items():
        for f, e in per.items():
            lines.append(
                f"| {fam} | {_pct(f)} | `{e['best']}` | {_ci(e['report'])} | "
                f"{_ci(e['report_minus_lo'])} |"
            )
    lines += ["", "## Who wins where: Δ Kendall vs LO per dataset family (10% of T)", ""]
    fams = list(rep["by_dataset_family"])
    lines += ["| score | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for name in rep["headline"]:
        if name == "last-observed":
            continue
        cells = [_ci(rep["by_dataset_family"][fam][name]["0.1"]["minus_lo"]) for fam in fams]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "## Secondary cross-fittings of the fitted headline scores (Kendall − LO)", ""]
    sec = rep["secondary_crossfitting"]
    lines += ["| score | budget | primary | leave one target out | also other source task |"]
    lines += ["|---|---|---|---|---|"]
    for name in sec["loto"]:
        for f in rep["defaults"]:
            lines.append(
                f"| `{name}` | {_pct(f)} | {_ci(rep['tables'][name][f].get('minus_lo'))} | "
                f"{_ci(sec['loto'][name][f]['minus_lo'])} | "
                f"{_ci(sec['strictest'][name][f]['minus_lo'])} |"
            )
    q3 = rep.get("q3_imagenet")
    if q3:
        lines += ["", "## Q3: the ImageNet slice (descriptive)", ""]
        lines += [
            f"Pairs (checkpoint, twin pretrained by ncap): {q3['pairs']}; targets {q3['targets']}.",
            "",
            "| score | budget | pairs ordered as the truth | Kendall within the 8 |",
            "|---|---|---|---|",
        ]
        for name, per in q3["by_score"].items():
            for f, e in per.items():
                lines.append(
                    f"| `{name}` | {_pct(f)} | {_ci(e['pairs_ordered_right'])} | "
                    f"{_ci(e['kendall_within_8'])} |"
                )
    lines += ["", "## Coverage of the fitted scores' intervals (own-run truth)", ""]
    lines += ["| score | budget | 68% raw | 68% recal. | 95% raw | 95% recal. | median width "]
    lines[-1] += "95% recal. (points) |"
    lines += ["|---|---|---|---|---|---|---|"]
    for name, per in rep["coverage"].items():
        for f, c in per.items():
            cells = [
                f"{c[k]['coverage']:.2f} [{c[k]['ci95'][0]:.2f}, {c[k]['ci95'][1]:.2f}]"
                for k in ("68/raw", "68/recalibrated", "95/raw", "95/recalibrated")
            ]
            lines.append(
                f"| `{name}` | {_pct(f)} | " + " | ".join(cells) + " | "
                f"{c['95/recalibrated']['median_width_points']:.1f} |"
            )
    dropped = {t: m for t, m in rep["dropped_pairs"].items() if m}
    lines += [
        "",
        f"Dropped (target, model) pairs (not in the plan, or a run missing): "
        f"{sum(len(m) for m in dropped.values())}. Evaluation seconds: selection "
        f"{sel['seconds']:.0f}, report {rep['seconds']:.0f}.",
    ]
    return "\n".join(lines) + "\n"


def plot_family_bests(rep: Mapping[str, Any], path: Path) -> Path:
    """Kendall tau (report half, two-way 95% intervals) against budget for each family's best."""
    from matplotlib.figure import Figure  # lazy: matplotlib, only to draw a plot

    fig = Figure(figsize=(7.5, 4.5))  # the Figure API: the user's backend is left alone
    ax = fig.subplots()
    budgets = list(rep["defaults"])
    xs = [100 * float(f) for f in budgets]
    for i, (fam, per) in enumerate(sorted(rep["family_best"].items())):
        entries = [per[f]["report"] for f in budgets]
        off = 1 + (i - len(rep["family_best"]) / 2) * 0.012
        ys = [e["value"] for e in entries]
        err = [
            [max(e["value"] - e["ci95"][0], 0.0) for e in entries],
            [max(e["ci95"][1] - e["value"], 0.0) for e in entries],
        ]
        ax.errorbar([x * off for x in xs], ys, yerr=err, fmt="-o", ms=3, capsize=2, label=fam)
    ceiling = rep["noise_ceiling"]["kendall"]["value"]
    ax.axhline(ceiling, color="black", lw=1, label=f"noise ceiling ({ceiling:.2f})")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(xs, [f"{v:g}%" for v in xs])
    ax.set_xlabel("early budget (% of T)")
    ax.set_ylabel("Kendall tau (report half)")
    ax.set_title("bench-v3, new dataset family and new model family: each family's best")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def write_study_v3(
    out_dir: str | Path, selection: Mapping[str, Any], report: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    out = Path(out_dir)
    files = {
        "selection": atomic_write_json(selection, out / "selection.json"),
        "selection_md": atomic_write_text(render_selection_v3(selection), out / "selection.md"),
    }
    if report is not None:
        files["report"] = atomic_write_json(report, out / "report.json")
        files["markdown"] = atomic_write_text(
            render_report_v3(report, selection), out / "report.md"
        )
        files["plot"] = plot_family_bests(report, out / "kendall_vs_budget.png")
    return files
