"""What ncap ships from its studies (issues 14 and 26): the defaults per budget and LO's residuals
come from the committed bench-v3 study, fit/base (bench-v2's default, now a named alternative) from
bench-v2's; the shipped fit reproduces bench-v2's own figures, and ``ncap rank`` scores by it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from ncap.predict import recommended, shipped
from ncap.predict.features import BASE_FEATURES, base_features, logit, sigmoid
from ncap.predict.fitted import FittedGain
from ncap.predict.recommended import parse_score, predicted_interval
from ncap.predict.scores import run_score
from ncap.predict.settings import PredictorSettings
from ncap.ranking.scoring import add_predictions, score_candidates

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "results" / "bench-v2.json"
STUDY = ROOT / "benchmarks" / "results" / "bench-v2-study"
BENCH_V3 = ROOT / "benchmarks" / "results" / "bench-v3.json"
STUDY_V3 = ROOT / "benchmarks" / "results" / "bench-v3-study"
DATA = ROOT / "src" / "ncap" / "predict" / "data"


def _json(path: Path):
    return json.loads(path.read_text())


def test_the_shipped_settings_are_the_committed_v3_studys_with_fit_base_carried_over():
    """recommended.json is ``ncap bench export-recommended benchmarks/results/bench-v3.json``: the
    bench-v3 study's defaults per budget, orientations and factors; LO's residuals per budget
    recomputed from bench-v3; fit/base (bench-v2's default) carried over with its bench-v2
    factors and source."""
    from ncap.bench.study.export import fitted_rows, recommended_settings
    from ncap.bench.study.stages import data_sha256

    sha = data_sha256(BENCH_V3)
    report = _json(STUDY_V3 / "report.json")
    fresh = recommended_settings(
        _json(STUDY_V3 / "selection.json"), report, source=BENCH_V3.name, sha=sha
    )
    shipped_file = _json(DATA / "recommended.json")
    residuals = shipped_file.pop("residuals")
    carried = shipped_file.pop("carried")
    assert set(carried) == {"fit/base"} and carried["fit/base"]["source"] == BENCH.name
    assert carried["fit/base"]["data_sha256"] == data_sha256(BENCH)
    assert shipped_file["fits"].pop("fit/base") == list(BASE_FEATURES)
    v2_factors = _json(STUDY / "selection.json")["recalibration"]["fit/base"]
    assert shipped_file["recalibration"].pop("fit/base") == {
        f: {q: k[q] for q in ("68", "95")} for f, k in v2_factors.items()
    }
    assert shipped_file == json.loads(json.dumps(fresh))
    # the default per budget is the report's, its note where nothing beat LO
    assert recommended.RECOMMENDED_BY_BUDGET == {
        float(f): {"score": d["score"], "note": d["message"]} for f, d in report["defaults"].items()
    }
    assert recommended.RECOMMENDED_BY_BUDGET[0.2] == {
        "score": "last-observed",
        "note": "nothing beat the last observed accuracy reliably at this budget",
    }
    # LO's residuals: logit(final of the other seed's run) - logit(LO), every kept run of bench-v3
    rows = fitted_rows(_json(BENCH_V3), fits={"lo": ("lo",)}, workers=1)["lo"]["budgets"]
    for f, r in rows.items():
        assert residuals["last-observed"][f] == [g for g in r["gain"] if g is not None]
        assert len(residuals["last-observed"][f]) == len(r["runs"]) == 1520
    # fitted.json is still bench-v2's (the v3 study adopted no fitted score)
    assert _json(DATA / "fitted.json")["data_sha256"] == data_sha256(BENCH)


def test_the_shipped_rows_are_a_fresh_export_of_the_benchmark():
    """fitted.json's rows equal a fresh export of bench-v2 (to the 7 significant digits shipped;
    a feature that is zero in exact arithmetic, LO's slope on a flat start, comes out as ~1e-16
    noise that differs between BLAS builds)."""
    from ncap.bench.study.export import fitted_rows

    rows = fitted_rows(_json(BENCH), workers=1)
    shipped_rows = _json(DATA / "fitted.json")["fits"]
    assert rows.keys() == shipped_rows.keys()
    for name, spec in rows.items():
        assert spec["features"] == shipped_rows[name]["features"]
        for f, r in spec["budgets"].items():
            s = shipped_rows[name]["budgets"][f]
            assert r["runs"] == s["runs"]
            for key in ("x", "gain"):
                fresh = np.array(r[key], dtype=np.float64)
                assert np.allclose(fresh, np.array(s[key], dtype=np.float64), rtol=1e-6,
                                   atol=1e-12, equal_nan=True)  # fmt: skip


def _rows(budget: float):
    spec = _json(DATA / "fitted.json")["fits"]["fit/base"]
    rows = spec["budgets"][str(budget)]
    x = np.array(rows["x"], dtype=np.float64)
    return x, np.array(rows["gain"], dtype=np.float64), rows["runs"], spec["features"]


@pytest.mark.parametrize("budget", [0.05, 0.1])
def test_leave_one_target_out_on_the_shipped_rows_reproduces_the_studys_report(budget):
    """The study's fit/base on its report half (seed 1, truth = seed 0, each target fitted on the
    others): per-target Kendall and MAE recomputed from the shipped rows (7 significant digits)."""
    from ncap.bench.evaluate import final_accuracy, unpack_results

    runs_of = unpack_results(_json(BENCH))[4]
    x, gain, runs, features = _rows(budget)
    report = _json(STUDY / "report.json")["tables"]["fit/base"][str(budget)]["by_target"]
    lo = x[:, features.index("lo")]
    seed = np.array([r[2] for r in runs])
    target = np.array([r[0] for r in runs])
    for t, expected in report.items():
        train = (seed == 1) & (target != t)
        test = (seed == 1) & (target == t)
        model = FittedGain.fit(x[train], gain[train], features)
        cols = [features.index(f) for f in model.features]
        mean, _ = model.predict(x[test][:, cols])
        predicted = sigmoid(lo[test] + mean)
        truth = [final_accuracy(runs_of[(t, r[1], 0)]) for r, k in zip(runs, test) if k]
        # the shipped gain is logit(truth) - lo, with the truth clipped at 1e-3 (ties at 1.0)
        clipped = np.clip(truth, 1e-3, 1 - 1e-3)
        assert sigmoid(lo[test] + gain[test]) == pytest.approx(clipped, abs=1e-6)
        assert kendalltau(predicted, truth).statistic == pytest.approx(
            expected["kendall"], abs=1e-9
        )
        assert 100 * np.mean(np.abs(predicted - truth)) == pytest.approx(expected["mae"], abs=0.05)


def test_fitted_gain_picks_the_nearest_budget_and_the_given_features():
    fit = shipped.fitted_gain("fit/base", BASE_FEATURES, 0.06)
    assert fit.budget == 0.05 and fit.model.features == BASE_FEATURES
    assert shipped.fitted_gain("fit/base", BASE_FEATURES, None).budget == shipped.UNKNOWN_BUDGET
    small = shipped.fitted_gain("fit/base", ("lo", "logme"), 0.3)
    assert small.budget == 0.2 and small.model.features == ("lo", "logme")
    # the same as fitting the rows' two columns directly
    x, gain, _, features = _rows(0.2)
    direct = FittedGain.fit(x[:, [0, features.index("logme")]], gain, ("lo", "logme"))
    assert small.model.coef == direct.coef and small.model.n_rows == direct.n_rows
    with pytest.raises(Exception, match="no feature"):
        shipped.fitted_gain("fit/base", ("accuracy",), 0.1)


def _record(name, accs, *, params=1e5, width=64, logme=-0.5, source=0.9):
    points = [
        {"step": 4 * (i + 1), "epoch": 0.5 * (i + 1), "val_accuracy": a, "train_loss": 1.2 - a}
        for i, a in enumerate(accs)
    ]
    backbone = {"parameters": params, "num_features": width, "logme": logme}
    if source is not None:
        backbone["source_accuracy"] = source
    return {"name": name, "status": "ok", "trajectory": points, "backbone": backbone,
            "predicted_accuracy": None, "fit": None}  # fmt: skip


def test_ncap_rank_scores_by_the_shipped_fit():
    records = [
        _record("a", [0.55, 0.62, 0.66, 0.70]),
        _record("b", [0.50, 0.60, 0.69, 0.74], params=3e6, width=512, logme=-0.2),
        _record("c", [0.58, 0.61, 0.63, 0.64], params=2e4, width=32, logme=-0.9),
    ]
    notes: list[str] = []
    spec = parse_score("fit/base")
    order = score_candidates(records, spec, budget_steps=16, steps_per_epoch=8, full_epochs=20,
                             notes=notes)  # fmt: skip
    # 16 steps of 160: 10% of T, so the 10% fit
    fit = shipped.fitted_gain("fit/base", BASE_FEATURES, 0.1)
    for r in records:
        lo = r["trajectory"][-1]["val_accuracy"]
        tse = run_score("tse-e1", r["trajectory"], 16, {"steps_per_epoch": 8}).value
        feats = base_features(r["trajectory"], 16, r["backbone"], last_observed=lo, tse_e1=tse)
        mean, sd = fit.model.predict([[feats[f] for f in fit.model.features]])
        assert r["score"]["value"] == pytest.approx(float(sigmoid(logit(lo) + mean[0])), abs=1e-12)
        assert r["score"]["link_sd"] == pytest.approx(float(sd[0]))
        assert r["score"]["fit"] == {"budget_fraction": 0.1, "features": list(BASE_FEATURES),
                                     "rows": fit.model.n_rows}  # fmt: skip
    assert order == sorted("abc", key=lambda n: -records["abc".index(n)]["score"]["value"])
    assert not [n for n in notes if "left out" in n]
    add_predictions(records, PredictorSettings(), 0.1)
    r = records[0]
    expected = predicted_interval("fit/base", "logit", r["score"]["link_mean"],
                                  r["score"]["link_sd"], 0.1)  # fmt: skip
    assert r["prediction"] == {"by": "fit/base", "accuracy": r["score"]["value"]} | expected
    assert expected["calibrated"] and expected["95"][0] < r["score"]["value"] < expected["95"][1]


def test_a_feature_some_candidates_lack_is_left_out_for_all_with_a_note():
    records = [
        _record("zoo", [0.55, 0.62, 0.66, 0.70]),
        _record("timm", [0.50, 0.60, 0.69, 0.74], source=None, params=5e9),
    ]
    notes: list[str] = []
    score_candidates(records, parse_score("fit/base"), budget_steps=16, steps_per_epoch=8,
                     full_epochs=None, notes=notes)  # fmt: skip
    assert all(r["score"]["value"] is not None for r in records)
    assert "logit_source" not in records[0]["score"]["fit"]["features"]
    assert records[0]["score"]["fit"]["budget_fraction"] == shipped.UNKNOWN_BUDGET
    text = " ".join(notes)
    assert "feature logit_source left out" in text and "timm" in text
    assert "log10_parameters of timm lies outside the range" in text  # 5e9 parameters
    assert "full budget is unknown" in text
    # a candidate without an evaluation point in the budget is unrated, with the reason
    records.append(_record("late", []))
    score_candidates(records, parse_score("fit/base"), budget_steps=16, steps_per_epoch=8,
                     full_epochs=20)  # fmt: skip
    assert records[2]["score"]["value"] is None and "lo" in records[2]["score"]["reason"]


def test_a_score_that_predicts_none_shows_los_distribution_else_the_extrapolation(monkeypatch):
    """A ranking score that predicts no accuracy (a rank average, tse-e1): the prediction column
    is the last observed accuracy's empirical distribution (bench-v3's residuals); without shipped
    residuals, the run's own extrapolation."""
    from ncap.predict.recommended import empirical_prediction
    from ncap.predict.scores import nc_name
    from ncap.ranking import scoring

    r = _record("a", [0.55, 0.62, 0.7])
    r |= {"predicted_accuracy": 0.8, "fit": {"link": "logit", "link_mean": 1.2, "link_std": 0.3}}
    score_candidates([r], parse_score("tse-e1"), budget_steps=8, steps_per_epoch=8,
                     full_epochs=10)  # fmt: skip
    predictor = PredictorSettings(variant="abs-mean", link="logit")  # the fit above is logit's
    add_predictions([r], predictor, 0.1, budget_steps=8)  # 8 steps: the first two points
    expected = empirical_prediction("last-observed", 0.62, 0.1)
    assert r["prediction"]["by"] == "last-observed"
    assert r["prediction"]["accuracy"] == expected["accuracy"] > 0.62
    assert r["prediction"]["95"] == expected["95"] and r["prediction"]["calibrated"] is True

    monkeypatch.setattr(scoring, "shipped_residuals", lambda name, fraction: None)
    add_predictions([r], predictor, 0.1, budget_steps=8)
    assert r["prediction"]["by"] == nc_name(predictor) and r["prediction"]["accuracy"] == 0.8
    lo, hi = r["prediction"]["95"]
    assert lo < sigmoid(1.2) < hi and math.isclose(logit(hi) - 1.2, 1.2 - logit(lo), rel_tol=1e-6)


def test_a_non_finite_logme_is_left_out_with_the_reason(monkeypatch):
    """LogME can come out NaN for degenerate features (its evidence has log(alpha) terms with
    alpha = 0, seen with randomly initialised torchvision/timm models in test_real_zoo.py): the
    candidate keeps going and the score leaves LogME out."""
    from torch import nn

    import ncap.ranking.training_free as training_free
    from ncap.data.registry import load_dataset
    from ncap.models.backbone import Backbone
    from ncap.training.config import FinetuneConfig

    class Linear(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :4].float()

    from ncap.predict.logme import logme
    from ncap.training.features import backbone_features

    data = load_dataset("digits", n_train=1100, n_val=32)
    backbone = Backbone("lin", Linear(), 4)
    out = training_free.training_free_scores(backbone, data, FinetuneConfig())
    # a ranking's LogME reads the first 1024 training images (bench-v2's largest split)
    feats = backbone_features(backbone.module, None, data, FinetuneConfig(), max_images=1024)
    assert feats.shape == (1024, 4) and training_free.LOGME_IMAGES == 1024
    expected = logme(feats.double().numpy(), data.y_train[:1024].numpy())
    assert out["logme"] == expected and out["logme_seconds"] > 0
    monkeypatch.setattr(training_free, "logme", lambda f, y: float("nan"))
    messages: list[str] = []
    out = training_free.training_free_scores(backbone, data, FinetuneConfig(),
                                             log=messages.append)  # fmt: skip
    assert "logme" not in out and "degenerate" in out["logme_error"]
    assert messages and "lin" in messages[0] and "leaves LogME out" in messages[0]
