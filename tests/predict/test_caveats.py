"""Honest "can't tell": flagged candidates lose their interval, ties are said (issue 25)."""

import json

import pytest
from torch import nn

from ncap.cli import main
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.models.backbone import Backbone
from ncap.models.registry import register_source
from ncap.predict.caveats import at_chance, candidate_flags, chance_margin, separation
from ncap.ranking.halving import HalvingSettings
from ncap.ranking.rank import rank
from ncap.ranking.spec import Execution, Horizon
from ncap.ranking.strategies import Halving
from ncap.training.config import FinetuneConfig


def _frozen(rest: str, **_) -> Backbone:
    """A random linear feature map that never learns (lr 1e-9 in the tests): at chance."""
    return Backbone(rest, nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16)), num_features=16)


register_source("test-chance", _frozen)


def test_chance_margin_and_flags_on_records():
    assert chance_margin(10, None) == pytest.approx(0.1)
    assert chance_margin(10, 100) == pytest.approx(0.1 + 2 * 0.03)
    assert at_chance(0.16, classes=10, images=100) and not at_chance(0.17, classes=10, images=100)
    points = [{"step": 4, "val_accuracy": 0.5, "val_images": 100},
              {"step": 8, "val_accuracy": 0.9, "val_images": 100}]  # fmt: skip
    record = {"name": "a", "trajectory": points, "score": {"outside": ["logme"]}}
    assert set(candidate_flags(record, classes=10, budget_steps=8)) == {"outside-fit"}
    assert set(candidate_flags(record, classes=10, budget_steps=4)) == {"few-points",
                                                                        "outside-fit"}  # fmt: skip
    record["trajectory"] = [p | {"val_accuracy": 0.11} for p in points]
    assert "at-chance" in candidate_flags(record, classes=10, budget_steps=8)


def test_separation_names_overlapping_and_flagged_candidates():
    def rec(name, low, high, flags=None):
        return {"name": name, "prediction": {"95": None if flags else [low, high], "flags": flags}}

    apart = separation([rec("a", 0.8, 0.9), rec("b", 0.6, 0.7)])
    assert apart["separated"] and apart["tied"] == ["a"]
    tied = separation([rec("a", 0.8, 0.9), rec("b", 0.7, 0.85), rec("c", 0.5, 0.6)])
    assert not tied["separated"] and tied["tied"] == ["a", "b"]
    assert "cannot be told apart" in tied["statement"]
    flagged = separation([rec("a", 0, 0, ["at-chance"]), rec("b", 0.5, 0.6)])
    assert flagged["tied"] == ["a", "b"] and "at-chance" in flagged["statement"]
    three = separation([rec("a", 0, 0, ["outside-fit"]), rec("b", 0.5, 0.9), rec("c", 0.4, 0.6)])
    assert (
        "among those with an interval, b leads and cannot be told apart from c"
        in (three["statement"])
    )


def test_one_step_ranking_flags_its_rows_and_gives_no_calibrated_interval(
    tiny_zoo, tmp_path, capsys
):
    out = tmp_path / "one"  # fit/base: a score with an interval to withhold
    code = main(["rank", "--models", "lenet,mlp-s", "--data", "digits", "--steps", "1",
                 "--score", "fit/base", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    for c in data["candidates"]:
        assert "few-points" in c["flags"], c["flags"]
        assert c["prediction"]["calibrated"] is False
        assert c["prediction"]["95"] is None and c["prediction"]["68"] is None
        assert "few-points" in printed and f"caveat: {c['name']}" in printed
    assert "(no interval)" in printed
    # lenet is at chance (12.1% on 256 images): it ranks after mlp-s whatever its score
    lenet = next(c for c in data["candidates"] if c["name"] == "lenet")
    assert "at-chance" in lenet["flags"] and data["ranking"] == ["mlp-s", "lenet"]
    # nothing separates the two: the output says so, and the assumed T is in the title
    assert data["settings"]["score"]["separation"]["separated"] is False
    assert "cannot tell" in printed
    assert data["settings"]["score"]["target_assumed"] is True
    assert "ASSUMED (set --target-epochs)" in printed.replace("\n", " ")


def test_halving_of_models_at_chance_says_it_cannot_separate_them(tmp_path):
    digits = load_dataset("digits", n_train=256, n_val=128)
    config = FinetuneConfig(epochs=2.0, eval_every=1, batch_size=64, lr=1e-9,
                            probe_hidden=(16, 12, 8))  # fmt: skip
    models = ["test-chance:a", "test-chance:b", "test-chance:c", "test-chance:d"]
    lines = []
    result = rank(
        models,
        digits,
        out_dir=tmp_path / "h",
        config=config,
        strategy=Halving(HalvingSettings(eta=2, min_budget=0.5)),
        execution=Execution(progress=True, log=lines.append),
    )
    # progress counts candidate runs over the rungs (4, then 2): 6, not "5/4"
    done = [line for line in lines if " done in " in line]
    assert [line.split(":")[0] for line in done] == [f"candidate {k}/6" for k in range(1, 7)]
    ok = [c for c in result.candidates if c["status"] == "ok"]
    assert len(ok) == 4
    for rung in result.rungs:
        assert set(rung["intervals"]) == set(rung["ranked"])  # each cut records what it used
        if rung["separation"] is not None:
            assert rung["separation"]["separated"] is False
    assert result.files["rungs_plot"].exists() and "rungs.png" in result.files["report"].read_text()
    verdict = result.settings["score"]["separation"]
    assert verdict["separated"] is False and "cannot" in verdict["statement"]
    for c in ok:  # the final table shows the score that decided
        assert c["score"]["value"] == c["halving"]["rungs"][-1]["score"]
        assert "at-chance" in c["flags"]


def test_a_redirected_run_prints_progress_lines_and_writes_the_log_file(tiny_zoo, tmp_path,
                                                                        capsys):  # fmt: skip
    """stderr is not a terminal under pytest: per-candidate lines with elapsed time and an
    estimate replace the bars, and --log-file gets them, time-stamped."""
    log = tmp_path / "logs" / "run.log"
    code = main(["rank", "--models", "lenet,mlp-s", "--data", "digits", "--steps", "8",
                 "--eval-every", "2", "--out", str(tmp_path / "p"), "--log-file", str(log)])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "[ncap] candidate 1/2: lenet started (0 s elapsed)" in err
    assert "candidate 1/2: lenet done in" in err and "left for 1 more" in err
    assert "candidate 2/2: mlp-s done in" in err
    assert "lenet: step 2/8 (25%)" in err
    text = log.read_text()
    assert "candidate 2/2: mlp-s done in" in text
    assert text.splitlines()[0][:2] == "20"  # a UTC time stamp


def test_report_page_and_plots_of_a_ranking(tiny_zoo, tmp_path):
    """report.md holds the table, the caveats, the cost and links every plot it was given;
    the learning curves and fits (with the table's own prediction) are written."""
    from PIL import Image

    digits = load_dataset("digits", n_train=256, n_val=128)
    config = FinetuneConfig(epochs=1.0, eval_every=1, batch_size=64, probe_hidden=(16, 12, 8))
    result = rank(
        ["lenet", "mlp-s"],
        digits,
        out_dir=tmp_path / "r",
        config=config,
        horizon=Horizon(target_epochs=10.0),
    )
    page = (tmp_path / "r" / "report.md").read_text()
    assert result.files["report"] == tmp_path / "r" / "report.md"
    for c in result.candidates:
        row = next(line for line in page.splitlines() if f"| {c['name']} |" in line)
        assert f"{100 * c['prediction']['accuracy']:.1f}" in row
    assert "predictions for T = 10 epochs;" in page  # given, not assumed
    for key in ("learning_plot", "fit_plot", "beta_plot"):
        path = result.files[key]
        assert f"({path.name})" in page
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200
    assert "## Cost" in page and "compute:" in page


def _mlp(width: int = 16):
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, width), nn.ReLU())


def test_rank_takes_modules_and_factories_and_the_result_is_short_to_read(tiny_zoo, tmp_path):
    import functools

    import matplotlib

    matplotlib.use("Agg")
    digits = load_dataset("digits", n_train=256, n_val=128)
    config = FinetuneConfig(epochs=1.0, eval_every=1, batch_size=64, probe_hidden=(16, 12, 8))
    module = _mlp(8)
    before = [p.detach().clone() for p in module.parameters()]
    result = rank([module, functools.partial(_mlp, width=24), ("named", _mlp), "lenet"], digits,
                  out_dir=tmp_path / "o", config=config)  # fmt: skip
    names = [c["name"] for c in result.candidates]
    assert names == ["obj:Sequential", "obj:_mlp(width=24)", "obj:named", "lenet"]
    assert all(c["status"] == "ok" for c in result.candidates), [c["reason"] for c in
                                                                  result.candidates]  # fmt: skip
    assert all((a == b).all() for a, b in zip(before, module.parameters()))  # a copy was trained
    assert result.best == result.ranking[0]
    records = result.to_records()
    assert [r["name"] for r in records] == result.ranking
    assert records[0]["predicted_accuracy"] == next(
        c["prediction"]["accuracy"] for c in result.candidates if c["name"] == result.best
    )
    frame = result.to_pandas()
    assert list(frame.index) == result.ranking and frame.loc[result.best, "rank"] == 1
    fig = result.plot()
    assert fig.axes and fig.axes[0].images
    with pytest.raises(ConfigError, match="Ray"):
        rank(
            [module],
            digits,
            out_dir=tmp_path / "ray",
            config=config,
            execution=Execution(executor="ray"),
        )


def test_the_budget_that_would_separate_two_candidates_is_the_shipped_fits_own():
    """At 2.5% of T two close candidates overlap; the estimate is the first study budget whose
    refitted model and recalibration give intervals apart around the same link means."""
    from ncap.predict.capacitance import PredictorSettings
    from ncap.predict.recommended import parse_score, predicted_interval
    from ncap.predict.shipped import fitted_gain
    from ncap.ranking.scoring import add_predictions, score_candidates, separation_note

    def record(name, accs, logme):
        points = [{"step": 2 * (i + 1), "epoch": 0.25 * (i + 1), "val_accuracy": a,
                   "train_loss": 1.2 - a, "val_images": 1000} for i, a in enumerate(accs)]  # fmt: skip
        return {"name": name, "status": "ok", "trajectory": points, "predicted_accuracy": None,
                "fit": None, "backbone": {"parameters": 1e5, "num_features": 64, "logme": logme,
                                          "source_accuracy": 0.9}}  # fmt: skip

    records = [
        record("a", [0.50, 0.60, 0.66, 0.72], -0.3),
        record("b", [0.48, 0.58, 0.64, 0.69], -0.4),
    ]
    order = score_candidates(
        records, parse_score("fit/base"), budget_steps=8, steps_per_epoch=8, full_epochs=40
    )  # fmt: skip  (8 of 320 steps: 2.5% of T)
    add_predictions(records, PredictorSettings(), 0.025, classes=10, budget_steps=8)
    by_name = {r["name"]: r for r in records}
    verdict = separation([by_name[n] for n in order])
    assert not verdict["separated"]
    separation_note(verdict, by_name, 40.0)
    estimate = verdict["budget_to_separate"]
    leader, other = (by_name[n]["score"] for n in order)
    for fraction in (0.05, 0.1, 0.2):  # recompute: the first budget whose intervals are apart
        fit = fitted_gain("fit/base", leader["fit"]["features"], fraction)
        bounds = []
        for s in (leader, other):
            sd = fit.model.predict([[s["features"][f] for f in fit.model.features]])[1][0]
            bounds.append(
                predicted_interval("fit/base", "logit", s["link_mean"], sd, fraction)["95"]
            )
        if bounds[1][1] < bounds[0][0]:
            assert estimate == {"budget_fraction": fraction, "epochs": fraction * 40.0}
            assert f"{100 * fraction:g}% of T" in verdict["statement"]
            break
    else:
        assert estimate == {"budget_fraction": None, "epochs": None}
        assert "would still overlap" in verdict["statement"]


def test_upscaling_is_said_and_max_input_size_caps_it(tiny_zoo, tmp_path, capsys):
    from ncap.data.inputs import InputSpec
    from ncap.report.tables import print_table

    def big():  # a model that asks for 64 px inputs (as an ImageNet model asks for 224)
        spec = InputSpec(channels=1, size=(64, 64), mean=(0.5,), std=(0.25,))
        module = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16, 16))
        return Backbone("", module, 16, input_spec=spec)

    digits = load_dataset("digits", n_train=256, n_val=128)  # 28 px
    for cap, size in ((None, [64, 64]), (32, [32, 32])):
        config = FinetuneConfig(epochs=1.0, eval_every=1, batch_size=64, probe_hidden=(16, 12, 8),
                                max_input_size=cap)  # fmt: skip
        result = rank([("big", big)], digits, out_dir=tmp_path / str(cap), config=config)
        assert result.candidates[0]["runtime"]["input"]["size"] == size
        print_table(result)
        printed = " ".join(capsys.readouterr().out.split())
        assert f"obj:big upscales the 28x28 px images to {size[0]}x{size[1]} px" in printed
        assert "--max-input-size caps it" in printed


@pytest.mark.parametrize("bad", [None, 0, 2.7, True, "4"])
def test_a_factory_object_returning_a_bad_pair_is_refused_like_a_py_factory(bad):
    from ncap.models.objects import candidate_names
    from ncap.models.registry import create_backbone

    (name,) = candidate_names([lambda: (nn.Linear(3, 4), bad)])
    with pytest.raises(ConfigError, match="num_features must be a positive int"):
        create_backbone(name)
