"""The study's report for people: markdown tables and plots (the JSON is the stages' output)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncap.bench.study.selection import BINS
from ncap.predict.scores import Extrapolation, try_parse_score
from ncap.storage import atomic_write_json, atomic_write_text

__all__ = ["render_report", "render_selection", "write_study"]


def _ci(s: Mapping[str, Any] | None, digits: int = 3, signed: bool = True) -> str:
    if not s or s.get("value") is None:
        return "–"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    out = fmt.format(s["value"])
    if "ci95" in s:
        lo, hi = s["ci95"]
        out += f" [{fmt.format(lo)}, {fmt.format(hi)}]"
    return out


def _test_line(name: str, t: Mapping[str, Any] | None) -> str:
    if t is None:
        return f"| {name} | – | – | – | – | – |"
    holm = "" if "holm_passes" not in t else ("yes" if t["holm_passes"] else "no")
    lo, hi = t["ci95"]
    tlo, thi = t["two_way_ci95"]
    return (
        f"| {name}: `{t['a']}` − `{t['b']}` | {t['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
        f"[{tlo:+.3f}, {thi:+.3f}] | {t['p']:.3f} | {'**yes**' if t['passes'] else 'no'} | "
        f"{holm} |"
    )


def render_selection(sel: Mapping[str, Any]) -> str:
    lines = [
        "# Study selection (selection half)",
        "",
        f"Protocol: `{sel['protocol']}`. Data sha256 `{sel['data_sha256']}`. "
        f"{sel['n_candidates']} candidate scores; scores from seed {sel['seeds']['scored']}, "
        f"truth from seed {sel['seeds']['truth']}; B = {sel['replicates']} model resamples.",
        "",
        "| bin | W_nc (S) | W_non (S) | W_all |",
        "|---|---|---|---|",
    ]
    for b, w in sel["winners"].items():
        lines.append(
            f"| {b} | `{w['W_nc']}` ({w['S_W_nc']:+.3f}) | `{w['W_non']}` ({w['S_W_non']:+.3f})"
            f" | `{w['W_all']}` |"
        )
    lines += ["", "## Mean Kendall tau per candidate (S_b)", "", "| candidate | family | early | "
              "late |", "|---|---|---|---|"]  # fmt: skip
    fam = {c["name"]: c["family"] for c in sel["candidates"]}
    for name in sorted(fam, key=lambda n: -sel["S"]["late"][n]):
        lines.append(
            f"| `{name}` | {fam[name]} | {sel['S']['early'][name]:+.3f} | "
            f"{sel['S']['late'][name]:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def render_report(rep: Mapping[str, Any], sel: Mapping[str, Any]) -> str:
    tables = rep["tables"]
    nc = rep["noise_ceiling"]["kendall"]
    lines = [
        "# Study report (report half)",
        "",
        f"Protocol: `{rep['protocol']}` (pre-registered). Data sha256 `{rep['data_sha256']}`. "
        f"Scores from seed {rep['seeds']['scored']}, truth from seed {rep['seeds']['truth']}. "
        "Intervals: 95% percentile bootstrap over models (the same draws for every method, "
        "target and budget), conditional on the choices frozen on the selection half.",
        "",
        f"Noise ceiling (Kendall between the two seeds' final accuracies): {_ci(nc)}.",
        "",
        "## Defaults adopted",
        "",
        "| bin | W_nc | W_non | W_all | T1 passes | adopted default |",
        "|---|---|---|---|---|---|",
    ]
    for b, d in rep["defaults"].items():
        w = rep["winners"][b]
        lines.append(
            f"| {b} | `{w['W_nc']}` | `{w['W_non']}` | `{w['W_all']}` | "
            f"{'yes' if rep['tests'][f'T1/{b}']['passes'] else 'no'} | `{d['score']}`"
            f"{' (safety net)' if d['safety_net'] else ''} |"
        )
    lines += [
        "",
        "## Confirmatory tests (Δ mean Kendall, report half)",
        "",
        "| test | Δ [95% CI] | two-way CI | p | passes | Holm |",
        "|---|---|---|---|---|---|",
    ]
    for k, t in rep["tests"].items():
        lines.append(_test_line(k, t))
    lines += ["", "## Comparisons per bin and budget", "", "| budget | comparison | Δ [95% CI] |",
              "|---|---|---|"]  # fmt: skip
    for b, comps in rep["comparisons"].items():
        for k, t in comps.items():
            if t is not None:
                lo, hi = t["ci95"]
                lines.append(
                    f"| {b} | {k}: `{t['a']}` − `{t['b']}` | {t['delta']:+.3f} "
                    f"[{lo:+.3f}, {hi:+.3f}] |"
                )
    budgets = [k for k in next(iter(tables.values())) if k not in BINS]
    lines += ["", "## Headline scores: Kendall tau [95% CI] by budget", "",
              "| score | " + " | ".join(f"{100 * float(f):g}% of T" for f in budgets) + " |",
              "|---|" + "---|" * len(budgets)]  # fmt: skip
    for name in rep["headline"]:
        lines.append(
            f"| `{name}` | " + " | ".join(_ci(tables[name][f]["kendall"]) for f in budgets) + " |"
        )
    lines += ["", "## Headline scores: Δ Kendall vs last observed [95% CI]", "",
              "| score | " + " | ".join(f"{100 * float(f):g}%" for f in budgets) + " |",
              "|---|" + "---|" * len(budgets)]  # fmt: skip
    for name in rep["headline"]:
        lines.append(
            f"| `{name}` | " + " | ".join(_ci(tables[name][f]["minus_lo"]) for f in budgets) + " |"
        )
    targets = list(next(iter(tables.values()))[budgets[0]]["by_target"])
    for f in ("0.05", "0.1"):
        if f not in budgets:
            continue
        lines += ["", f"## Kendall tau per target at {100 * float(f):g}% of T [95% CI]", "",
                  "| score | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]  # fmt: skip
        for name in rep["headline"]:
            by = tables[name][f]["by_target"]
            cells = [
                f"{by[t]['kendall']:+.2f} [{by[t]['kendall_ci95'][0]:+.2f}, "
                f"{by[t]['kendall_ci95'][1]:+.2f}]"
                for t in targets
            ]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        ceiling = rep["noise_ceiling"]["by_target"]
        lines.append(
            "| noise ceiling | " + " | ".join(f"{ceiling[t]:+.2f}" for t in targets) + " |"
        )
    for metric, title, digits in (("top1_regret", "Top-1 regret (points)", 2),
                                  ("top3_regret", "Top-3 regret (points)", 2),
                                  ("spearman", "Spearman", 3),
                                  ("weighted_tau", "Weighted tau (no interval)", 3),
                                  ("mae", "MAE of predicted accuracy (points)", 2)):  # fmt: skip
        lines += ["", f"## Headline scores: {title}", "",
                  "| score | " + " | ".join(f"{100 * float(f):g}%" for f in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]  # fmt: skip
        for name in rep["headline"]:
            cells = [_ci(tables[name][f].get(metric), digits, signed=False) for f in budgets]
            if any(c != "–" for c in cells):
                lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "## Best member of each family (chosen on the selection half)", "",
              "| family | bin | best | S (selection) | Kendall (report) | Δ vs LO [95% CI] | "
              "failed runs |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for fam, per_bin in rep["family_best"].items():
        for b, e in per_bin.items():
            d = e["report_minus_lo"]
            delta = f"{d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else "–"
            lines.append(
                f"| {fam} | {b} | `{e['best']}` | {e['S_selection']:+.3f} | "
                f"{e['report_kendall']:+.3f} | {delta} | {e['n_failed']} |"
            )
    if rep["fixed_minus_interval"]:
        lines += ["", "## Fixed-batch minus interval measurement (matched, Δ Kendall)", "",
                  "| score | bin | Δ [95% CI] |", "|---|---|---|"]  # fmt: skip
        for label, per_bin in rep["fixed_minus_interval"].items():
            for b, t in per_bin.items():
                lines.append(
                    f"| {label} | {b} | {t['delta']:+.3f} [{t['ci95'][0]:+.3f}, "
                    f"{t['ci95'][1]:+.3f}] |"
                )
    lines += ["", "## Calibration of the predicted final accuracy (report half)", "",
              "Coverage against each run's own final accuracy; recalibration factors "
              "(split-conformal) fixed on the selection half.", "",
              "| predictor | bin | 68% raw | 68% recal. | 95% raw | 95% recal. | median 95% "
              "width (points, recal.) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, per_bin in rep["calibration"].items():
        for b, c in per_bin.items():
            cells = [
                f"{c[k]['coverage']:.3f} [{c[k]['ci95'][0]:.3f}, {c[k]['ci95'][1]:.3f}]"
                for k in ("68/raw", "68/recalibrated", "95/raw", "95/recalibrated")
            ]
            mark = " (record)" if rep["record_predictor"].get(b) == name else ""
            lines.append(
                f"| `{name}`{mark} | {b} | "
                + " | ".join(cells)
                + f" | {c['95/recalibrated']['median_width_points']:.1f} |"
            )
    lines += ["", "## Leave-one-target-out selection", "",
              "| bin | distinct winners | = full winner | Kendall | Δ vs LO | NC winner − control |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for b, e in rep["loto_selection"].items():
        lines.append(
            f"| {b} | {e['distinct']} | {e['equals_full']}/{len(e['winners'])} | "
            f"{_ci(e['kendall'])} | {_ci(e['minus_lo'])} | {_ci(e['nc_minus_control'])} |"
        )
    lines += ["", "## Fitted models: leave one target out vs leave target and family out "
              "(mean Kendall)", "", "| model | bin | LOTO | LOTFO |", "|---|---|---|---|"]  # fmt: skip
    for name, per_bin in rep["d2_sensitivity"].items():
        for b, e in per_bin.items():
            lines.append(f"| `{name}` | {b} | {e['loto']:+.3f} | {e['lotfo']:+.3f} |")
    dropped = {t: m for t, m in rep["dropped_pairs"].items() if m}
    lines += ["", f"Dropped (target, model) pairs: {dropped or 'none'}. "
              f"Evaluation seconds: selection {sel['seconds']:.0f}, report {rep['seconds']:.0f}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_study(
    out_dir: str | Path, selection: Mapping[str, Any], report: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    out = Path(out_dir)
    files = {
        "selection": atomic_write_json(selection, out / "selection.json"),
        "selection_md": atomic_write_text(render_selection(selection), out / "selection.md"),
    }
    if report is not None:
        files["report"] = atomic_write_json(report, out / "report.json")
        files["markdown"] = atomic_write_text(render_report(report, selection), out / "report.md")
        files["plot"] = plot_kendall(report, out / "kendall_vs_budget.png")
    return files


def _yerr(entries) -> list[list[float]]:
    """Error bars from percentile intervals (a point may lie outside its interval: clipped)."""
    return [
        [max(e["value"] - e["ci95"][0], 0.0) for e in entries],
        [max(e["ci95"][1] - e["value"], 0.0) for e in entries],
    ]


def plot_kendall(rep: Mapping[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure  # lazy: matplotlib, only to draw a plot

    tables = rep["tables"]
    budgets = [k for k in next(iter(tables.values())) if k not in BINS]
    xs = [100 * float(f) for f in budgets]
    show = list(dict.fromkeys(
        ["last-observed"] + [d["score"] for d in rep["defaults"].values()]
        + [w[k] for w in rep["winners"].values() for k in ("W_nc", "W_non")]
        + [n for n in rep["headline"] if isinstance(try_parse_score(n), Extrapolation)][:2]
    ))  # fmt: skip
    fig = Figure(figsize=(12, 4.5))  # the Figure API: the user's backend is left alone
    axes = fig.subplots(1, 2)
    for i, name in enumerate(show):
        k = [tables[name][f]["kendall"] for f in budgets]
        d = [tables[name][f]["minus_lo"] for f in budgets]
        off = (i - len(show) / 2) * 0.012
        x = [v * (1 + off) for v in xs]
        axes[0].errorbar(x, [e["value"] for e in k],
                         yerr=_yerr(k),
                         fmt="-o", ms=3, capsize=2, label=name)  # fmt: skip
        if name != "last-observed":
            axes[1].errorbar(x, [e["value"] for e in d],
                             yerr=_yerr(d),
                             fmt="-o", ms=3, capsize=2, label=name)  # fmt: skip
    ceiling = rep["noise_ceiling"]["kendall"]["value"]
    axes[0].axhline(ceiling, color="black", lw=1, label=f"noise ceiling ({ceiling:.2f})")
    axes[1].axhline(0, color="black", lw=1)
    for ax, title in zip(axes, ("Kendall tau (report half)", "Δ Kendall vs last observed")):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(xs, [f"{v:g}%" for v in xs])
        ax.set_xlabel("early budget (% of T)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
