"""Source accuracies a user gives (``--source-accuracy``, ``--source-accuracy-file``,
``ncap.rank(source_accuracy=...)``): parsed and checked at the door, read by the scores that read a
source accuracy, recorded in results.json (issue 26)."""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

from ncap.cli.commands import main
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError, MissingFile
from ncap.predict.features import logit
from ncap.predict.recommended import parse_score
from ncap.ranking.halving import HalvingSettings
from ncap.ranking.rank import rank
from ncap.ranking.scoring import score_candidates
from ncap.ranking.source_accuracy import (
    check_source_accuracy,
    from_sources,
    parse_pairs,
    read_file,
    source_accuracy_summary,
)
from ncap.ranking.spec import Execution, Horizon, RunSpec
from ncap.ranking.strategies import Halving
from ncap.training.config import FinetuneConfig

# --- parsing and checking ------------------------------------------------------------------------


def test_pairs_repeated_and_comma_separated():
    given = parse_pairs(["timm:resnet50=0.761,tv:densenet121 = 0.744", "py:m:f@w.pt=1"])
    assert given == {"timm:resnet50": 0.761, "tv:densenet121": 0.744, "py:m:f@w.pt": 1.0}
    assert parse_pairs([]) == {} and parse_pairs([" , "]) == {}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["resnet50"], "'resnet50' is not NAME=VALUE"),
        (["=0.7"], "without a candidate name"),
        (["a=seventy"], r"of 'a' \(--source-accuracy a=seventy\) is not a finite number"),
        (["a=nan"], "not a finite number"),
        (["a=76.1"], r"looks like a percentage; divide it by 100 \(76.1 -> 0.761\)"),
        (["a=0"], r"is 0, outside \(0, 1\]"),
        (["a=-0.2"], r"outside \(0, 1\]"),
        (["a=761"], r"is 761, outside \(0, 1\]"),
        (["a=0.7", "a=0.8"], "'a' is given twice"),
        (["a=0.7,a=0.7"], "'a' is given twice"),
    ],
)
def test_bad_pairs_say_what_and_how_to_fix(items, message):
    with pytest.raises(ConfigError, match=message):
        parse_pairs(items)


def test_names_must_be_candidates_and_values_fractions():
    assert check_source_accuracy(None, ["a"]) == {} and check_source_accuracy({}, ["a"]) == {}
    # returned in the candidates' order, as floats
    assert check_source_accuracy({"b": 1, "a": 0.5}, ["a", "b", "c"]) == {"a": 0.5, "b": 1.0}
    with pytest.raises(ConfigError, match=r"'x', 'y', not candidate\(s\).*are: a, b"):
        check_source_accuracy({"a": 0.5, "x": 0.5, "y": 0.1}, ["a", "b"])
    with pytest.raises(ConfigError, match="divide it by 100"):
        check_source_accuracy({"a": 55}, ["a"])
    for bad in (True, None, "0.5", float("inf")):
        with pytest.raises(ConfigError, match="not a finite number"):
            check_source_accuracy({"a": bad}, ["a"])
    with pytest.raises(ConfigError, match="must map candidate names"):
        check_source_accuracy([("a", 0.5)], ["a"])
    # the run spec checks them too (a spec built by hand), before anything is trained
    with pytest.raises(ConfigError, match="not candidate"):
        RunSpec(("a",), None, source_accuracy={"b": 0.5})  # type: ignore[arg-type]


def test_files_csv_and_json(tmp_path):
    table = tmp_path / "models.csv"
    table.write_text(
        "\ufeffcandidate, source_accuracy ,family\n"  # a spreadsheet's BOM, spaces, more columns
        "timm:resnet50,0.761,resnet\n"
        "tv:densenet121,,densenet\n"  # unknown: skipped
        "\n"
        "lenet,0.9,zoo\n"
    )
    assert read_file(table) == {"timm:resnet50": 0.761, "lenet": 0.9}
    mapping = tmp_path / "acc.json"
    mapping.write_text('{"timm:resnet50": 0.761, "lenet": 1}')
    assert read_file(str(mapping)) == {"timm:resnet50": 0.761, "lenet": 1.0}
    # the command line's items and a file together; a name in both is refused
    assert from_sources(["a=0.5"], mapping) == {"a": 0.5, "timm:resnet50": 0.761, "lenet": 1.0}
    with pytest.raises(ConfigError, match=r"'lenet' is given twice \(--source-accuracy and"):
        from_sources(["lenet=0.5"], mapping)


@pytest.mark.parametrize(
    ("name", "text", "error", "message"),
    [
        ("a.csv", "name,acc\na,0.5\n", ConfigError, "no column.*candidate, source_accuracy"),
        ("a.csv", "candidate,source_accuracy\na,76\n", ConfigError, r"a.csv, line 2\).*by 100"),
        ("a.csv", "candidate,source_accuracy\na,0.5\na,0.6\n", ConfigError, "given twice"),
        ("a.json", '{"a": 0.5, "a": 0.6}', ConfigError, "'a' is given twice"),
        ("a.json", "[0.5]", ConfigError, "holds a JSON list; a source-accuracy JSON file is one"),
        ("a.json", '{"a": true}', ConfigError, "not a finite number"),
        ("a.json", "{a: 0.5}", ConfigError, "is not valid JSON"),
        ("a.txt", "a=0.5", ConfigError, "name it .csv"),
    ],
)
def test_bad_files_say_what_and_how_to_fix(tmp_path, name, text, error, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(error, match=message):
        read_file(path)


def test_a_missing_file_is_named():
    with pytest.raises(MissingFile, match="source-accuracy file /no/such.csv does not exist"):
        read_file("/no/such.csv")


# --- the scores read it --------------------------------------------------------------------------


def _record(name, accs, params, source=None):
    points = [
        {"step": 4 * (i + 1), "epoch": 0.25 * (i + 1), "val_accuracy": a, "train_loss": 2 * (1 - a),
         "beta_eff": {"mean-abs": 1.0 / (i + 1)}}
        for i, a in enumerate(accs)
    ]  # fmt: skip
    backbone = {"parameters": params, "num_features": 64, "logme": -0.5}
    if source is not None:
        backbone["source_accuracy"] = source
    return {"name": name, "status": "ok", "trajectory": points, "backbone": backbone}


def _score(records, name, given=None):
    notes: list[str] = []
    order = score_candidates(records, parse_score(name), budget_steps=16, steps_per_epoch=16,
                             full_epochs=10, notes=notes, source_accuracy=given)  # fmt: skip
    return order, notes


def test_the_fitted_score_reads_a_given_source_accuracy():
    records = [_record("a", [0.3, 0.4, 0.5, 0.55], 2e4), _record("b", [0.3, 0.45, 0.5, 0.52], 2e5),
               _record("c", [0.2, 0.4, 0.5, 0.56], 5e4)]  # fmt: skip
    _, notes = _score(records, "fit/base")  # none has a source accuracy: the feature is left out
    assert "logit_source" not in records[0]["score"]["fit"]["features"]
    assert any("logit_source left out" in n and "--source-accuracy" in n for n in notes)
    without = [r["score"]["value"] for r in records]
    high_a = {"a": 0.9, "b": 0.5, "c": 0.7}
    _, notes = _score(records, "fit/base", high_a)
    assert not any("logit_source" in n for n in notes)
    for r in records:
        assert "logit_source" in r["score"]["fit"]["features"]
        assert r["score"]["features"]["logit_source"] == pytest.approx(logit(high_a[r["name"]]))
    with_a = {r["name"]: r["score"]["value"] for r in records}
    assert [with_a[n] for n in "abc"] != pytest.approx(without)
    # the fitted model's coefficient on the source accuracy moves the prediction with it
    _score(records, "fit/base", {"a": 0.5, "b": 0.9, "c": 0.7})
    assert records[2]["score"]["value"] == pytest.approx(with_a["c"])  # c's inputs unchanged
    assert records[0]["score"]["value"] != pytest.approx(with_a["a"])
    assert records[1]["score"]["value"] != pytest.approx(with_a["b"])
    # some candidates given, others without any: the feature is still left out for all
    _, notes = _score(records, "fit/base", {"a": 0.9})
    assert any("logit_source left out" in n and ": b, c" in n for n in notes)


def test_a_given_value_fills_or_replaces_a_recorded_one():
    records = [_record("zoo", [0.3, 0.5], 2e4, source=0.6), _record("timm", [0.3, 0.4], 2e5)]
    _score(records, "source-accuracy")  # the baseline: the candidate without one is unrated
    assert records[0]["score"]["value"] == 0.6 and records[1]["score"]["value"] is None
    order, _ = _score(records, "source-accuracy", {"timm": 0.761})
    assert records[1]["score"]["value"] == 0.761 and order == ["timm", "zoo"]
    order, _ = _score(records, "source-accuracy", {"timm": 0.761, "zoo": 0.9})
    assert records[0]["score"]["value"] == 0.9 and order == ["zoo", "timm"]
    assert records[0]["backbone"]["source_accuracy"] == 0.6  # the record itself is left alone
    # what results.json records, and the ranking's note
    recorded, note = source_accuracy_summary({"zoo": 0.9, "timm": 0.761}, records)
    assert recorded == {"given": {"zoo": 0.9, "timm": 0.761}, "replaced": {"zoo": 0.6}}
    assert note == ("source accuracy given by the user for zoo (0.9), timm (0.761); it replaces "
                    "the value recorded at pretraining for zoo (0.6)")  # fmt: skip


# --- end to end: Python API and command line -----------------------------------------------------

SMALL = FinetuneConfig(epochs=1.0, eval_every=1, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=256, n_val=128)


def _mlp(width=32):
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, width), nn.ReLU())


def test_rank_records_the_given_values_and_rescoring_needs_no_training(tmp_path, digits):
    models = [("narrow", _mlp), ("wide", lambda: _mlp(96))]
    given = {"obj:narrow": 0.55, "obj:wide": 0.75}
    out = tmp_path / "out"
    # fit/base reads a source accuracy (the bench-v3 defaults do not: they are refused there)
    result = rank(models, digits, out_dir=out, config=SMALL, source_accuracy=given,
                  score="fit/base")  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["source_accuracy"] == {"given": given, "replaced": {}}
    assert any("source accuracy given by the user for obj:narrow (0.55)" in n
               for n in data["settings"]["score"]["notes"])  # fmt: skip
    assert data["settings"]["score"]["name"] == "fit/base"
    for c in data["candidates"]:
        assert c["status"] == "ok", c["reason"]
        assert "logit_source" in c["score"]["fit"]["features"]
        assert c["score"]["features"]["logit_source"] == pytest.approx(logit(given[c["name"]]))
        assert "source_accuracy" not in c["backbone"]  # the model's own record is left alone
    with_values = {c["name"]: c["score"]["value"] for c in result.candidates}
    # the values are not part of the resume check: the same runs are scored again without them
    again = rank(models, digits, out_dir=out, config=SMALL, execution=Execution(mode="resume"),
                 score="fit/base")  # fmt: skip
    assert [c["cost_seconds"] for c in again.candidates] == [
        c["cost_seconds"] for c in result.candidates
    ]  # reused, not retrained
    data = json.loads((out / "results.json").read_text())
    assert "source_accuracy" not in data["settings"]
    assert all("logit_source" not in c["score"]["fit"]["features"] for c in data["candidates"])
    assert any("logit_source left out" in n for n in data["settings"]["score"]["notes"])
    without = {c["name"]: c["score"]["value"] for c in again.candidates}
    assert all(math.isfinite(v) for v in without.values())
    assert with_values != pytest.approx(without)
    # a file works as the mapping does
    path = tmp_path / "acc.csv"
    path.write_text("candidate,source_accuracy\nobj:narrow,0.55\nobj:wide,0.75\n")
    third = rank(
        models,
        digits,
        out_dir=out,
        config=SMALL,
        source_accuracy=path,
        execution=Execution(mode="resume"),
        score="fit/base",
    )
    assert {c["name"]: c["score"]["value"] for c in third.candidates} == pytest.approx(with_values)


def test_refused_before_training_when_the_score_reads_none(tmp_path, digits):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="does not read a source accuracy"):
        rank([("narrow", _mlp)], digits, out_dir=out, config=SMALL, score="last-observed",
             source_accuracy={"obj:narrow": 0.5})  # fmt: skip
    assert not (out / "candidates").exists()
    # the default (bench-v3's study kept no source accuracy in it) reads none either
    with pytest.raises(
        ConfigError, match=r"score ravg/lo\+logme\S* does not read a source accuracy"
    ):
        rank([("narrow", _mlp)], digits, out_dir=out, config=SMALL,
             source_accuracy={"obj:narrow": 0.5})  # fmt: skip
    with pytest.raises(ConfigError, match="not candidate"):
        rank([("narrow", _mlp)], digits, out_dir=out, config=SMALL, score="fit/base",
             source_accuracy={"narrow": 0.5})  # fmt: skip
    with pytest.raises(ConfigError, match="does not read a source accuracy"):
        rank(
            [("narrow", _mlp), ("wide", _mlp)],
            digits,
            out_dir=out,
            config=SMALL,
            strategy=Halving(HalvingSettings(score="last-observed")),
            source_accuracy={"obj:narrow": 0.5},
        )
    assert not (out / "candidates").exists() and not (out / "rungs").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--source-accuracy", "lenet=0.9,resnet=0.7"], "'resnet', not candidate"),
        (["--source-accuracy", "mlp-s=76.1"], "divide it by 100"),
        (["--source-accuracy-file", "/no/such.json"], "does not exist"),
    ],
)
def test_cli_refuses_bad_values_before_loading_the_data(tmp_path, capsys, flags, message):
    # the data name is bad too: the source accuracy's error comes first, so nothing was loaded
    code = main(["rank", "--models", "mlp-s,lenet", "--data", "no-such-data", "--out",
                 str(tmp_path / "out"), "--no-progress", *flags])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("ncap: error:"), err


def test_cli_help_names_the_flags(capsys):
    with pytest.raises(SystemExit):
        main(["rank", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--source-accuracy NAME=VALUE" in text and "--source-accuracy-file PATH" in text
    assert "the default, chosen on bench-v3, reads none" in text


def test_cli_passes_flags_and_file_to_the_ranking(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny_models.py").write_text(
        "from torch import nn\n\n"
        "def narrow():\n    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU())\n\n"
        "def wide():\n    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 96), nn.ReLU())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "acc.json").write_text('{"py:tiny_models:wide": 0.75}')
    out = tmp_path / "out"
    code = main(["rank", "--models", "py:tiny_models:narrow,py:tiny_models:wide", "--data",
                 "digits", "--n-train", "256", "--n-val", "128", "--epochs", "1", "--eval-every",
                 "1", "--no-progress", "--out", str(out), "--score", "fit/base",
                 "--source-accuracy", "py:tiny_models:narrow=0.55",
                 "--source-accuracy-file", str(tmp_path / "acc.json")])  # fmt: skip
    table = capsys.readouterr().out
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    given = {"py:tiny_models:narrow": 0.55, "py:tiny_models:wide": 0.75}
    assert data["settings"]["source_accuracy"]["given"] == given
    for c in data["candidates"]:
        assert c["score"]["features"]["logit_source"] == pytest.approx(logit(given[c["name"]]))
    # the table's source acc column shows the given values
    for name, shown in (("narrow", "55.0"), ("wide", "75.0")):
        row = next(line for line in table.splitlines() if f"py:tiny_models:{name} " in line)
        assert row.split("│")[4].strip() == shown  # rank, model, score, source acc %


def test_halving_reads_and_records_them(tmp_path, digits):
    models = [("narrow", _mlp), ("wide", lambda: _mlp(96)), ("mid", lambda: _mlp(64))]
    given = {"obj:narrow": 0.55, "obj:wide": 0.75, "obj:mid": 0.65}
    config = FinetuneConfig(epochs=2.0, eval_every=1, batch_size=64, seed=0)
    out = tmp_path / "h"
    rank(
        models,
        digits,
        out_dir=out,
        config=config,
        strategy=Halving(HalvingSettings(eta=2, min_budget=1.0, score="fit/base")),
        source_accuracy=given,
        horizon=Horizon(target_epochs=40.0),
    )
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["source_accuracy"] == {"given": given, "replaced": {}}
    for c in data["candidates"]:  # what the last rung's score (fit/base) saw
        assert c["score"]["features"]["logit_source"] == pytest.approx(logit(given[c["name"]]))
