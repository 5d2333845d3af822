import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ncap.metrics import ranking_metrics

REPO = Path(__file__).resolve().parents[2]


def test_ranking_metrics_against_scipy():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.5, 0.95, 12)
    scores = truth + rng.normal(scale=0.05, size=12)
    m = ranking_metrics(list(scores), truth, predicts_accuracy=True)
    assert m["kendall"] == pytest.approx(stats.kendalltau(scores, truth).statistic, rel=1e-12)
    assert m["weighted_tau"] == pytest.approx(stats.weightedtau(scores, truth).statistic, rel=1e-12)
    assert m["spearman"] == pytest.approx(stats.spearmanr(scores, truth).statistic, rel=1e-12)
    assert m["pearson"] == pytest.approx(stats.pearsonr(scores, truth).statistic, rel=1e-12)
    assert m["mae"] == pytest.approx(100 * np.mean(np.abs(scores - truth)), rel=1e-12)
    assert m["top1_regret"] == pytest.approx(100 * (truth.max() - truth[np.argmax(scores)]))
    assert m["top3_regret"] == pytest.approx(
        100 * (truth.max() - truth[np.argsort(-scores)[:3]].max())
    )
    assert 0.0 <= m["top3_regret"] <= m["top1_regret"]
    assert m["n_failed"] == 0 and m["n_models"] == 12


def test_ranking_metrics_failures_rank_last_and_perfect_order():
    truth = [0.9, 0.8, 0.7, 0.6]
    perfect = ranking_metrics([4.0, 3.0, 2.0, 1.0], truth)
    assert perfect["kendall"] == pytest.approx(1.0) and perfect["top1_regret"] == 0.0
    assert perfect["mae"] is None  # scores are not accuracies
    failed_top = ranking_metrics([None, 3.0, 2.0, 1.0], truth)
    assert failed_top["n_failed"] == 1
    assert failed_top["kendall"] == pytest.approx(stats.kendalltau([0.0, 3, 2, 1], truth).statistic)
    assert failed_top["top1_regret"] == pytest.approx(10.0)
    nothing = ranking_metrics([None] * 4, truth)
    assert nothing["kendall"] is None and nothing["n_failed"] == 4


def test_smoke_build_and_evaluate(tmp_path, monkeypatch):
    from ncap.bench.build import build_benchmark
    from ncap.bench.evaluate import evaluate_results, nc_grid, write_report
    from ncap.bench.plans import SMOKE_PLAN

    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    results = build_benchmark(out, SMOKE_PLAN, log=None)
    assert json.loads(out.read_text())["format"] == 1
    assert len(results["runs"]) == len(SMOKE_PLAN.models) * len(SMOKE_PLAN.seeds)
    run = results["runs"][0]
    steps_per_epoch = run["steps_per_epoch"]
    assert [p["step"] for p in run["points"]][:4] == [
        steps_per_epoch // 4 * k for k in (1, 2, 3, 4)
    ]
    assert set(results["training_free"]["digits"]["mlp-xs"]) >= {
        "logme",
        "parameters",
        "source_accuracy",
    }
    # a second build call resumes: nothing is run again
    again = build_benchmark(out, SMOKE_PLAN, log=None)
    assert again["runs"] == results["runs"]

    evaluation = evaluate_results(results, budgets=(0.5, 1.0))
    assert evaluation["chosen_default"] in {
        f"nc/{s.variant}/{s.features}/b{s.burn_in}/{s.link}" for s in nc_grid()
    }
    assert set(evaluation["report"]) >= {
        "last-observed",
        "tse",
        "tse-e1",
        "learning-curve",
        "logme",
    }
    assert evaluation["protocol"] == "seeds"
    ceiling = evaluation["noise_ceiling"]["mean"]["kendall"]
    assert ceiling is None or -1.0 <= ceiling <= 1.0
    files = write_report(evaluation, tmp_path / "report")
    assert "Kendall tau" in files["markdown"].read_text()
    assert files["plot"].read_bytes()[:4] == b"\x89PNG"


def test_nas_smoke_build_and_evaluate(tmp_path, monkeypatch):
    from ncap.bench.build import build_benchmark
    from ncap.bench.evaluate import evaluate_results
    from ncap.bench.plans import NAS_SMOKE_PLAN

    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "cache"))
    results = build_benchmark(tmp_path / "nas.json", NAS_SMOKE_PLAN, log=None)
    # 4 architectures, the first 2 with a second seed for the noise ceiling
    assert len(results["runs"]) == 6
    free = results["training_free"]["digits-14px"]
    first = free[NAS_SMOKE_PLAN.models[0]]
    assert set(first["proxies"]) >= {
        "grad_norm",
        "snip",
        "grasp",
        "fisher",
        "synflow",
        "jacob_cov",
        "naswot",
        "flops",
    }
    evaluation = evaluate_results(results, budgets=(0.5, 1.0))
    assert evaluation["protocol"] == "models"
    assert evaluation["noise_ceiling"]["by_target"]["digits-14px"]["n_models"] == 2
    assert {"synflow", "naswot", "tse", "last-observed"} <= set(evaluation["report"])
    assert len(evaluation["split"]["selection"]["models"]) == 2


def test_rank_default_is_the_benchmark_choice():
    """`ncap rank`'s predictor default is the nc/interval form over the cheap variants (the ones
    tracked per step by default) with the logit link (its prediction is an accuracy in (0, 1)),
    with the best selection-half S of the bench-v2 study, averaged over its early and late bins."""
    from ncap.predict.capacitance import PredictorSettings
    from ncap.predict.scores import nc_name
    from ncap.training.config import FinetuneConfig

    path = REPO / "benchmarks" / "results" / "bench-v2-study" / "selection.json"
    if not path.exists():
        pytest.skip("no committed bench-v2 selection yet")
    s = json.loads(path.read_text())["S"]
    cheap = FinetuneConfig().variants
    forms = [
        name
        for name in s["early"]
        if name.startswith("nc/interval/")
        and name.split("/")[2] in cheap
        and name.endswith("/logit")
    ]
    mean = {n: (s["early"][n] + s["late"][n]) / 2 for n in forms if s["late"].get(n) is not None}
    chosen = max(mean, key=mean.get)
    assert nc_name(PredictorSettings()) == chosen
    assert PredictorSettings().variant in cheap
