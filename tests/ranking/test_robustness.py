"""Issue 11: nothing a user feeds ncap stops a whole run, corrupts results or passes silently.

One test per class of the issue, each with several cases; each asserts the exit code, the message
and that finished work is intact (file hashes before and after). Candidates are tiny ``py:``
models (no pretraining) on 256 digits images.
"""

import errno
import hashlib
import json
import math
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import ncap.storage
from ncap.cli.commands import main
from ncap.exceptions import CandidateError, ConfigError
from ncap.results import TrajectoryPoint

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def ok():
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU()), 32

    def wide():
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.ReLU()), 48

    def raises():
        raise RuntimeError("boom in factory")

    def needs_args(width):
        return ok()

    def exits():
        raise SystemExit(3)

    def bad_pair():
        return nn.Flatten(), "abc"

    class Tuple(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 16)

        def forward(self, x):
            z = self.lin(x.flatten(1))
            return z, z

    def tuple_out():
        return Tuple()

    class BatchMean(Tuple):
        def forward(self, x):
            return self.lin(x.flatten(1)).mean(0, keepdim=True)

    def batch_mean():
        return BatchMean()

    def frozen():
        m = nn.Sequential(nn.Flatten(), nn.Linear(784, 16))
        for p in m.parameters():
            p.requires_grad_(False)
        return m
    """
)
BASE = ["--data", "digits", "--n-train", "256", "--n-val", "128", "--steps", "4",
        "--eval-every", "1", "--no-progress"]  # fmt: skip


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """A user's model module (``py:robust_models:<name>``) and checkpoints beside it."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "robust_models.py").write_text(MODELS)
    (folder / "broken_import.py").write_text("raise RuntimeError('module-level failure')\n")
    (folder / "bad_syntax.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(folder))
    for mod in ("robust_models", "broken_import", "bad_syntax"):
        sys.modules.pop(mod, None)
    from torch import nn

    good = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU()).state_dict()
    torch.save(good, folder / "good.pt")
    data = (folder / "good.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "garbage.pt").write_bytes(b"this is not a checkpoint")
    (folder / "empty.pt").write_bytes(b"")
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(784, 64)).state_dict(), folder / "shape.pt")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {folder / 'PWNED'}",))

    torch.save({"x": Evil()}, folder / "evil.pt")
    return folder


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".ncap.lock"
    }


def _run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _results(out: Path) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((out / "results.json").read_text())["candidates"]}


# 1. one bad candidate never stops the run ------------------------------------------------------
def test_a_bad_candidate_is_recorded_and_the_others_go_on(user_models, tmp_path, capsys):
    f = user_models
    bad = {
        "py:robust_models:raises": "py:robust_models:raises raised RuntimeError: boom in factory",
        "py:robust_models:needs_args": "raised TypeError: needs_args() missing 1 required",
        "py:robust_models:exits": "py:robust_models:exits raised SystemExit: 3",
        "py:broken_import:f": "importing 'broken_import' for py:broken_import:f raised "
        "RuntimeError: module-level failure",
        "py:bad_syntax:f": "raised SyntaxError",
        "py:robust_models:bad_pair": "num_features must be a positive int",
        f"py:robust_models:ok@{f / 'truncated.pt'}": f"checkpoint {f / 'truncated.pt'} cannot be "
        "loaded",
        f"py:robust_models:ok@{f / 'garbage.pt'}": "not a PyTorch checkpoint, or damaged",
        f"py:robust_models:ok@{f / 'empty.pt'}": "the file is empty or truncated",
        f"py:robust_models:ok@{f / 'evil.pt'}": "weights_only=True refuses to unpickle",
        f"py:robust_models:ok@{f / 'shape.pt'}": f"checkpoint {f / 'shape.pt'} does not fit the "
        "model: size mismatch for 1.weight",
        "py:robust_models:tuple_out": "the backbone returns a tuple, not a tensor",
        "py:robust_models:batch_mean": "maps a batch of 2 images to 1 feature rows",
        "py:robust_models:frozen": "the backbone has no trainable parameters",
    }
    good = ["py:robust_models:ok", f"py:robust_models:ok@{f / 'good.pt'}"]
    out = tmp_path / "out"
    code, _, err = _run(capsys, "rank", "--models", ",".join([good[0], *bad, good[1]]),
                        *BASE, "--out", str(out))  # fmt: skip
    assert code == 0  # some candidates succeeded
    records = _results(out)
    for name, reason in bad.items():
        assert records[name]["status"] == "failed", name
        assert reason in records[name]["reason"], (name, records[name]["reason"])
        assert "\n" not in records[name]["reason"]  # one line
        assert f"{name} failed: " in err
    assert [records[n]["status"] for n in good] == ["ok", "ok"]
    assert not (f / "PWNED").exists()  # the malicious pickle was never executed
    # every candidate has its own file, written when it finished
    assert len(list((out / "candidates").glob("*.json"))) == len(bad) + len(good)


# 2. divergence is a failure, not a result ------------------------------------------------------
@pytest.mark.parametrize("lr", ["1e3", "100", "10"])
def test_a_diverging_run_is_a_failed_candidate_with_its_step(user_models, tmp_path, capsys, lr):
    out = tmp_path / "out"
    code, _, _ = _run(capsys, "rank", "--models", "py:robust_models:ok", *BASE, "--lr", lr,
                      "--out", str(out))  # fmt: skip
    assert code == 1  # every candidate failed
    record = _results(out)["py:robust_models:ok"]
    assert record["status"] == "failed" and record["predicted_accuracy"] is None
    assert "training diverged at step " in record["reason"]
    assert f"lower the learning rate (now {float(lr):g})" in record["reason"]


def _point(step: int, val_loss: float, beta: float | None = 1e-3) -> TrajectoryPoint:
    return {"step": step, "epoch": step / 4, "beta_eff": {"abs-mean": beta, "signed": None},
            "train_loss": 2.3, "val_loss": val_loss, "val_accuracy": 0.1, "wall_time": 0.0}  # fmt: skip


def test_divergence_guard_cases():
    from ncap.training.divergence import DivergenceGuard

    guard = DivergenceGuard(10, lr=0.1)
    for step, loss in enumerate([2.4, 2.0, 1.5, 30.0, 1.0], start=1):  # a spike 12x: not diverged
        guard.on_step_end(step, loss, 64)
    guard.on_evaluate(_point(5, 2.0))
    guard.on_evaluate(_point(6, 2.0, beta=None))  # undefined beta_eff is not an overflow
    with pytest.raises(CandidateError, match="diverged at step 7: the loss is 1e\\+10, over 100"):
        guard.on_step_end(7, 1e10, 64)
    with pytest.raises(CandidateError, match="diverged at step 3: the loss is nan"):
        DivergenceGuard(10, lr=0.1).on_step_end(3, math.nan, 64)
    with pytest.raises(
        CandidateError, match="at step 8: beta_eff \\(abs-mean\\) overflowed to inf"
    ):
        guard.on_evaluate(_point(8, 2.0, beta=math.inf))
    with pytest.raises(CandidateError, match="at step 9: the validation loss is inf"):
        guard.on_evaluate(_point(9, math.inf))


def test_divergence_guard_state_survives_a_checkpoint():
    """A continued run compares with the first run's starting loss, not its own first step's."""
    from ncap.training.divergence import DivergenceGuard

    first = DivergenceGuard(10, lr=0.1)
    first.on_step_end(1, 5.0, 64)  # starting loss 5.0, above chance (ln 10): the reference
    continued = DivergenceGuard(10, lr=0.1)
    continued.load_state_dict(first.state_dict())
    continued.on_step_end(2, 400.0, 64)  # 80 x the starting loss: not diverged
    fresh = DivergenceGuard(10, lr=0.1)
    fresh.on_step_end(2, 1.0, 64)  # reference: chance, ln 10
    with pytest.raises(CandidateError, match="over 100 x its starting value 2.3"):
        fresh.on_step_end(3, 400.0, 64)


def test_recorded_benchmark_runs_never_trip_the_guard():
    """No false positives: every fine-tuning run of bench-v1 passes the divergence guard."""
    from ncap.training.divergence import DivergenceGuard

    path = Path(__file__).parents[2] / "benchmarks" / "results" / "bench-v1.json"
    runs = json.loads(path.read_text())["runs"]
    for run in runs:
        guard = DivergenceGuard(5, lr=1e-3)
        for p in run["points"]:
            guard.on_step_end(p["step"], p["train_loss"], 64)
            guard.on_evaluate(p)


# 3. inputs are checked before any training starts -----------------------------------------------
def _image_folder(root: Path, *, mode="L", size=(28, 28), n=6, classes=("a", "b")) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(
                root / c / f"{k}.png"
            )
    return root


def test_inputs_are_checked_before_any_training(tiny_zoo, user_models, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    folders = tmp_path / "folders"
    corrupt = _image_folder(folders / "corrupt")
    (corrupt / "a" / "bad.png").write_bytes(b"not a png")
    truncated = _image_folder(folders / "truncated")
    data = (truncated / "b" / "0.png").read_bytes()
    (truncated / "b" / "0.png").write_bytes(data[: len(data) // 2])
    empty_class = _image_folder(folders / "empty")
    (empty_class / "c").mkdir()
    rgb = _image_folder(folders / "rgb", mode="RGB", size=(40, 40), n=40)
    ok = "py:robust_models:ok"
    cases = [
        (["--models", ok, *BASE, "--out", str(afile)], f"{afile} is a file"),
        (["--models", ok, *BASE, "--out", str(afile / "sub")], f"{afile} is a file"),
        (["--models", ok, *BASE, "--out", str(tmp_path / "o"), "--resume", "--overwrite"],
         "pass one of the two"),
        (["--models", ok, *BASE[:2], "--n-train", "-5", *BASE[4:], "--out", str(tmp_path / "o")],
         "n_train must be a positive number of images, got -5"),
        (["--models", ok, *BASE[:2], "--n-train", "100000", *BASE[4:], "--out",
          str(tmp_path / "o")], "n_train=100000 but digits has only 1669 training images"),
        (["--models", ok, "--data", str(corrupt), "--out", str(tmp_path / "o")],
         f"image file {corrupt / 'a' / 'bad.png'} cannot be read"),
        (["--models", ok, "--data", str(truncated), "--out", str(tmp_path / "o")],
         f"image file {truncated / 'b' / '0.png'} cannot be read"),
        (["--models", ok, "--data", str(empty_class), "--out", str(tmp_path / "o")],
         f"class folder(s) {empty_class / 'c'} hold no images"),
        (["--models", "mlp-s,lenet", "--data", str(rgb), "--steps", "4", "--eval-every", "1",
          "--input-size", "32", "--out", str(tmp_path / "o")],
         "the built-in MLPs and LeNets take 28 px images: leave --input-size unset"),
        (["--models", ok, *BASE[:-5], "--epochs", "0.1", "--score", "paper", "--out",
          str(tmp_path / "o")],
         "evaluates 1 time(s), at 1/8, 1/4, 1/2 and the end of the budget, but the linear fit "
         "needs 3 points"),
    ]  # fmt: skip
    for args, message in cases:
        code, out, err = _run(capsys, "rank", *args)
        assert code == 2, (args, err)
        assert message in err, (message, err)
        assert err.startswith("ncap: error: ") and err.count("\n") == 1  # one line, no traceback
        assert not (tiny_zoo / "zoo").exists()  # nothing was pretrained
        assert not list(tmp_path.rglob("candidates/*.json"))  # nothing was trained
    assert afile.read_text() == "keep me"
    # the fix the message offers works: each model's own conversion of the RGB 40 px images
    code, _, _ = _run(capsys, "rank", "--models", "mlp-s,lenet", "--data", str(rgb), "--steps", "4",
                      "--eval-every", "1", "--n-val", "16", "--no-progress", "--out",
                      str(tmp_path / "own"))  # fmt: skip
    assert code == 0
    # and so does converting the stored images once: grey 28 px images from the RGB folder
    code, _, _ = _run(capsys, "rank", "--models", "mlp-s", "--data", str(rgb), "--channels", "1",
                      "--image-size", "28", "--steps", "4", "--eval-every", "1", "--n-val", "16",
                      "--no-progress", "--out", str(tmp_path / "grey"))  # fmt: skip
    assert code == 0
    settings = json.loads((tmp_path / "grey" / "results.json").read_text())["settings"]
    assert settings["dataset"]["input_shape"] == [1, 28, 28]
    assert settings["dataset"]["n_val"] == 16 and settings["dataset"]["n_train"] == 64


def test_labels_must_be_integers():
    from ncap.data.folders import dataset_from_arrays

    x = np.zeros((20, 8, 8), dtype=np.uint8)
    assert dataset_from_arrays(x, np.arange(20) % 2 * 1.0, n_val=4).y_train.dtype == torch.int64
    for labels, message in [
        (np.arange(20) % 2 + 0.5, "integer class indices"),
        (np.array(["cat", "dog"] * 10), "such as np.str_('cat')"),
        (np.arange(20) % 2 == 0, "holds booleans"),
        (np.zeros((20, 2), dtype=int), "1-d array"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
            dataset_from_arrays(x, labels, n_val=4)


# 4. the output directory is protected as a whole ------------------------------------------------
def test_the_output_directory_is_protected(user_models, tmp_path, capsys):
    ok, wide = "py:robust_models:ok", "py:robust_models:wide"
    # earlier results of any kind are never replaced without --resume/--overwrite
    for name in ("results.json", "results.csv", "fits.png"):
        out = tmp_path / name.replace(".", "-")
        out.mkdir()
        (out / name).write_text("precious")
        code, _, err = _run(capsys, "rank", "--models", ok, *BASE, "--out", str(out))
        assert code == 2 and f"already holds earlier results ({name})" in err
        assert (out / name).read_text() == "precious"
    # two candidate names never map to the same file
    f = user_models
    (f / "a").mkdir()
    (f / "a" / "b.pt").write_bytes((f / "good.pt").read_bytes())
    (f / "a_b.pt").write_bytes((f / "good.pt").read_bytes())
    names = [f"{ok}@{f / 'a_b.pt'}", f"{ok}@{f / 'a' / 'b.pt'}"]
    out = tmp_path / "slugs"
    assert _run(capsys, "rank", "--models", ",".join(names), *BASE, "--out", str(out))[0] == 0
    stored = [json.loads(p.read_text())["record"]["name"] for p in (out / "candidates").iterdir()]
    assert sorted(stored) == sorted(names)
    # a second process on the same directory is refused with a clear message
    out = tmp_path / "busy"
    with ncap.storage.directory_lock(out):
        code, _, err = _run(capsys, "rank", "--models", ok, *BASE, "--out", str(out))
    assert code == 2 and f"another ncap process (pid {os.getpid()}) is writing to {out}" in err
    # malformed candidate files found on --resume are reported by name and rerun
    out = tmp_path / "resume"
    assert _run(capsys, "rank", "--models", f"{ok},{wide}", *BASE, "--out", str(out))[0] == 0
    (ok_file,) = [p for p in (out / "candidates").iterdir() if "_ok" in p.name]
    (wide_file,) = [p for p in (out / "candidates").iterdir() if "_wide" in p.name]
    kept = wide_file.read_bytes()
    reference = ok_file.read_text()
    for content, problem in [
        (b"[1, 2]", "expected a JSON object, found list"),
        (b'{"record": {"name": "py:robust_models:ok"}}', "it lacks 'settings'"),
        (b"\xff\xfe", "it is not UTF-8 text"),
        (reference.encode()[:40], "it is not valid JSON"),
    ]:
        ok_file.write_bytes(content)
        code, _, err = _run(capsys, "rank", "--models", f"{ok},{wide}", *BASE, "--out", str(out),
                            "--resume")  # fmt: skip
        assert code == 0
        assert f"{ok_file} is malformed ({problem}" in err and "runs again" in err
        assert wide_file.read_bytes() == kept  # finished work untouched
        assert json.loads(ok_file.read_text())["record"]["status"] == "ok"  # rerun and rewritten


# 5. environment faults end cleanly --------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "err_no"),
    [("_wide", errno.ENOSPC), ("results.json", errno.EACCES), ("fits.png", errno.ENOSPC)],
)
def test_a_full_disk_or_unwritable_file_ends_cleanly_and_resume_continues(
    user_models, tmp_path, capsys, monkeypatch, target, err_no
):
    out = tmp_path / "out"
    models = "py:robust_models:ok,py:robust_models:wide"
    replace = os.replace

    def failing(src, dst):
        if target in Path(dst).name:
            raise OSError(err_no, os.strerror(err_no))
        return replace(src, dst)

    monkeypatch.setattr(ncap.storage.os, "replace", failing)
    code, _, err = _run(capsys, "rank", "--models", models, *BASE, "--out", str(out))
    assert code == 2
    *notes, last = err.strip().splitlines()  # the ranking's notes (user models: no source acc)
    assert last.startswith(f"ncap: error: cannot write {out}")
    assert all(line.startswith("[ncap] note: ") for line in notes)
    assert target in err and os.strerror(err_no) in err
    finished = _hashes(out / "candidates")
    assert any("_ok" in name for name in finished)  # the first candidate was kept
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no half-written files
    monkeypatch.setattr(ncap.storage.os, "replace", replace)
    code, _, _ = _run(capsys, "rank", "--models", models, *BASE, "--out", str(out), "--resume")
    assert code == 0
    after = _hashes(out / "candidates")
    assert {k: after[k] for k in finished} == finished  # reused, not rerun
    assert {c["status"] for c in _results(out).values()} == {"ok"}


def test_a_directory_where_a_file_should_be_is_named(user_models, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "results.csv").mkdir(parents=True)
    code, _, err = _run(capsys, "rank", "--models", "py:robust_models:ok", *BASE, "--out",
                        str(out), "--resume")  # fmt: skip
    assert code == 2 and f"cannot write {out / 'results.csv'}: Is a directory" in err
    assert len(list((out / "candidates").glob("*.json"))) == 1


# 6. every command answers a malformed file with the file and the problem ------------------------
def test_malformed_files_are_named_with_their_problem(tmp_path, capsys):
    from ncap.results import load_results

    files = {
        "list.json": "[]",
        "noplan.json": "{}",
        "bad.json": "{bad",
        "runs.json": json.dumps(
            {
                "plan": {"models": ["m"], "targets": [{"key": "t"}], "seeds": [0], "epochs": 1},
                "runs": [{"target": "t"}],
                "training_free": {},
            }
        ),  # fmt: skip
        "binary.json": b"\xff\xfe",
        "recipe.toml": "models = [\n",
        "recipe-binary.toml": b"\xff\xfe",
    }
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    cases = [
        (["bench", "evaluate", "list.json"], "list.json: expected a JSON object, found list"),
        (["bench", "evaluate", "noplan.json"], "noplan.json: it has no 'plan' object"),
        (["bench", "simulate", "bad.json"], "bad.json is not valid JSON (Expecting property"),
        (["bench", "refresh-free", "runs.json"], "runs.json: runs[0] lacks model, seed"),
        (["bench", "evaluate", "binary.json"], "binary.json is not UTF-8 text"),
        (["bench", "evaluate", "folder"], "folder is a folder, not a JSON file"),
        (["recipe", "recipe.toml", "--out", "o", "--dry-run"], "recipe.toml: not valid TOML"),
        (["recipe", "recipe-binary.toml", "--out", "o", "--dry-run"], "not UTF-8 text"),
    ]
    (tmp_path / "folder").mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for args, message in cases:
            code, _, err = _run(capsys, *args)
            assert code == 2 and message in err, (args, err)
            assert err.startswith("ncap: error: ") and err.count("\n") == 1
    finally:
        os.chdir(cwd)
    for name, message in [("list.json", "expected a JSON object"), ("bad.json", "not valid JSON")]:
        with pytest.raises(ConfigError, match=message):
            load_results(tmp_path / name)


# 7. the first command tells the truth -----------------------------------------------------------
def test_table_legend_and_pretraining_progress(tiny_zoo, tmp_path, capsys):
    code, out, err = _run(capsys, "rank", "--models", "mlp-s", *BASE, "--out", str(tmp_path / "o"))
    assert code == 0
    assert "predicted acc: the final validation accuracy predicted by the score" in " ".join(
        out.split()
    )
    assert "pretraining mlp-s: 50% (" in err and "s left" in err
