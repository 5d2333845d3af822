"""One definition per setting: the command line's flags, a recipe's [run] keys and the benchmark
plans are derived from FinetuneConfig's fields; the predictor's settings are its estimator's params."""

import dataclasses

import pytest
from sklearn.base import clone

from ncap.bench.plans import FULL_PLAN, BenchPlan
from ncap.cli.args import config_from_args, settings_from_args
from ncap.cli.parser import build_parser
from ncap.predict.capacitance import CapacitancePredictor, PredictorSettings, estimator
from ncap.recipe.schema import RUN_KEYS, load_recipe
from ncap.training.config import FinetuneConfig

FIELDS = dataclasses.fields(FinetuneConfig)
# a valid value other than the default, per field, and how it is written on the command line
OTHER = {
    "epochs": (2.5, "2.5"),
    "steps": (7, "7"),
    "eval_every": (3, "3"),
    "batch_size": (32, "32"),
    "lr": (0.01, "0.01"),
    "optimizer": ("sgd", "sgd"),
    "momentum": (0.5, "0.5"),
    "weight_decay": (0.1, "0.1"),
    "probe_hidden": ((16, 8, 4), "16,8,4"),
    "probe_activation": ("tanh", "tanh"),
    "variants": (("abs-mean",), "abs-mean"),
    "fixed_batch": (128, "128"),
    "seed": (3, "3"),
    "max_val": (100, "100"),
    "val_share": (0.25, "0.25"),
    "eval_anchor": (5, "5"),  # not a flag nor a recipe key: set by a longer run (full_epochs)
    "input_size": (32, "32"),
    "max_input_size": (64, "64"),
}
FLAGS = [f.name for f in FIELDS if f.metadata["flag"]]
BASE = ["rank", "--models", "mlp-s", "--data", "digits", "--out", "x"]


def test_every_field_has_a_test_value():
    assert set(OTHER) == {f.name for f in FIELDS}


def test_cli_defaults_are_the_config_defaults():
    args = build_parser().parse_args(BASE)
    assert config_from_args(args) == FinetuneConfig()
    config, predictor = settings_from_args(args, args.epochs)
    assert predictor == PredictorSettings()


def test_internal_fields_are_no_flags():
    assert {f.name for f in FIELDS} - set(FLAGS) == {"eval_anchor"}
    with pytest.raises(SystemExit):
        build_parser().parse_args([*BASE, "--eval-anchor", "5"])


@pytest.mark.parametrize("field", FLAGS)
def test_every_field_is_a_flag(field):
    value, text = OTHER[field]
    args = build_parser().parse_args([*BASE, "--" + field.replace("_", "-"), text])
    assert getattr(config_from_args(args), field) == value
    for command in (["demo"], ["nas", "--out", "x"]):  # the other training commands too
        args = build_parser().parse_args([*command, "--" + field.replace("_", "-"), text])
        assert getattr(config_from_args(args), field) == value


def test_every_field_is_a_recipe_key(tmp_path):
    keys = {name: key for key, (name, _, _) in RUN_KEYS.items() if name}
    # input_size: per dataset; eval_anchor: set by a longer run, never by hand
    assert set(keys) == {f.name for f in FIELDS} - {"input_size", "eval_anchor"}
    lines = []
    for name, key in keys.items():
        value = OTHER[name][0]
        value = list(value) if isinstance(value, tuple) else value
        lines.append(f"{key} = {value!r}".replace("'", '"').replace("(", "[").replace(")", "]"))
    path = tmp_path / "all.toml"
    path.write_text(
        'models = ["mlp-s"]\n[run]\n' + "\n".join(lines)
        + '\n[[datasets]]\nname = "digits"\ninput_size = 32\n'
    )  # fmt: skip
    recipe = load_recipe(path)
    for name in keys:
        assert getattr(recipe.config, name) == OTHER[name][0], name
    assert recipe.datasets[0].input_size == 32
    empty = tmp_path / "empty.toml"
    empty.write_text('models = ["mlp-s"]\n[[datasets]]\nname = "digits"\n')
    assert load_recipe(empty).config == FinetuneConfig()


def test_bench_plan_defaults_and_configs_are_finetune_config():
    shared = [
        f.name
        for f in dataclasses.fields(BenchPlan)
        if f.name in FinetuneConfig.__dataclass_fields__
    ]
    assert set(shared) == {"epochs", "batch_size", "lr", "optimizer", "probe_hidden"}
    plan = BenchPlan(models=("mlp-s",), targets=())
    default = FinetuneConfig()
    for name in shared:
        if name != "epochs":  # the benchmark's full budget is its own
            assert getattr(plan, name) == getattr(default, name), name
    config = FULL_PLAN.config(1024, seed=1)
    assert isinstance(config, FinetuneConfig)
    assert (config.epochs, config.seed, config.eval_every) == (FULL_PLAN.epochs, 1, 4)


def test_predictor_settings_are_the_estimators_params():
    names = [f.name for f in dataclasses.fields(PredictorSettings)]
    assert set(names) == set(CapacitancePredictor().get_params())
    settings = PredictorSettings(features="linear", burn_in=1)
    model = estimator(settings)
    assert clone(model).get_params() == dataclasses.asdict(settings)
    assert model.settings() == settings
    with pytest.raises(ValueError, match="feature map"):
        PredictorSettings(features="cubic")
