"""Successive halving: rung decisions, the continued runs equal straight ones, kill and resume."""

import json

import pytest

import ncap.ranking.executors
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.models.registry import create_backbone
from ncap.predict.capacitance import PredictorSettings
from ncap.ranking.halving import HalvingSettings, plan_rungs
from ncap.ranking.halving_core import decide, halving_budgets, rung_steps
from ncap.ranking.rank import rank
from ncap.ranking.rung_scores import make_rung_score
from ncap.ranking.spec import Execution, Horizon
from ncap.ranking.strategies import Halving
from ncap.training.checkpoint import Segment
from ncap.training.config import FinetuneConfig
from ncap.training.loop import finetune

# 384 images / 64 = 6 steps per epoch; budgets 1, 2, 4 epochs -> steps 6, 12, 24
CONFIG = FinetuneConfig(epochs=4.0, eval_every=2, batch_size=64, probe_hidden=(16, 12, 8))
HALVING = HalvingSettings(eta=2, min_budget=1.0, score="last-observed")
MODELS = ["mlp-s", "lenet", "test-nan", "cnn-s"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=384, n_val=128)


def _no_time(points):
    return [{k: v for k, v in p.items() if k != "wall_time"} for p in points]


# -- the decisions, on synthetic trajectories ------------------------------------------------------
def _traj(accs):
    return [{"step": 2 * (i + 1), "val_accuracy": a, "beta_eff": {}} for i, a in enumerate(accs)]


def test_budgets_steps_and_rung_decisions():
    assert halving_budgets(1, 2, 4) == (1.0, 2.0, 4.0)
    assert halving_budgets(0.5, 3, 4) == (0.5, 1.5, 4.0)
    assert rung_steps((1.0, 2.0, 4.0), 6) == (6, 12, 24)
    with pytest.raises(ConfigError, match="not increasing"):
        rung_steps((0.1, 0.2), 4)
    with pytest.raises(ConfigError, match="eta"):
        halving_budgets(1, 1, 4)
    score = make_rung_score("last-observed", PredictorSettings())
    trajs = {"a": _traj([0.2, 0.6]), "b": _traj([0.5, 0.4]), "c": _traj([0.1, 0.7]), "d": []}
    scores = {n: score(t, 0.25) for n, t in trajs.items()}
    assert scores == {"a": 0.6, "b": 0.4, "c": 0.7, "d": None}
    d = decide(scores, list(trajs), eta=2, last=False)
    assert d.ranked == ("c", "a", "b", "d") and d.kept == ("c", "a")
    d3 = decide(scores, list(trajs), eta=3, last=False, failed={"a"})  # ceil(4/3) = 2, a failed
    assert d3.ranked == ("c", "b", "a", "d") and d3.kept == ("c", "b")
    d15 = decide(scores, list(trajs), eta=1.5, last=False, failed={"a"})  # 3 kept, but a failed
    assert d15.kept == ("c", "b") and d15.dropped == ("a", "d")
    assert decide({"x": 0.5, "y": 0.5}, ["y", "x"], eta=2, last=False).kept == ("y",)  # tie
    assert decide(scores, list(trajs), eta=2, last=True).kept == ("c",)


def test_predicted_score_is_the_prediction_ncap_rank_makes():
    from ncap.predict.capacitance import predict_from_points

    predictor = PredictorSettings()
    points = [
        {"step": s, "val_accuracy": 0.5 + 0.03 * s, "beta_eff": {predictor.variant: 1.0 / s}}
        for s in range(1, 7)
    ]
    score = make_rung_score("predicted", predictor)
    expected = predict_from_points(points, predictor, 6)["predicted_accuracy"]
    assert score(points, 0.5) == expected
    assert score(points[:2], 0.5) is None  # too few points for the fit


# -- real runs -------------------------------------------------------------------------------------
def test_halving_run_continues_each_candidate_exactly(tiny_zoo, tmp_path, digits):
    result = rank(MODELS, digits, out_dir=tmp_path / "h", config=CONFIG, strategy=Halving(HALVING))
    data = json.loads((tmp_path / "h" / "results.json").read_text())
    rungs = data["rungs"]
    assert [r["steps"] for r in rungs] == [6, 12]  # 4 -> 2 -> 1: ends when one is left
    assert (
        rungs[0]["ranked"][-1] == "test-nan"
        and "failed at rung 0" in rungs[0]["dropped"]["test-nan"]
    )
    assert len(rungs[0]["kept"]) == 2 and len(rungs[1]["kept"]) == 1
    by_name = {c["name"]: c for c in data["candidates"]}
    for r in rungs:  # the scores are the last observed accuracies at the rung's step
        for name in r["kept"]:
            point = next(p for p in by_name[name]["trajectory"] if p["step"] == r["steps"])
            assert r["scores"][name] == point["val_accuracy"]
    assert data["ranking"][0] == rungs[-1]["kept"][0]
    assert set(data["ranking"]) == {"mlp-s", "lenet", "cnn-s"}
    steps = {n: c["steps"] for n, c in by_name.items()}
    assert sorted(steps.values()) == [0, 6, 12, 12]
    assert by_name["test-nan"]["halving"]["dropped_at_rung"] == 0
    cost = data["cost"]
    assert cost["steps"] == 30 and cost["full_steps"] == 24 and cost["full_epochs"] == 4.0
    assert cost["fraction_steps"] == pytest.approx(30 / 96)
    assert 0 < cost["fraction"] < 1
    assert not list((tmp_path / "h" / "checkpoints").glob("*.pt"))  # all dropped or finished
    assert (tmp_path / "h" / "rungs.png").read_bytes()[:4] == b"\x89PNG"
    # a continued candidate's trajectory is that of one straight run to the same step
    winner = rungs[-1]["kept"][0]
    config = plan_rungs(HALVING, CONFIG, 384)[0]
    backbone = create_backbone(winner)
    straight = finetune(backbone.module, backbone.num_features, digits, config,
                        input_spec=backbone.input_spec, extra_eval_steps=(6, 12, 24),
                        segment=Segment(stop_at=12))  # fmt: skip
    assert _no_time(by_name[winner]["trajectory"]) == _no_time(straight.points)
    assert result.ranking == data["ranking"]


def test_kill_mid_rung_and_resume(tiny_zoo, tmp_path, digits, monkeypatch):
    reference = rank(
        MODELS, digits, out_dir=tmp_path / "ref", config=CONFIG, strategy=Halving(HALVING)
    )
    original = ncap.ranking.executors.run_candidate
    calls = []

    def killed(name, *args, **kwargs):  # rung 1's second candidate is killed at its 3rd step
        rung = args[0].rung  # (the CandidateJob)
        calls.append((rung.rung, name))
        if rung.rung == 1 and len([c for c in calls if c[0] == 1]) == 2:
            steps = {"n": 0}

            def on_step(step, total):
                steps["n"] += 1
                if steps["n"] == 3:
                    raise KeyboardInterrupt

            kwargs["on_step"] = on_step
        return original(name, *args, **kwargs)

    monkeypatch.setattr(ncap.ranking.executors, "run_candidate", killed)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        rank(MODELS, digits, out_dir=out, config=CONFIG, strategy=Halving(HALVING))
    assert len(list((out / "rungs" / "1").glob("*.json"))) == 1
    with pytest.raises(FileExistsError, match="--resume"):
        rank(MODELS, digits, out_dir=out, config=CONFIG, strategy=Halving(HALVING))
    calls.clear()
    monkeypatch.setattr(ncap.ranking.executors, "run_candidate", lambda name, *a, **k: calls.append((a[0].rung.rung, name)) or original(name, *a, **k))  # fmt: skip
    resumed = rank(
        MODELS,
        digits,
        out_dir=out,
        config=CONFIG,
        strategy=Halving(HALVING),
        execution=Execution(mode="resume"),
    )
    # only the unfinished candidate-rung is redone, and the failed one (as the fixed strategy
    # reruns its failed candidates: a failure may have been the machine's)
    assert sorted(calls) == [(0, "test-nan"), (1, calls[1][1])]
    assert resumed.ranking == reference.ranking
    assert resumed.rungs == reference.rungs
    for a, b in zip(resumed.candidates, reference.candidates, strict=True):
        assert _no_time(a["trajectory"]) == _no_time(b["trajectory"])
    with pytest.raises(ConfigError, match="different settings"):
        rank(
            MODELS,
            digits,
            out_dir=out,
            config=CONFIG,
            strategy=Halving(HalvingSettings(eta=3, min_budget=1.0, score="last-observed")),
            execution=Execution(mode="resume"),
        )


def test_halving_refuses_a_first_rung_too_short_for_the_score(tiny_zoo, tmp_path, digits):
    with pytest.raises(ConfigError, match="evaluation point"):
        rank(
            ["mlp-s"],
            digits,
            out_dir=tmp_path,
            config=CONFIG,
            strategy=Halving(HalvingSettings(min_budget=1.0, score="predicted")),
        )  # 3 points, fit needs 4


def test_fixed_strategy_cost_figure(tiny_zoo, tmp_path, digits):
    from ncap.report.tables import cost_footer

    config = FinetuneConfig(epochs=1.0, eval_every=1, batch_size=64)
    result = rank(
        ["mlp-s", "test-nan"],
        digits,
        out_dir=tmp_path,
        config=config,
        score="fit/base",  # a score that reads LogME (the default at 50% of T, LO, does not)
        horizon=Horizon(full_epochs=2.0),
    )
    cost = json.loads((tmp_path / "results.json").read_text())["cost"]
    ok = result.candidates[0]
    assert ok["steps"] == 6 and cost["steps"] == 6 and cost["full_steps"] == 12
    assert cost["unmeasured"] == ["test-nan"]
    assert cost["estimated_full_seconds"] == pytest.approx(ok["cost_seconds"] * 2)
    # the recommended score computed LogME first: spent, but not part of training everything
    free = ok["backbone"]["logme_seconds"]
    assert free > 0 and cost["training_free_seconds"] == pytest.approx(free)
    assert cost["fraction"] == pytest.approx(
        (ok["cost_seconds"] + result.candidates[1]["cost_seconds"] + free)
        / (2 * ok["cost_seconds"])
    )
    assert "of the compute of training every candidate to 2 epochs" in cost_footer(cost)
    assert "%" not in cost_footer(
        rank(["mlp-s"], digits, out_dir=tmp_path / "b", config=config).cost
    )


def test_the_default_rung_score_is_the_recommended_one(tiny_zoo, tmp_path, digits):
    """Default halving ranks each rung by the study's recommended score at that rung's budget
    (bench-v3: LogME at 2.5% of T, the rank average of LO, LogME and beta_eff's slope at 5%): the
    rung's scores are score_candidates' on the records at that rung, LogME computed once and
    carried."""
    from ncap.predict.recommended import resolve_score
    from ncap.ranking.scoring import score_candidates

    assert HalvingSettings().score == "recommended"
    models = ["mlp-s", "lenet", "cnn-s"]
    result = rank(
        models,
        digits,
        out_dir=tmp_path / "h",
        config=CONFIG,
        strategy=Halving(HalvingSettings(eta=2, min_budget=1.0)),
        horizon=Horizon(target_epochs=40.0),
    )
    data = json.loads((tmp_path / "h" / "results.json").read_text())
    rungs = data["rungs"]
    assert rungs[0]["score"] == "recommended"
    by_name = {c["name"]: c for c in data["candidates"]}
    free = {n: c["backbone"]["logme"] for n, c in by_name.items()}
    assert all(isinstance(v, float) for v in free.values())
    names = []
    for r in rungs:
        spec = resolve_score("recommended", r["steps"] / (40 * 6))[0]
        names.append(spec.name)
        records = [
            by_name[n] | {"trajectory": [p for p in by_name[n]["trajectory"]
                                         if p["step"] <= r["steps"]]}
            for n in r["ranked"]
        ]  # fmt: skip
        score_candidates(records, spec, budget_steps=r["steps"], steps_per_epoch=6,
                         full_epochs=40.0)  # fmt: skip
        assert r["scores"] == {rec["name"]: rec["score"]["value"] for rec in records}
    assert names[:2] == ["logme", "ravg/lo+logme+dyn/interval/mean-abs"]
    assert result.cost["full_epochs"] == 40.0 and result.cost["fraction"] < 0.2
    # the trust statement of the last rung that compared candidates: a rank average gives no
    # predictive distribution, and the statement says so instead of a probability
    trust = data["settings"]["score"]["trust"]
    assert trust["p_best"] is None and "gives no predictive distribution" in trust["reason"]
    with pytest.raises(ConfigError, match="unknown rung score 'best'"):
        HalvingSettings(score="best")


def test_target_epochs_sets_the_budget_share_without_training_to_it(tiny_zoo, tmp_path, digits):
    from ncap.predict.logme import logme
    from ncap.training.features import backbone_features

    config = FinetuneConfig(epochs=1.0, eval_every=1, batch_size=64, probe_hidden=(16, 12, 8))
    result = rank(
        ["mlp-s", "lenet"],
        digits,
        out_dir=tmp_path / "t",
        config=config,
        score="fit/base",  # a fitted score: the budget picks which of its fits is used
        horizon=Horizon(target_epochs=20.0),
    )
    assert result.settings["score"]["budget_fraction"] == pytest.approx(0.05)
    assert result.settings["score"]["target_epochs"] == 20.0
    for c in result.candidates:
        assert c["trajectory"][-1]["step"] == 6 and c.get("final_accuracy") is None
        assert c["score"]["fit"]["budget_fraction"] == 0.05  # the 5% fit
        assert c["prediction"]["by"] == "fit/base"
        # calibrated unless flagged (ncap.predict.caveats: a tiny zoo's LogME is outside the fit)
        assert c["prediction"]["calibrated"] is (not c["flags"]), c["flags"]
    assert any(c["prediction"]["calibrated"] for c in result.candidates)
    assert result.cost["fraction_steps"] == pytest.approx(1 / 20)
    # the LogME feature is LogME of the pretrained backbone's features of the training images
    backbone = create_backbone("lenet")
    feats = backbone_features(backbone.module, backbone.input_spec, digits, config)
    expected = logme(feats.double().numpy(), digits.y_train.numpy())
    assert result.candidates[1]["backbone"]["logme"] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ConfigError, match="must cover the early budget"):
        rank(
            ["mlp-s"],
            digits,
            out_dir=tmp_path / "u",
            config=config,
            horizon=Horizon(target_epochs=0.5),
        )
