import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ncap.data.idx import fashion_mnist_dir
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.models.profile import model_profile
from ncap.ranking.spec import Execution
from ncap.recipe.estimate import estimate_compute, split_sizes
from ncap.recipe.plan import check_models, describe_plan
from ncap.recipe.run import run_recipe
from ncap.recipe.schema import Recipe, RecipeDataset, load_recipe
from ncap.training.config import FinetuneConfig

PAPER = Path(__file__).resolve().parents[2] / "recipes" / "paper.toml"
# a model belongs to a family when its name contains one of these (GoogLeNet is Inception v1,
# Xception "extreme Inception")
FAMILIES = {
    "vgg": ("vgg",),
    "resnet": ("resnet",),
    "densenet": ("densenet",),
    "inception": ("inception", "googlenet", "xception"),
    "mobilenet": ("mobilenet",),
    "efficientnet": ("efficientnet",),
}
PAPER_INPUT = {"cifar10": 32, "cifar100": 32, "svhn": 32, "fashion-mnist": 32, "cub200": 224}


@pytest.fixture(scope="module")
def paper():
    return load_recipe(PAPER)


def write(tmp_path, text, name="r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the shipped recipe -------------------------------------------------------------------------
def test_paper_recipe_follows_the_paper(paper):
    assert len(paper.models) == 17 == len(set(paper.models))
    for family, needles in FAMILIES.items():
        members = [m for m in paper.models if any(n in m for n in needles)]
        assert members, f"no {family} model"
    assert {d.name: d.input_size for d in paper.datasets} == PAPER_INPUT
    assert all(d.n_val == 15000 for d in paper.datasets if d.name != "cub200")
    cub = paper.dataset("cub200")
    assert cub.image_size == 224 and 0 < cub.n_val < 5994
    assert (paper.config.batch_size, paper.config.lr, paper.full_epochs) == (64, 1e-3, 50.0)
    assert paper.config.epochs < paper.full_epochs and paper.config.input_size is None


def test_paper_models_are_known_and_take_the_input_sizes(paper):
    assert check_models(paper) == []


def test_check_models_reports_unknown_names_and_sizes(tmp_path):
    recipe = Recipe(
        name="bad",
        models=("timm:resnet5O", "tv:resnet50@NOPE", "tv:inception_v3", "tv:resnet18", "xyz:a"),
        datasets=(RecipeDataset("cifar10", input_size=32),),
    )
    problems = check_models(recipe)
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "timm:resnet5O" in text and "resnet50" in text  # the close match is suggested
    assert "NOPE" in text and "IMAGENET1K_V2" in text
    assert "tv:inception_v3 cannot take 32x32" in text and "cifar10" in text
    assert "unknown model source 'xyz'" in text
    assert check_models(recipe, input_sizes=False) == problems[:3]  # names first, then sizes


# -- load errors ----------------------------------------------------------------------------------
GOOD = """
models = ["tv:resnet18@random"]
[run]
budget_epochs = 1
[[datasets]]
name = "cifar10"
input_size = 32
"""


@pytest.mark.parametrize(
    "old, new, key, fix",
    [
        ("budget_epochs = 1", "bach_size = 8", "run.bach_size", "batch_size"),
        ('name = "cifar10"', 'name = "cifar-10"', "datasets[0].name", "cifar10"),
        ('["tv:resnet18@random"]', "[]", "models", "models = ["),
        ('["tv:resnet18@random"]', '["tv:a", "tv:a"]', "models", "once"),
        ("budget_epochs = 1", 'budget_epochs = "1"', "run.budget_epochs", "a number"),
        ("input_size = 32", "input_size = 32.5", "datasets[0].input_size", "an integer"),
        ("budget_epochs = 1", 'optimizer = "adma"', "run", "optimizer"),
        ("budget_epochs = 1", "budget_epochs = 2\nfull_epochs = 1", "run.full_epochs", "raise"),
        ("budget_epochs = 1", "budget_epochs = 2\ntarget_epochs = 1", "run.target_epochs", "raise"),
        ("budget_epochs = 1", "target_epochs = -3", "run.target_epochs", "positive"),
        ("[run]", "[runn]", "runn", "'run'"),
    ],
)
def test_load_errors_name_the_file_the_key_and_the_fix(tmp_path, old, new, key, fix):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ValueError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message and f": {key}:" in message and fix in message, message


def test_missing_datasets_and_defaults(tmp_path):
    with pytest.raises(ValueError, match=r": datasets: missing"):
        load_recipe(write(tmp_path, 'models = ["tv:resnet18"]\n'))
    recipe = load_recipe(write(tmp_path, GOOD, "mini.toml"))
    assert recipe.name == "mini" and recipe.full_epochs is None and recipe.target_epochs is None
    with_target = load_recipe(
        write(tmp_path, GOOD.replace("budget_epochs = 1", "target_epochs = 40"))
    )
    assert with_target.target_epochs == 40.0 and with_target.to_dict()["run"]["target_epochs"] == 40
    assert recipe.config == FinetuneConfig(epochs=1)
    assert recipe.predictor.features == "quadratic"  # ncap's default PredictorSettings


# -- the compute estimate -------------------------------------------------------------------------
def vgg16_flops(size):
    """Forward FLOPs (2 per multiply-add) of torchvision's VGG16 features, counted by hand."""
    flops, channels = 0, 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]:
        if v == "M":
            size //= 2
        else:
            flops += 2 * 9 * channels * v * size * size
            channels = v
    return flops + 2 * 512 * 7 * 7 * 4096 + 2 * 4096 * 4096  # fc6, fc7 (fc8 is removed)


def test_model_profile_counts_flops_exactly():
    assert model_profile("tv:vgg16", 32)["flops"] == vgg16_flops(32)
    assert model_profile("tv:vgg16", 224)["flops"] == vgg16_flops(224)
    # torchvision's metadata: GFLOPS (multiply-adds) at 224 pixels, rounded to 3 decimals
    import torchvision

    ops = torchvision.models.get_model_weights("resnet50").DEFAULT.meta["_ops"]
    assert model_profile("tv:resnet50@random", 224)["flops"] / 2e9 == pytest.approx(ops, abs=5e-3)


def test_split_sizes_match_the_loaders():
    assert split_sizes(RecipeDataset("cifar10", n_val=15000)) == (35000, 15000, 10000)
    assert split_sizes(RecipeDataset("cub200", n_val=1200)) == (4794, 1200, 5794)
    assert split_sizes(RecipeDataset("svhn", n_train=1000)) == (1000, 15000, 26032)
    digits = load_dataset("digits")
    assert split_sizes(RecipeDataset("digits")) == (len(digits.y_train), len(digits.y_val), 0)
    if fashion_mnist_dir() is not None:
        fm = load_dataset("fashion-mnist", n_val=15000)
        assert split_sizes(RecipeDataset("fashion-mnist", n_val=15000)) == (
            len(fm.y_train), len(fm.y_val), len(fm.y_test),
        )  # fmt: skip


def test_estimate_formula_on_one_model(tmp_path):
    # val_share=0: every evaluation on max_val images (the default plan: test_estimate_default_plan)
    config = FinetuneConfig(epochs=2, eval_every=100, batch_size=64, max_val=5000, val_share=0)
    recipe = Recipe(
        name="one",
        models=("tv:vgg16",),
        datasets=(RecipeDataset("cifar10", input_size=32, n_val=15000),),
        config=config,
        full_epochs=4,
    )
    est = estimate_compute(recipe, sustained_tflops=50, op_overhead_us=20)
    f, n_train, n_test = vgg16_flops(32), 35000, 10000
    steps_per_epoch = math.ceil(n_train / 64)  # 547
    budget_steps, full_steps = 2 * steps_per_epoch, 4 * steps_per_epoch
    budget_evals = budget_steps // 100 + 1  # every 100 steps and the last one
    full_evals = full_steps // 100 + 1 + 1  # ... and where the budget ends
    row = est["datasets"]["cifar10"]
    assert (row["budget"]["steps"], row["budget"]["evaluations"]) == (budget_steps, budget_evals)
    assert (row["full"]["steps"], row["full"]["evaluations"]) == (full_steps, full_evals)
    budget = 3 * f * 2 * n_train + f * (budget_evals * 5000 + n_test)
    full = 3 * f * 4 * n_train + f * (full_evals * 5000 + n_test)
    assert row["budget"]["flops"] == pytest.approx(budget, rel=1e-12)
    assert row["full"]["flops"] == pytest.approx(full, rel=1e-12)
    # hours: per phase, the larger of FLOP-bound and launch-bound time
    ops = model_profile("tv:vgg16", 32)["ops"]
    train_s = max(3 * f * 2 * n_train / 50e12, 3 * ops * 20e-6 * budget_steps)
    batches = budget_evals * math.ceil(5000 / 512) + math.ceil(n_test / 512)
    eval_s = max(f * (budget_evals * 5000 + n_test) / 50e12, ops * 20e-6 * batches)
    assert row["budget"]["gpu_hours"] == pytest.approx((train_s + eval_s) / 3600, rel=1e-12)
    assert est["total"]["budget"]["flops"] == row["budget"]["flops"]
    assert est["models"]["tv:vgg16"]["32"]["gflops"] == pytest.approx(f / 1e9)


def test_estimate_default_plan(tmp_path):
    """At the default schedule the estimate counts 4 evaluations in the budget: 3 on a 1/8 subset
    and the last on val_share x the budget's training images; the full run repeats them."""
    recipe = Recipe(
        name="one",
        models=("tv:vgg16",),
        datasets=(RecipeDataset("cifar10", input_size=32, n_val=15000),),
        config=FinetuneConfig(epochs=1),
        full_epochs=2,
    )
    est = estimate_compute(recipe, sustained_tflops=50, op_overhead_us=20)
    f, n_train, n_test = vgg16_flops(32), 35000, 10000
    steps = math.ceil(n_train / 64)  # 547: points at 69, 137, 274 and 547
    full = math.ceil(0.125 * 64 * steps)  # 4376 images at the budget's end (and the run's)
    subset = math.ceil(full / 8)  # 547
    row = est["datasets"]["cifar10"]
    assert row["budget"]["evaluations"] == 4
    assert row["full"]["evaluations"] == 5  # ... and at the run's end (2 x 547 = a doubling)
    budget_evals = 3 * subset + full
    assert row["budget"]["flops"] == pytest.approx(
        3 * f * n_train + f * (budget_evals + n_test), rel=1e-12
    )
    assert row["full"]["flops"] == pytest.approx(
        3 * f * 2 * n_train + f * (budget_evals + full + n_test), rel=1e-12
    )


def test_estimate_of_the_paper_recipe_scales(paper):
    est = estimate_compute(paper)
    assert est["not_counted"] == []
    assert set(est["datasets"]) == set(PAPER_INPUT)
    for row in est["datasets"].values():
        assert 0 < row["budget"]["flops"] < row["full"]["flops"]
        assert 0 < row["budget"]["gpu_hours"] < row["full"]["gpu_hours"]
        assert set(row["per_model"]) == set(paper.models)
    total = est["total"]
    assert total["full"]["flops"] == pytest.approx(
        sum(r["full"]["flops"] for r in est["datasets"].values())
    )
    doubled = estimate_compute(dataclasses.replace(paper, full_epochs=100.0))["total"]["full"]
    assert 1.9 < doubled["flops"] / total["full"]["flops"] < 2.05
    assert 1.9 < doubled["gpu_hours"] / total["full"]["gpu_hours"] < 2.05
    faster = estimate_compute(paper, sustained_tflops=200, op_overhead_us=5)["total"]["full"]
    assert faster["gpu_hours"] == pytest.approx(total["full"]["gpu_hours"] / 2, rel=1e-9)
    plan = describe_plan(paper, estimate=est)
    assert all(m in plan for m in paper.models) and all(d in plan for d in PAPER_INPUT)
    assert "GPU-hours" in plan and "50 epochs" in plan


# -- end to end ----------------------------------------------------------------------------------
MINI = """
name = "mini"
models = ["timm:resnet10t@random", "tv:squeezenet1_0@random"]

[run]
steps = 4
eval_every = 1
batch_size = 4
full_epochs = 1
target_epochs = 20

[predictor]
features = "linear"

[[datasets]]
name = "./shapes"
input_size = 32
"""


def write_image_folder(root, classes=3, per_class=8, size=20):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size, 3)) + 90 * c  # classes differ in level
            Image.fromarray(pixels.astype(np.uint8)).save(root / f"class{c}" / f"{k}.png")


def test_run_recipe_end_to_end(tmp_path):
    write_image_folder(tmp_path / "shapes")
    # "shapes" is also a built-in (generated) dataset: a folder of that name must be said so
    with pytest.raises(ConfigError, match="both a built-in dataset and a folder"):
        load_recipe(write(tmp_path, MINI.replace('"./shapes"', '"shapes"')))
    recipe = load_recipe(write(tmp_path, MINI))  # "./shapes" is relative to the recipe's folder
    assert recipe.datasets[0].name == str((tmp_path / "shapes").resolve())
    assert recipe.datasets[0].slug == "shapes"
    assert check_models(recipe) == []
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="shapes"):
        run_recipe(recipe, out_dir=out, datasets=["cifar10"])
    with pytest.raises(ValueError, match="timm:resnet10t@random"):
        run_recipe(recipe, out_dir=out, models=["tv:resnet18"])

    results = run_recipe(recipe, out_dir=out)
    assert list(results) == ["shapes"]
    data = json.loads((out / "shapes" / "results.json").read_text())
    assert [c["status"] for c in data["candidates"]] == ["ok", "ok"], data["candidates"]
    assert sorted(data["ranking"]) == sorted(recipe.models)
    for c in data["candidates"]:
        assert c["final_accuracy"] is not None  # full_epochs = 1: 5 steps
        assert [p["step"] for p in c["trajectory"]][:4] == [1, 2, 3, 4]
    assert data["settings"]["finetune"]["input_size"] == 32
    assert data["settings"]["predictor"]["features"] == "linear"
    assert data["settings"]["score"]["target_epochs"] == 20  # T from the recipe, not full_epochs
    summary = json.loads((out / "recipe.json").read_text())
    assert summary["recipe"]["models"] == list(recipe.models)
    row = summary["datasets"]["shapes"]
    assert row["status"] == "done" and row["ranking"] == data["ranking"]
    assert row["results"] == str(out / "shapes" / "results.json") and row["failed"] == {}

    with pytest.raises(FileExistsError):  # existing results are never silently replaced
        run_recipe(recipe, out_dir=out)
    again = run_recipe(
        recipe, out_dir=out, execution=Execution(mode="resume")
    )  # nothing left to run
    assert again["shapes"].ranking == data["ranking"]


def test_cli_recipe_dry_run_and_run(tmp_path, capsys):
    from ncap.cli.commands import main

    write_image_folder(tmp_path / "shapes")
    path = write(tmp_path, MINI)
    assert main(["recipe", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "timm:resnet10t@random" in printed and "estimate" in printed
    assert not (tmp_path / "out").exists()  # a dry run runs nothing
    bad = write(tmp_path, MINI.replace("tv:squeezenet1_0@random", "tv:no_such_net"), "bad.toml")
    assert main(["recipe", str(bad), "--out", str(tmp_path / "bad"), "--dry-run"]) == 2
    assert "no_such_net" in capsys.readouterr().err
    code = main(["recipe", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0 and "ncap ranking on" in capsys.readouterr().out
    assert (tmp_path / "out" / "recipe.json").exists()
