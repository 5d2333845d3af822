import csv
import dataclasses
import json

import pytest
import torch
from torch import nn

import ncap.ranking.candidate
import ncap.ranking.executors
import ncap.ranking.runner
from ncap.capacitance.variants import VARIANTS
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.models.backbone import Backbone
from ncap.models.registry import register_source
from ncap.predict.capacitance import PredictorSettings
from ncap.ranking.rank import rank
from ncap.ranking.scoring import RANKING_FIELDS
from ncap.ranking.spec import Execution, Horizon
from ncap.training.config import FinetuneConfig

SMALL = FinetuneConfig(epochs=1.0, eval_every=1, batch_size=64, seed=0)
CANDIDATE_KEYS = {"name", "status", "reason", "predicted_accuracy", "predicted_std",
                  "observed_accuracy", "cost_seconds", "trajectory"}  # fmt: skip
POINT_KEYS = {"step", "epoch", "beta_eff", "train_loss", "val_loss", "val_accuracy"}


class _Broken(nn.Module):
    def __init__(self, out: int, nan: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(28 * 28, out)
        self.nan = nan

    def forward(self, x):
        z = self.lin(x.flatten(1))
        return z * float("nan") if self.nan else z


register_source("test-mismatch", lambda rest: Backbone(rest, _Broken(10), num_features=16))
register_source("test-nan", lambda rest: Backbone(rest, _Broken(16, nan=True), num_features=16))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=384, n_val=128)


def _strip_times(record):
    out = {k: v for k, v in record.items() if k not in ("cost_seconds", "full_seconds", "backbone")}
    out["trajectory"] = [
        {k: v for k, v in p.items() if k != "wall_time"} for p in record["trajectory"]
    ]
    return out


def test_rank_end_to_end_on_digits(tiny_zoo, tmp_path, digits):
    result = rank(["mlp-s", "lenet"], digits, out_dir=tmp_path / "out", config=SMALL)
    assert [c["status"] for c in result.candidates] == ["ok", "ok"]
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(data) >= {"candidates", "ranking", "settings"}
    scores = {c["name"]: c["score"]["value"] for c in data["candidates"]}  # the ranking score's
    assert data["ranking"] == sorted(scores, key=lambda n: -scores[n])
    # without target_epochs the Python API assumes T as the command line does, and records it
    assert data["settings"]["score"]["target_epochs"] == pytest.approx(10.0)
    assert data["settings"]["score"]["target_assumed"] is True
    assert data["settings"]["score"]["budget_fraction"] == pytest.approx(0.1)
    for c in data["candidates"]:
        assert CANDIDATE_KEYS <= set(c)
        assert len(c["trajectory"]) == 6  # 384 images / 64 = 6 steps, evaluated every step
        for p in c["trajectory"]:
            assert POINT_KEYS <= set(p) and set(p["beta_eff"]) == {"signed", "mean-abs"}
            assert 0.0 <= p["val_accuracy"] <= 1.0
        assert c["observed_accuracy"] == c["trajectory"][-1]["val_accuracy"]
        assert 0.0 < c["predicted_std"]
        assert c["backbone"]["source_accuracy"] > 0.2  # pretrained on digits, 10 classes
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [r["name"] for r in rows] == data["ranking"]
    for name in ("beta_eff.png", "fits.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert PredictorSettings(**data["settings"]["predictor"]) == PredictorSettings()
    assert data["settings"]["dataset"]["n_train"] == 384


def test_prediction_matches_predictor_on_recorded_points(tiny_zoo, tmp_path, digits):
    from ncap.predict.capacitance import CapacitancePredictor

    result = rank(["mlp-s"], digits, out_dir=tmp_path, config=SMALL)
    c = result.candidates[0]
    acc = [p["val_accuracy"] for p in c["trajectory"]]
    default = PredictorSettings()
    beta = [p["beta_eff"][default.variant] for p in c["trajectory"]]
    model = CapacitancePredictor(
        features=default.features, burn_in=default.burn_in, link=default.link
    ).fit(beta, acc)
    assert c["predicted_accuracy"] == pytest.approx(model.prediction_, rel=1e-12)
    # another setting through the same path
    signed = PredictorSettings(variant="signed", features="linear", burn_in=1, link="identity")
    other = rank(["mlp-s"], digits, out_dir=tmp_path / "signed", config=SMALL, predictor=signed)
    beta = [p["beta_eff"]["signed"] for p in other.candidates[0]["trajectory"]]
    model = CapacitancePredictor(burn_in=1).fit(beta, acc)
    assert other.candidates[0]["predicted_accuracy"] == pytest.approx(model.prediction_, rel=1e-12)


def test_deterministic_for_a_seed(tiny_zoo, tmp_path, digits):
    a = rank(["lenet"], digits, out_dir=tmp_path / "a", config=SMALL).candidates[0]
    b = rank(["lenet"], digits, out_dir=tmp_path / "b", config=SMALL).candidates[0]
    assert _strip_times(a) == _strip_times(b)
    other = FinetuneConfig(**(SMALL.__dict__ | {"seed": 1}))
    c = rank(["lenet"], digits, out_dir=tmp_path / "c", config=other).candidates[0]
    assert _strip_times(a)["trajectory"] != _strip_times(c)["trajectory"]


def test_failing_candidates_next_to_a_good_one(tiny_zoo, tmp_path, digits):
    result = rank(["test-mismatch:x", "mlp-s", "test-nan:y", "nonexistent-model"], digits,
                  out_dir=tmp_path, config=SMALL)  # fmt: skip
    status = {c["name"]: c for c in result.candidates}
    assert status["mlp-s"]["status"] == "ok"
    assert "probe expects 16" in status["test-mismatch:x"]["reason"]
    assert "diverged at step 1" in status["test-nan:y"]["reason"]
    assert "unknown model 'nonexistent-model'" in status["nonexistent-model"]["reason"]
    assert result.ranking == ["mlp-s"]
    assert all(status[n]["predicted_accuracy"] is None for n in status if n != "mlp-s")


def test_bad_labels_and_empty_split_fail_with_reason(tiny_zoo, tmp_path, digits):

    bad = dataclasses.replace(digits, y_train=digits.y_train + 5)
    result = rank(["mlp-s"], bad, out_dir=tmp_path / "a", config=SMALL)
    assert result.candidates[0]["status"] == "failed"
    assert "labels must lie in [0, 10)" in result.candidates[0]["reason"]
    empty = dataclasses.replace(digits, x_val=digits.x_val[:0], y_val=digits.y_val[:0])
    result = rank(["mlp-s"], empty, out_dir=tmp_path / "b", config=SMALL)
    assert "empty validation split" in result.candidates[0]["reason"]


def _without_score(record):
    return {k: v for k, v in record.items() if k != "score"}


def test_resume_skips_finished_and_refuses_to_clobber(tiny_zoo, tmp_path, digits, monkeypatch):
    first = rank(["mlp-s"], digits, out_dir=tmp_path, config=SMALL).candidates[0]
    with pytest.raises(FileExistsError, match="--resume"):
        rank(["mlp-s", "lenet"], digits, out_dir=tmp_path, config=SMALL)
    calls = []
    original = ncap.ranking.executors.run_candidate
    monkeypatch.setattr(
        ncap.ranking.executors,
        "run_candidate",
        lambda name, *a, **k: calls.append(name) or original(name, *a, **k),
    )
    result = rank(
        ["mlp-s", "lenet"],
        digits,
        out_dir=tmp_path,
        config=SMALL,
        execution=Execution(mode="resume"),
    )
    assert calls == ["lenet"]
    # the run is reused byte for byte; its score, a rank average by default, is relative to the
    # candidates ranked with it, so it is computed again
    assert _without_score(result.candidates[0]) == _without_score(first)
    assert result.candidates[0]["score"]["name"] == first["score"]["name"]
    with pytest.raises(ValueError, match="different settings"):
        rank(
            ["mlp-s"],
            digits,
            out_dir=tmp_path,
            config=FinetuneConfig(**(SMALL.__dict__ | {"lr": 5e-4})),
            execution=Execution(mode="resume"),
        )
    rank(["mlp-s"], digits, out_dir=tmp_path, config=SMALL, execution=Execution(mode="overwrite"))
    assert [p.name for p in (tmp_path / "candidates").glob("*.json")] == ["mlp-s.json"]


def test_interrupt_keeps_finished_candidates(tiny_zoo, tmp_path, digits, monkeypatch):
    original = ncap.ranking.runner.finetune

    def interrupt_second(module, *args, **kwargs):
        if isinstance(module[-1], nn.Tanh):  # lenet ends in Tanh: interrupt it mid-way
            raise KeyboardInterrupt
        return original(module, *args, **kwargs)

    monkeypatch.setattr(ncap.ranking.runner, "finetune", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        rank(["mlp-s", "lenet"], digits, out_dir=tmp_path, config=SMALL)
    saved = json.loads((tmp_path / "candidates" / "mlp-s.json").read_text())
    assert saved["record"]["status"] == "ok"
    assert not (tmp_path / "candidates" / "lenet.json").exists()
    assert not list((tmp_path / "candidates").glob(".*tmp"))  # no half-written files
    monkeypatch.setattr(ncap.ranking.runner, "finetune", original)
    result = rank(
        ["mlp-s", "lenet"],
        digits,
        out_dir=tmp_path,
        config=SMALL,
        execution=Execution(mode="resume"),
    )
    assert [c["status"] for c in result.candidates] == ["ok", "ok"]


@pytest.mark.parametrize(("epochs", "eval_every", "n_early"), [(1.0, 1, 6), (7 / 6, 2, 4)])
def test_full_epochs_records_final_accuracy_from_the_same_run(
    tiny_zoo, tmp_path, digits, epochs, eval_every, n_early
):
    config = FinetuneConfig(epochs=epochs, eval_every=eval_every)
    early = rank(["mlp-s"], digits, out_dir=tmp_path / "a", config=config).candidates[0]
    full = rank(
        ["mlp-s"], digits, out_dir=tmp_path / "b", config=config, horizon=Horizon(full_epochs=2.0)
    ).candidates[0]
    assert len(early["trajectory"]) == n_early  # 7/6 epochs = 7 steps: evaluated at 2, 4, 6, 7
    assert full["trajectory"][-1]["step"] == 12
    assert full["final_accuracy"] == full["trajectory"][-1]["val_accuracy"]
    # the early run is the prefix of the full run, so the prediction is the same
    assert _strip_times(full)["trajectory"][:n_early] == _strip_times(early)["trajectory"]
    assert full["predicted_accuracy"] == pytest.approx(early["predicted_accuracy"], rel=1e-12)


def test_argument_errors(tmp_path, digits):
    with pytest.raises(ValueError, match="no candidate models"):
        rank([], digits, out_dir=tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        rank(["a", "a"], digits, out_dir=tmp_path)
    with pytest.raises(ValueError, match="identically 0"):
        rank(["mlp-s"], digits, out_dir=tmp_path, config=FinetuneConfig(probe_hidden=(64, 32)),
             predictor=PredictorSettings(variant="signed"))  # fmt: skip
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        rank(["mlp-s"], "nope", out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown beta_eff variant"):
        PredictorSettings(variant="bogus")
    with pytest.raises(ValueError, match="unknown optimizer"):
        FinetuneConfig(optimizer="lion")


def test_probe_statistics_do_not_change_training(tiny_zoo, digits):
    """Same seed with and without recording gives the same backbone weights."""
    from ncap.models.registry import create_backbone
    from ncap.training.loop import finetune

    a, b = create_backbone("mlp-s").module, create_backbone("mlp-s").module
    finetune(a, 256, digits, SMALL)
    finetune(b, 256, digits, FinetuneConfig(**(SMALL.__dict__ | {"variants": ("mean-abs",)})))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_budget_in_steps_and_pretraining_report(tiny_zoo, tmp_path, digits):
    messages = []
    result = rank(
        ["mlp-s"],
        digits,
        out_dir=tmp_path,
        config=FinetuneConfig(steps=4, eval_every=1),
        execution=Execution(log=messages.append),
    )
    c = result.candidates[0]
    assert [p["step"] for p in c["trajectory"]] == [1, 2, 3, 4]
    assert result.settings["budget_steps"] == 4
    assert any(m.startswith("pretrained mlp-s: source accuracy") for m in messages)
    # the second creation comes from the cache: no pretraining message
    messages.clear()
    rank(
        ["mlp-s"],
        digits,
        out_dir=tmp_path / "again",
        config=FinetuneConfig(steps=4, eval_every=1),
        execution=Execution(log=messages.append),
    )
    assert not any("pretrain" in m for m in messages)


def test_resume_a_run_directory_written_by_ncap_0_1_0(tiny_zoo, tmp_path):
    """tests/ranking/data/run-v0.1.0 was written by the flat layout (before the restructure): resuming it
    reuses both candidates and rewrites results.json with the same candidates and ranking."""
    import shutil
    from pathlib import Path

    from ncap.results import load_results

    old = Path(__file__).parent / "data" / "run-v0.1.0"
    run = tmp_path / "run"
    shutil.copytree(old, run)
    before = load_results(old)
    # the settings it was written with: ncap 0.1's defaults (every variant, every evaluation on
    # the whole validation split, the abs-mean extrapolation)
    config = FinetuneConfig(
        epochs=1.0, eval_every=1, probe_hidden=(16, 8, 4), variants=VARIANTS, val_share=None
    )
    predictor = PredictorSettings(**before["settings"]["predictor"])
    result = rank(
        ["mlp-xs", "lenet-short"],
        load_dataset("digits", n_train=256, n_val=128),
        out_dir=run,
        config=config,
        predictor=predictor,
        execution=Execution(mode="resume"),
    )
    assert not (tiny_zoo / "zoo").exists()  # nothing was pretrained: both candidates reused
    after = load_results(run)
    # the ranking adds its score and the interval of the prediction; the rest is unchanged
    assert [
        {k: v for k, v in c.items() if k not in RANKING_FIELDS} for c in after["candidates"]
    ] == before["candidates"]
    assert after["ranking"] == before["ranking"] == result.ranking
    drop = ("environment", "runtime", "score")
    assert {k: v for k, v in after["settings"].items() if k not in drop} == {
        k: v for k, v in before["settings"].items() if k not in drop
    }
    # results.csv gained the score and the ranking's prediction; the run's own extrapolation
    # moved to extrapolated_accuracy, and every other column is unchanged
    import csv

    new_rows = list(csv.DictReader((run / "results.csv").open()))
    old_rows = list(csv.DictReader((old / "results.csv").open()))
    assert [r["extrapolated_accuracy"] for r in new_rows] == [
        r["predicted_accuracy"] for r in old_rows
    ]
    shared = set(old_rows[0]) & set(new_rows[0]) - {"predicted_accuracy"}
    assert len(shared) >= 10
    assert [{k: r[k] for k in shared} for r in new_rows] == [
        {k: r[k] for k in shared} for r in old_rows
    ]


class _RaisesInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(28 * 28, 16)

    def forward(self, x):
        if self.training:
            raise TypeError("a bug in the candidate's own code")
        return self.lin(x.flatten(1))


register_source("test-forward-bug", lambda rest: Backbone(rest, _RaisesInForward(), 16))


def test_errors_in_model_code_fail_the_candidate_but_ncap_bugs_propagate(
    tiny_zoo, tmp_path, digits, monkeypatch
):
    from ncap.exceptions import ModelCodeError, NcapError

    result = rank(["test-forward-bug:x", "mlp-s"], digits, out_dir=tmp_path / "a", config=SMALL)
    bad, good = result.candidates
    assert bad["status"] == "failed" and good["status"] == "ok"
    assert bad["reason"] == "TypeError: a bug in the candidate's own code"
    assert issubclass(ModelCodeError, NcapError)

    def broken(*args, **kwargs):
        raise KeyError("a bug inside ncap")

    monkeypatch.setattr(ncap.ranking.runner, "predict_from_points", broken)
    with pytest.raises(KeyError, match="a bug inside ncap"):  # not a "failed candidate" row
        rank(["mlp-s"], digits, out_dir=tmp_path / "b", config=SMALL)


def test_rank_signature_is_short_and_checked_before_the_data_is_loaded(tmp_path, monkeypatch):
    import inspect

    import ncap
    import ncap.ranking.rank as rank_module
    from ncap.ranking.strategies import Halving

    assert list(inspect.signature(rank).parameters) == [
        "models", "data", "out_dir", "config", "predictor", "strategy", "score", "horizon",
        "source_accuracy", "execution",
    ]  # fmt: skip
    assert ncap.rank is rank and ncap.Horizon is Horizon and ncap.Execution is Execution
    # the data is not loaded while a parameter is refused (a refusal costs nothing)
    monkeypatch.setattr(rank_module, "load_dataset", lambda *a, **k: pytest.fail("loaded"))
    out = tmp_path / "out"
    for old in ({"full_epochs": 2.0}, {"resume": True}, {"n_train": 64}, {"halving": None}):
        with pytest.raises(TypeError, match="unexpected keyword"):
            rank(["mlp-s"], "digits", out_dir=out, **old)
    refused = [
        ({"data": 3}, "data must be a dataset name.*ncap.load_dataset"),
        ({"config": {"epochs": 1}}, "config must be an ncap.FinetuneConfig"),
        ({"horizon": 10}, r"horizon must be an ncap.Horizon\(target_epochs"),
        ({"execution": "ray"}, r"execution must be an ncap.Execution"),
        ({"score": 1}, "score must be a score name"),
        ({"strategy": "grid"}, "unknown strategy 'grid'"),
        ({"strategy": object()}, "strategy must be one of"),
        ({"source_accuracy": [0.5]}, "source_accuracy must be a mapping"),
        ({"execution": Execution(executor="slurm")}, "unknown executor 'slurm'"),
        ({"source_accuracy": {"lenet": 0.5}}, "lenet"),  # not a candidate
        (
            {
                "config": FinetuneConfig(probe_hidden=(64, 32)),
                "predictor": PredictorSettings(variant="signed"),
            },
            "identically 0",
        ),
    ]
    for kwargs, message in refused:
        with pytest.raises(ConfigError, match=message):
            rank(["mlp-s"], kwargs.pop("data", "digits"), out_dir=out, **kwargs)
    with pytest.raises(ConfigError, match="positive number of epochs"):
        Horizon(target_epochs=0)
    with pytest.raises(ConfigError, match="full_epochs must be a positive"):
        Horizon(full_epochs=float("nan"))
    with pytest.raises(ConfigError, match="unknown mode 'again'"):
        Execution(mode="again")
    with pytest.raises(ConfigError, match="--resume keeps.*pass one of the two"):
        Execution.from_flags(resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="zero-cost proxy"):
        Halving(ncap.HalvingSettings(score="fisher"))
    assert Execution.from_flags(overwrite=True).mode == "overwrite"
    assert Horizon(full_epochs=4.0).reference_epochs == 4.0
    assert not out.exists() or not any(out.iterdir())  # nothing written either
