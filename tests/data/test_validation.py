"""The input layer (:mod:`ncap.data.validation`): what a user hands ncap is checked once, before
training, and refused with a ConfigError naming the argument or file and the fix.

Cases of issue 23 first (each asserts the error and its message), then property-based tests
(hypothesis) over arrays, label sets, image folders, recipe files and results/state files: any
input either loads into a dataset whose invariants hold or is refused with an NcapError; nothing
else (no traceback, no hang, no silent cut).
"""

import json
import math
import re
import string
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ncap.data.folders import dataset_from_arrays, load_image_folder
from ncap.exceptions import ConfigError, NcapError

X = np.zeros((20, 8, 8), dtype=np.uint8)
Y = np.arange(20) % 2


# -- the cases of the issue -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x_val": X[:6], "y_val": Y[:5]}, "x_val has 6 images but y_val 5 labels; give one label"),
        ({"x_test": X[:4], "y_test": Y[:6]}, "x_test has 4 images but y_test 6 labels"),
        ({"x_val": X[:4], "y_val": np.array([0, 1, 2, 1])},
         "y_val holds label(s) 2 that y_train never has; every class evaluated must be trained"),
        ({"x_test": X[:3], "y_test": np.array([0, 7, 9])}, "y_test holds label(s) 7, 9 that"),
        ({"y_val": Y[:4]}, "y_val is given without x_val"),
    ],
)  # fmt: skip
def test_validation_and_test_splits_are_checked_against_the_training_split(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        dataset_from_arrays(X, Y, n_val=4, **kwargs)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.r_[np.zeros(19, int), 10**12], "it holds 2 distinct labels up to 1000000000000 "
         "(missing: 1, 2, 3, 4, 5 ... (999999999999 in all)); renumber them"),
        (np.r_[np.zeros(10, int), np.full(10, 2)], "(missing: 1)"),
        (np.r_[np.zeros(19, int), -1], "y_train holds the negative label -1"),
        (np.zeros(20, int), "y_train holds 1 class (0); a classifier needs >= 2"),
        (np.full(20, 2**63, dtype=np.uint64), "beyond int64"),
    ],
)  # fmt: skip
def test_training_labels_must_be_0_to_k_minus_1(labels, message):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=re.escape(message)):
        dataset_from_arrays(X, labels, n_val=4)
    assert time.perf_counter() - start < 1.0  # a huge label is named, not allocated


def test_class_names_allow_absent_classes_but_bound_the_labels():
    data = dataset_from_arrays(X, Y * 2, n_val=4, classes=["a", "b", "c"])
    assert data.num_classes == 3 and data.classes == ("a", "b", "c")
    with pytest.raises(ConfigError, match="holds the label 2 but classes names 2"):
        dataset_from_arrays(X, Y * 2, n_val=4, classes=["a", "b"])


def _png16(path: Path, values: np.ndarray) -> None:
    Image.fromarray(values.astype(np.uint16)).save(path)  # (PIL: mode I;16)


def test_16_bit_grey_pngs_are_scaled_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    truth = {}
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for k in range(3):
            values = rng.integers(0, 65536, (6, 5))
            _png16(tmp_path / cls / f"{k}.png", values)
            truth[(cls, k)] = values
    with Image.open(tmp_path / "a" / "0.png") as img:
        assert img.mode == "I;16"
        assert np.asarray(img.convert("L")).max() == 255  # PIL alone: clipped, mostly white
    data = load_image_folder(tmp_path, n_val=2)
    pixels = torch.cat([data.x_train, data.x_val]).flatten(1).numpy()
    expected = np.array([((v * 255 + 32767) // 65535).ravel() for v in truth.values()])
    assert sorted(map(tuple, pixels)) == sorted(map(tuple, expected))  # each image, 8-bit scaled
    assert len(np.unique(pixels)) > 100  # not blank


@pytest.mark.parametrize(
    ("mode", "values", "message"),
    [
        ("I", np.array([[-5, 70000]]), "is I grey with values in [-5, 70000]"),
        ("F", np.array([[0.0, 3.5]]), "is F grey with values in [0.0, 3.5]"),
        ("F", np.array([[0.0, np.nan]]), "is F grey with values in"),
    ],
)
def test_wide_grey_images_out_of_range_are_refused_naming_the_file(tmp_path, mode, values, message):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / cls / "ok.png")
    bad = tmp_path / "a" / "wide.tiff"
    image = Image.fromarray(values.astype(np.int32 if mode == "I" else np.float32))
    assert image.mode == mode
    image.save(bad)
    with pytest.raises(ConfigError, match=re.escape(f"image file {bad} {message}")):
        load_image_folder(tmp_path, n_val=1, image_size=2)


def test_max_val_zero_is_refused_before_training(tmp_path, capsys):
    from ncap.cli.commands import main

    code = main(["rank", "--models", "mlp-s", "--data", "digits", "--max-val", "0", "--out",
                 str(tmp_path / "o"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "max_val must be >= 1 validation image" in err
    assert not (tmp_path / "o").exists()


# -- properties ----------------------------------------------------------------------------------
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

labels_st = st.lists(
    st.one_of(st.integers(0, 4), st.integers(-3, 2**62), st.floats(allow_nan=True)),
    min_size=0,
    max_size=24,
)


@FAST
@given(
    n=st.integers(0, 24),
    shape=st.sampled_from([(6, 6), (1, 6, 6), (3, 5, 5), (5, 5, 3), (2, 4, 4), (6,)]),
    dtype=st.sampled_from([np.uint8, np.float32, np.int32, np.bool_, np.float64]),
    scale=st.sampled_from([1.0, 255.0, math.inf]),
    labels=labels_st,
    n_val=st.integers(-1, 10),
)
def test_any_array_dataset_is_sound_or_refused(n, shape, dtype, scale, labels, n_val):
    with np.errstate(invalid="ignore", over="ignore"):  # (inf pixels cast: the refusals' test)
        x = (np.random.default_rng(n).random((n, *shape)) * scale).astype(dtype)
    try:
        data = dataset_from_arrays(x, np.array(labels), n_val=n_val)
    except ConfigError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert len(data.x_train) == len(data.y_train) > 0 and len(data.x_val) == len(data.y_val) > 0
    assert len(data.y_train) + len(data.y_val) == n == len(labels)  # nothing cut
    assert data.num_classes == len(set(np.array(labels).astype(np.int64).tolist()))
    everything = torch.cat([data.y_train, data.y_val])
    assert int(everything.min()) >= 0 and int(everything.max()) < data.num_classes


@FAST
@given(train=st.lists(st.integers(0, 5), min_size=2, max_size=20), val=labels_st)
def test_validation_labels_are_training_labels_or_refused(train, val):
    x = np.zeros((len(train), 4, 4), np.uint8)
    xv = np.zeros((len(val), 4, 4), np.uint8)
    try:
        data = dataset_from_arrays(x, np.array(train), x_val=xv, y_val=np.array(val))
    except ConfigError:
        return
    assert set(data.y_val.tolist()) <= set(data.y_train.tolist())
    assert sorted(set(data.y_train.tolist())) == list(range(data.num_classes))
    assert len(data.y_val) == len(val)


MODES = ["L", "RGB", "I;16", "LA", "P", "1", "RGBA", "I", "F"]


def _image(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.int32))
    if mode == "F":
        return Image.fromarray(rng.random((h, w)).astype(np.float32))
    return Image.fromarray(rng.integers(0, 256, (h, w, 3)).astype(np.uint8)).convert(mode)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(MODES),
            st.tuples(st.integers(1, 9), st.integers(1, 9)),
            st.sampled_from([".png", ".tiff", ".bmp", ".junk.png"]),
        ),
        min_size=1,
        max_size=6,
    ),
    corrupt=st.booleans(),
)
def test_any_image_folder_loads_soundly_or_is_refused_naming_a_path(files, corrupt):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k, (cls, mode, size, suffix) in enumerate(files):
            folder = root / f"class{cls}"
            folder.mkdir(exist_ok=True)
            if suffix == ".junk.png" and corrupt:
                (folder / f"{k}.png").write_bytes(b"\x89PNG not really")
                continue
            if mode in ("I", "F"):
                suffix = ".tiff"  # (PNG and BMP have no 32-bit grey)
            elif suffix == ".junk.png":
                suffix = ".png"
            img = _image(mode, size, k)
            if suffix == ".bmp" and mode in ("I;16", "LA", "RGBA"):
                img = img.convert("RGB") if mode in ("LA", "RGBA") else img.convert("L")
            img.save(folder / f"{k}{suffix}")
        try:
            data = load_image_folder(root, n_val=1)
        except NcapError as err:
            assert str(tmp) in str(err) and "\n" not in str(err)
            return
        assert data.x_train.dtype == torch.uint8 and data.x_train.shape[1] in (1, 3)
        assert len(data.y_train) + len(data.y_val) == len(files)
        assert 2 <= data.num_classes <= 3


SCALARS = st.one_of(
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(string.printable, max_size=8),
    st.booleans(),
    st.lists(st.integers(-5, 300), max_size=4),
    st.lists(st.text(string.ascii_letters + ":_", max_size=6), max_size=3),
)
RUN_KEYS = ["budget_epochs", "steps", "eval_every", "full_epochs", "target_epochs", "batch_size",
            "lr", "optimizer", "seed", "probe_hidden", "max_val", "val_share", "bogus"]  # fmt: skip


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)  # fmt: skip
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@FAST
@given(
    models=st.one_of(SCALARS, st.just(["mlp-s", "lenet"])),
    run=st.dictionaries(st.sampled_from(RUN_KEYS), SCALARS, max_size=4),
    datasets=st.lists(
        st.dictionaries(
            st.sampled_from(["name", "n_val", "n_train", "input_size", "image_size"]),
            st.one_of(SCALARS, st.just("digits")),
            max_size=3,
        ),
        max_size=2,
    ),  # fmt: skip
    garble=st.one_of(st.none(), st.binary(max_size=20)),
)
def test_any_recipe_file_loads_or_is_refused_naming_the_file(models, run, datasets, garble):
    from ncap.recipe.schema import load_recipe

    lines = [f"models = {_toml(models)}", "[run]"]
    lines += [f"{k} = {_toml(v)}" for k, v in run.items()]
    for table in datasets:
        lines += ["[[datasets]]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.toml"
        text = "\n".join(lines).encode()
        path.write_bytes(text if garble is None else text[: len(text) // 2] + garble)
        try:
            load_recipe(path)
        except NcapError as err:
            assert str(path) in str(err) or "r.toml" in str(err), str(err)


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["settings", "record", "name", "status",
                                                             "candidates", "ranking", "rungs"]),
                                            inner, max_size=4)),
    max_leaves=12,
)  # fmt: skip


@FAST
@given(content=JSON)
def test_any_results_or_state_file_is_read_or_refused(content):
    from ncap.ranking.halving_state import check_state, read_rung_record
    from ncap.ranking.store import load_finished
    from ncap.results import load_results

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "candidates").mkdir()
        for path in (out / "results.json", out / "rungs.json", out / "candidates" / "a.json",
                     out / "r.json"):  # fmt: skip
            path.write_text(json.dumps(content))
        try:
            load_results(out)
        except ConfigError as err:
            assert "results.json" in str(err)
        assert isinstance(load_finished(out, on_malformed=lambda p, m: None), dict)
        try:
            problem = check_state(out / "rungs.json", {"seed": 0})
            assert problem is None or isinstance(problem, str)
            record, problem = read_rung_record(out / "r.json", "a", {"seed": 0})
            assert (record is None) != (problem is None) or (record, problem) == (None, None)
        except ConfigError as err:
            assert "was produced with different settings" in str(err)
