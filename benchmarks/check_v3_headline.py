"""Independent check of bench-v3's headline numbers (docs/benchmark-v3-protocol.md, section 6).

Recomputes, from ``bench-v3.json`` alone with numpy, scipy and scikit-learn (none of ncap's scoring
code), on the report half (scored seed 1, truth seed 0):

- LO's mean Kendall tau-b over the targets at each budget;
- W_all(f) − LO at each budget where W_all(f) is a score this script implements on its own: the
  last observed accuracy, LogME, the parameter count, the source accuracy, TSE-E1, beta_eff's
  decay slope (``dyn/{interval,fixed}/{variant}``: the OLS slope of ln beta_eff on ln epoch over
  the points within the budget with epoch > 0 and a finite positive beta_eff, at least 3, times
  the orientation the study froze on its selection half, ``selection.json`` "sigma"), their rank
  averages (``ravg/...``; a candidate missing a component is unrated and ranks last), and the
  portable fitted model ``fit/portable`` with the strict cross-fitting (other dataset family and
  other architecture family only);

and compares each with ``report.json`` (``--study``); it exits 1 on a difference above 1e-9 and 2
when a winner is a score it does not implement (it says which).

    python benchmarks/check_v3_headline.py benchmarks/results/bench-v3.json \\
        --study benchmarks/results/bench-v3-study
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, rankdata
from sklearn.linear_model import BayesianRidge

EPS = 1e-3  # the logit's clip (protocol: bench-v2's D2)


def final(run: dict) -> float:
    """Mean validation accuracy over the points of the last epoch (epoch > T - 1)."""
    last = run["points"][-1]["epoch"]
    return float(
        np.mean([p["val_accuracy"] for p in run["points"] if p["epoch"] > last - 1 + 1e-9])
    )


def budget_points(run: dict, epochs: float, f: float) -> list[dict]:
    max_step = int(round(f * epochs * run["steps_per_epoch"]))
    return [p for p in run["points"] if p["step"] <= max_step]


def logit(p):
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q / (1 - q))


def tse_e1(run: dict, epochs: float, f: float) -> float:
    """Minus the training loss summed over the last epoch before the last point within the budget
    (Ru et al.'s TSE-E, E = 1): point p covers the epochs (e_{p-1}, e_p] with its mean loss, an
    interval straddling the boundary counting in proportion."""
    spe = run["steps_per_epoch"]
    pts = budget_points(run, epochs, f)
    boundary = pts[-1]["step"] / spe - 1.0
    total, prev = 0.0, 0
    for p in pts:
        start, end = prev / spe, p["step"] / spe
        prev = p["step"]
        weight = max(0.0, end - max(start, boundary))
        if weight == 0.0:
            continue
        loss = p.get("train_loss")
        if loss is None or not math.isfinite(loss):
            return math.nan
        total += loss * weight
    return -total


def lo_slope(points: list[dict]) -> float:
    pts = [p for p in points if p["epoch"] > 0]
    if len(pts) < 2:
        return math.nan
    x = np.log([p["epoch"] for p in pts])
    if np.ptp(x) == 0:
        return math.nan
    return float(np.polyfit(x, logit(np.array([p["val_accuracy"] for p in pts])), 1)[0])


def decay_slope(points: list[dict], field: str, variant: str) -> float:
    """OLS slope of ln beta_eff on ln epoch (NaN with fewer than 3 usable points)."""
    xs, ys = [], []
    for p in points:
        b = (p.get(field) or {}).get(variant)
        if b is not None and math.isfinite(b) and b > 0 and p["epoch"] > 0:
            xs.append(math.log(p["epoch"]))
            ys.append(math.log(b))
    if len(xs) < 3 or np.ptp(xs) == 0:
        return math.nan
    return float(np.polyfit(xs, ys, 1)[0])


class Data:
    sigma: dict[str, float] = {}  # the study's orientation of the dynamics features

    def __init__(self, results: dict) -> None:
        plan = results["plan"]
        self.epochs = float(plan["epochs"])
        self.models = list(plan["models"])
        self.targets = [t["key"] for t in plan["targets"]]
        self.tfam = {t["key"]: t["family"] for t in plan["targets"]}
        self.mfam = {m: results["zoo"][m]["family"] for m in self.models}
        self.runs = {(r["target"], r["model"], r["seed"]): r for r in results["runs"]}
        self.free = results["training_free"]

    def kept(self, t: str) -> list[str]:
        return [m for m in self.models if all((t, m, s) in self.runs for s in (0, 1))]

    def run_score(self, name: str, t: str, m: str, s: int, f: float) -> float:
        run, free = self.runs[(t, m, s)], self.free[t][m]
        pts = budget_points(run, self.epochs, f)
        if name == "last-observed":
            return float(pts[-1]["val_accuracy"])
        if name == "tse-e1":
            return tse_e1(run, self.epochs, f)
        if name.startswith("dyn/") and name.endswith("/slope"):
            _, measurement, variant, _ = name.split("/")
            field = {"interval": "beta_eff", "fixed": "beta_eff_fixed"}[measurement]
            return self.sigma[name] * decay_slope(pts, field, variant)
        key = {"logme": "logme", "param-count": "parameters", "source-accuracy": "source_accuracy"}
        if name in key:
            v = free.get(key[name])
            return float(v) if v is not None and math.isfinite(float(v)) else math.nan
        raise NotImplementedError(name)

    def features(self, t: str, m: str, s: int, f: float) -> list[float]:
        run = self.runs[(t, m, s)]
        pts = budget_points(run, self.epochs, f)
        lo = float(logit(pts[-1]["val_accuracy"]))
        logme = self.free[t][m].get("logme")
        logme = float(logme) if logme is not None and math.isfinite(float(logme)) else math.nan
        return [lo, lo_slope(pts), tse_e1(run, self.epochs, f), logme]

    def scores(self, name: str, t: str, s: int, f: float) -> np.ndarray:
        models = self.kept(t)
        if name.startswith("ravg/"):
            alias = {"lo": "last-observed", "params": "param-count", "tse-e1": "tse-e1",
                     "logme": "logme"}  # fmt: skip
            dyn = {c: c + "/slope" for c in name[5:].split("+") if c.startswith("dyn/")}
            unknown = [c for c in name[5:].split("+") if c not in alias and c not in dyn]
            if unknown:
                raise NotImplementedError(f"{name} (component {', '.join(unknown)})")
            parts = [alias.get(c) or dyn[c] for c in name[5:].split("+")]
            ranks, failed = [], np.zeros(len(models), dtype=bool)
            for c in parts:
                v = np.array([self.run_score(c, t, m, s, f) for m in models])
                failed |= ~np.isfinite(v)
                v = np.where(np.isfinite(v), v, -np.inf)
                ranks.append((rankdata(v) - 1) / max(len(v) - 1, 1))
            out = np.mean(ranks, axis=0)
            out[failed] = np.nan  # a failed component fails the candidate
            return out
        if name == "fit/portable":
            return self.fit_portable(t, s, f)
        return np.array([self.run_score(name, t, m, s, f) for m in models])

    def fit_portable(self, t: str, s: int, f: float) -> np.ndarray:
        """BayesianRidge (sklearn defaults) on z-scored LO, slope, TSE-E1, LogME of the runs of
        other dataset families and other architecture families; response logit(truth) − LO."""
        out = []
        for m in self.kept(t):
            xs, ys = [], []
            for t2 in self.targets:
                if self.tfam[t2] == self.tfam[t]:
                    continue
                for m2 in self.kept(t2):
                    if self.mfam[m2] == self.mfam[m]:
                        continue
                    x = self.features(t2, m2, s, f)
                    y = float(logit(final(self.runs[(t2, m2, 1 - s)]))) - x[0]
                    if np.isfinite(x).all():
                        xs.append(x)
                        ys.append(y)
            x, y = np.array(xs), np.array(ys)
            mean, sd = x.mean(axis=0), x.std(axis=0)
            keep = sd > 0
            model = BayesianRidge().fit((x[:, keep] - mean[keep]) / sd[keep], y)
            z = np.array(self.features(t, m, s, f))
            if not np.isfinite(z).all():
                out.append(math.nan)
                continue
            gain = model.predict(((z[keep] - mean[keep]) / sd[keep])[None, :])[0]
            out.append(1 / (1 + math.exp(-(z[0] + gain))))
        return np.array(out)

    def kendall(self, name: str, f: float, s: int = 1) -> float:
        taus = []
        for t in self.targets:
            models = self.kept(t)
            x = self.scores(name, t, s, f)
            truth = np.array([final(self.runs[(t, m, 1 - s)]) for m in models])
            if not np.isfinite(x).any():
                taus.append(-1.0)
                continue
            x = np.where(np.isfinite(x), x, np.nanmin(x) - 1)  # failures rank last
            tau = kendalltau(x, truth).statistic
            taus.append(0.0 if not np.isfinite(tau) else float(tau))
        return float(np.mean(taus))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--study", required=True, help="the study folder (report.json)")
    args = parser.parse_args(argv)
    data = Data(json.loads(Path(args.results).read_text()))
    report = json.loads((Path(args.study) / "report.json").read_text())
    data.sigma = json.loads((Path(args.study) / "selection.json").read_text())["sigma"]
    bad, missing = 0, []
    for key, d in report["defaults"].items():
        f = float(key)
        lo = data.kendall("last-observed", f)
        ref = report["tables"]["last-observed"][key]["kendall"]["value"]
        ok = abs(lo - ref) <= 1e-9
        bad += not ok
        print(
            f"{100 * f:g}%: LO mean Kendall {lo:+.12f} (report {ref:+.12f}) {'ok' if ok else 'DIFFERS'}"
        )
        # the rank average without beta_eff (the Q2 control), which this script implements
        control = "ravg/lo+logme"
        if control in report["tables"]:
            delta = data.kendall(control, f) - lo
            ref = report["tables"][control][key]["minus_lo"]["value"]
            ok = abs(delta - ref) <= 1e-9
            bad += not ok
            print(f"{100 * f:g}%: {control} − LO {delta:+.12f} (report {ref:+.12f}) "
                  f"{'ok' if ok else 'DIFFERS'}")  # fmt: skip
        w = d["W_all"]
        if w == "last-observed":
            print(f"{100 * f:g}%: W_all is LO (difference 0)")
            continue
        try:
            delta = data.kendall(w, f) - lo
        except NotImplementedError:
            missing.append(f"{w} at {100 * f:g}%")
            continue
        ref = d["W_all_minus_lo"]["value"]
        ok = abs(delta - ref) <= 1e-9
        bad += not ok
        print(
            f"{100 * f:g}%: {w} − LO {delta:+.12f} (report {ref:+.12f}) {'ok' if ok else 'DIFFERS'}"
        )
    if missing:
        print(f"not implemented independently here: {missing}")
    return 1 if bad else (2 if missing else 0)


if __name__ == "__main__":
    sys.exit(main())
