"""bench-v3: the plan's design, reusing an earlier build's runs, and the smoke build end to end."""

import dataclasses
import json
import time

import pytest

from ncap.bench.build import _RUN_SETTINGS, build_benchmark
from ncap.bench.plans import (
    IMAGENET_MODELS,
    IMAGENET_TWINS,
    V2_PLAN,
    V2_SMOKE_PLAN,
    V3_PLAN,
    V3_SMOKE_PLAN,
    BenchPlan,
    Target,
    plan_for,
)
from ncap.data.shifts import check_shift
from ncap.exceptions import ConfigError


def test_v3_plan_meets_its_design():
    plan = plan_for("v3")
    assert plan is V3_PLAN and plan.seeds == (0, 1) and plan.epochs == 40
    # at least 5 dataset families and 14 targets; each family has targets of different kinds
    by_family = {}
    for target in plan.targets:
        assert target.family is not None
        by_family.setdefault(target.family, set()).add(
            (target.dataset, target.n_train, target.shift)
        )
        plan.config(target.n_train, 0)  # divisible into quarter epochs
        if target.shift:
            check_shift(target.shift)
    assert len(plan.targets) >= 14 and len(by_family) >= 5
    assert all(len(kinds) >= 2 for kinds in by_family.values()), by_family
    # nothing comes from the Fashion-MNIST test split: only the training-split datasets
    assert all(
        t.dataset
        in {"fashion-mnist", "fashion-mnist-5-9", "fashion-mnist-5-9-500"}
        | {"fashion-mnist-footwear", "digits"}
        for t in plan.targets
        if t.family in ("fashion-mnist", "digits")
    )
    # at least 56 models of at least 12 families; ImageNet checkpoints with their zoo twins;
    # at least 8 models pretrained on a second source task
    assert len(plan.models) == len(set(plan.models)) >= 56
    families = {plan.model_family(m) for m in plan.models}
    assert None not in families and len(families) >= 12
    sources = [plan.source_task(m) for m in plan.models]
    assert sources.count("imagenet-1k") == 4 and set(IMAGENET_MODELS) <= set(plan.models)
    assert sum(s == "glyphs-letters-k-t" for s in sources) >= 8
    for checkpoint, twin in zip(IMAGENET_MODELS, IMAGENET_TWINS, strict=True):
        assert plan.model_family(checkpoint) == plan.model_family(twin)
        assert plan.source_task(twin) == "fashion-mnist-0-4"
        assert dict(plan.input_sizes)[checkpoint] == 32
    # bench-v2's runs are reused unchanged: its models, targets and settings
    assert set(V2_PLAN.models) <= set(plan.models)
    assert all(getattr(plan, k) == getattr(V2_PLAN, k) for k in _RUN_SETTINGS)
    v3 = {t.key: t for t in plan.targets}
    for t in V2_PLAN.targets:
        assert dataclasses.replace(v3[t.key], family=None) == t
        assert all(plan.runs_on(m, t.key) for m in V2_PLAN.models)
    assert plan.reuse == "bench-v2.json"
    keys = {t.key for t in plan.targets}
    assert all(set(on) <= keys and len(on) >= 5 for _, on in plan.only_on)


def _tiny(name, targets, **changes):
    return BenchPlan(
        **(
            V2_SMOKE_PLAN.__dict__
            | {"models": ("mlp-xs",), "targets": targets, "seeds": (0,), "epochs": 1.0}
            | {"name": name}
            | changes
        )
    )


def test_a_build_reuses_the_runs_of_an_earlier_build_with_the_same_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "cache"))
    digits = Target("digits", "digits", 256, 128)
    build_benchmark(tmp_path / "a.json", _tiny("a", (digits,)), log=None)
    old_run = tmp_path / "a.json.parts" / "runs" / "digits" / "mlp-xs-s0.json"
    more = (digits, Target("digits-invert", "digits", 256, 128, shift="invert", family="digits"))
    messages = []
    results = build_benchmark(
        tmp_path / "b.json", _tiny("b", more, reuse="a.json"), log=messages.append
    )
    assert "reused 1 finished run(s)" in messages[0]
    ran = [m for m in messages if m.startswith("[")]
    assert len(ran) == 1 and "digits-invert" in ran[0]  # only the new pair ran
    new_run = tmp_path / "b.json.parts" / "runs" / "digits" / "mlp-xs-s0.json"
    assert new_run.read_bytes() == old_run.read_bytes()
    assert len(results["runs"]) == 2
    # other settings, or a target of the same key defined differently: refused before any run
    with pytest.raises(ConfigError, match="other settings \\(epochs\\)"):
        build_benchmark(tmp_path / "c.json", _tiny("c", more, reuse="a.json", epochs=2.0))
    other = (Target("digits", "digits", 512, 128),)
    with pytest.raises(ConfigError, match="defined differently"):
        build_benchmark(tmp_path / "d.json", _tiny("d", other, reuse="a.json"))


def test_v3_smoke_build_records_families_sources_and_input_conventions(tmp_path, monkeypatch):
    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "cache"))
    start = time.perf_counter()
    results = build_benchmark(tmp_path / "v3.json", V3_SMOKE_PLAN, log=None)
    seconds = time.perf_counter() - start
    plan = results["plan"]
    assert {t["key"]: t["family"] for t in plan["targets"]} == {
        "glyph-digits": "glyphs",
        "shapes": "shapes",
    }
    zoo = results["zoo"]
    assert zoo["mlp-s-glyphs"]["source_task"] == "glyphs-letters-k-t"
    assert zoo["mlp-s-glyphs"]["family"] == "mlp"
    assert zoo["cnn-xs"]["source_task"] == "digits"  # the smoke plan's source task
    effnet = "timm:mobilenetv3_small_050@random"
    assert zoo[effnet] | {"parameters": None} == {
        "family": "mobilenet-v3",
        "parameters": None,
        "source_task": "random init",
        "input_size": 32,
    }
    # 2 seeds; the ImageNet architecture on shapes only
    assert len(results["runs"]) == 2 * 2 + 2 * 2 + 2
    assert effnet not in results["training_free"]["glyph-digits"]
    inputs = {(r["target"], r["model"]): r["runtime"]["input"] for r in results["runs"]}
    assert inputs[("shapes", effnet)]["size"] == [32, 32]
    assert inputs[("shapes", effnet)]["channels"] == 3
    assert inputs[("shapes", "cnn-xs")]["channels"] == 1  # RGB shapes in grey for the zoo
    for run in results["runs"]:
        assert "beta_eff_fixed" in run["points"][0]
    print(f"v3-smoke build: {seconds:.1f} s")  # CI budget: under a minute
    assert json.loads((tmp_path / "v3.json.parts" / "plan.json").read_text())["name"] == "v3-smoke"


def test_only_models_runs_a_subset_of_an_unchanged_plan_and_the_rest_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "cache"))
    plan = _tiny("p", (Target("digits", "digits", 256, 128),), models=("mlp-xs", "cnn-xs"))
    with pytest.raises(ConfigError, match="unknown model\\(s\\) \\['vit'\\]"):
        build_benchmark(tmp_path / "p.json", plan, log=None, only_models=["vit"])
    assert build_benchmark(tmp_path / "p.json", plan, log=None, only_models=["cnn-xs"]) is None
    runs = tmp_path / "p.json.parts" / "runs" / "digits"
    assert sorted(p.name for p in runs.iterdir()) == ["cnn-xs-s0.json"]
    messages = []
    results = build_benchmark(tmp_path / "p.json", plan, log=messages.append)
    ran = [m for m in messages if m.startswith("[")]
    assert len(ran) == 1 and "mlp-xs" in ran[0]  # the same plan: only the rest ran
    assert {r["model"] for r in results["runs"]} == {"mlp-xs", "cnn-xs"}
