"""Issue 23: halving, resume, the lock, user arrays and models, the cluster, under faults.

One section per class of the issue, each with at least three cases; each asserts the exit code or
the error, the message, and that finished work is intact (file hashes before and after). Halving
fault tests assert that ``--resume`` after the fault equals an uninterrupted run.
"""

import errno
import hashlib
import json
import os
import random
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ncap
import ncap.ranking.executors
import ncap.storage
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError, OutputExists, StorageError
from ncap.ranking.halving import HalvingSettings
from ncap.ranking.rank import rank
from ncap.ranking.spec import Execution, Horizon
from ncap.ranking.strategies import Halving
from ncap.storage import LOCK_NAME, directory_lock


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(folder: Path) -> dict[str, str]:
    """Every file's hash but the lock's (it holds the last holder's pid)."""
    return {
        str(p.relative_to(folder)): _sha(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


# 1. the lock never writes through a link ---------------------------------------------------------
def _plant_symlink(out: Path, victim: Path) -> None:
    os.symlink(victim, out / LOCK_NAME)


def _plant_dangling(out: Path, victim: Path) -> None:
    os.symlink(victim.parent / "created-by-ncap", out / LOCK_NAME)


def _plant_hardlink(out: Path, victim: Path) -> None:
    os.link(victim, out / LOCK_NAME)


def _plant_fifo(out: Path, victim: Path) -> None:
    os.mkfifo(out / LOCK_NAME)


def _plant_folder(out: Path, victim: Path) -> None:
    (out / LOCK_NAME).mkdir()


@pytest.mark.parametrize(
    ("plant", "problem"),
    [
        (_plant_symlink, "is a symbolic link, which ncap never writes through"),
        (_plant_dangling, "is a symbolic link, which ncap never writes through"),
        (_plant_hardlink, "has 2 hard links (it would overwrite another file)"),
        (_plant_fifo, "is not a regular file"),
        (_plant_folder, "Is a directory"),
    ],
)
def test_the_lock_refuses_links_and_special_files(tmp_path, plant, problem):
    victim = tmp_path / "precious.txt"
    victim.write_text("precious data\n")
    before = _sha(victim)
    out = tmp_path / "out"
    out.mkdir()
    plant(out, victim)
    with pytest.raises(StorageError, match=re.escape(problem)), directory_lock(out):
        pass
    assert _sha(victim) == before  # the target is untouched
    assert not (tmp_path / "created-by-ncap").exists()  # a dangling link created nothing


def test_the_lock_refusal_ends_the_command_with_its_fix(tmp_path, capsys):
    from ncap.cli.commands import main

    victim = tmp_path / "precious.txt"
    victim.write_text("precious data\n")
    before = _sha(victim)
    out = tmp_path / "out"
    out.mkdir()
    _plant_symlink(out, victim)
    code = main(["rank", "--models", "mlp-s", "--data", "digits", "--steps", "2", "--out",
                 str(out), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"the lock file {out / LOCK_NAME} is a symbolic link" in err
    assert f"remove {out / LOCK_NAME} (ncap creates it anew)" in err
    assert _sha(victim) == before
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing else was written


def test_a_plain_lock_is_reused_and_records_the_pid(tmp_path):
    out = tmp_path / "out"
    with directory_lock(out) as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
    with directory_lock(out) as lock:  # the stale file of an earlier run is taken over
        assert lock.read_text() == f"{os.getpid()}\n"


# 2. halving under faults: --resume after a full disk, a kill or a Ctrl-C equals no fault ---------
HV_MODELS = textwrap.dedent(
    """
    from torch import nn

    def make(width):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU()), width

    def a():
        return make(16)

    def b():
        return make(24)

    def c():
        return make(32)

    def d():
        return make(40)
    """
)
HV_NAMES = [f"py:hv_models:{x}" for x in "abcd"]
TIMES = {"cost_seconds", "full_seconds", "wall_time", "seconds", "logme_seconds"}


def _strip(value):
    """Everything but wall-clock times."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _outcome(out: Path) -> dict:
    """What a halving run decided and recorded: ranking, rungs, winner, candidates (no times)."""
    data = json.loads((out / "results.json").read_text())
    return {
        "ranking": data["ranking"],
        "winner": data["ranking"][0],
        "rungs": data["rungs"],
        "candidates": _strip(data["candidates"]),
        "state": json.loads((out / "rungs.json").read_text())["rungs"],
    }


@pytest.fixture(scope="module")
def hv(tmp_path_factory):
    """The models, the data, the settings, and the uninterrupted run's outcome (computed once)."""
    folder = tmp_path_factory.mktemp("hv_user")
    (folder / "hv_models.py").write_text(HV_MODELS)
    sys.path.insert(0, str(folder))
    sys.modules.pop("hv_models", None)
    from ncap.data.registry import load_dataset
    from ncap.training.config import FinetuneConfig

    # 128 images / 64 = 2 steps per epoch: rungs at 2, 4, 8 steps; the default (recommended)
    # score, so LogME is part of every decision
    kwargs = {
        "config": FinetuneConfig(epochs=4.0, eval_every=1, batch_size=64, probe_hidden=(16, 12, 8)),
        "strategy": Halving(HalvingSettings(eta=2, min_budget=1.0)),
        "horizon": Horizon(target_epochs=40.0),
    }
    data = load_dataset("digits", n_train=128, n_val=64)
    ref = tmp_path_factory.mktemp("hv_ref")
    rank(HV_NAMES, data, out_dir=ref, **kwargs)
    yield {"data": data, "kwargs": kwargs, "reference": _outcome(ref), "ref_dir": ref}
    sys.path.remove(str(folder))


def _halving(hv, out: Path, mode: str = "new"):
    logs: list[str] = []
    execution = Execution(mode=mode, log=logs.append)
    rank(HV_NAMES, hv["data"], out_dir=out, **hv["kwargs"], execution=execution)
    return logs


def _replace_faulting_at(monkeypatch, n: int, fault):
    """``os.replace`` (every atomic write) raises ``fault`` at its ``n``-th call."""
    real = os.replace
    calls = [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == n:
            Path(src).unlink()
            raise fault
        return real(src, dst)

    monkeypatch.setattr(ncap.storage.os, "replace", replace)
    return real


def _count_writes(hv, tmp_path, monkeypatch) -> int:
    real = os.replace
    calls = [0]
    monkeypatch.setattr(ncap.storage.os, "replace", lambda s, d: calls.__setitem__(0, calls[0] + 1) or real(s, d))  # fmt: skip
    _halving(hv, tmp_path / "count")
    monkeypatch.setattr(ncap.storage.os, "replace", real)
    return calls[0]


def _full_disk_then_resume(hv, tmp_path, monkeypatch, points):
    for n in points:
        out = tmp_path / f"full{n}"
        real = _replace_faulting_at(
            monkeypatch, n, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        )
        with pytest.raises(
            StorageError, match="No space left on device.*free some space, then rerun with --resume"
        ):
            _halving(hv, out)
        monkeypatch.setattr(ncap.storage.os, "replace", real)
        kept = _hashes(out / "rungs") if (out / "rungs").exists() else {}
        for path in (out / "rungs").rglob("*.json"):  # no record blames a candidate for the disk
            assert json.loads(path.read_text())["record"]["status"] == "ok", path
        assert not [p for p in out.rglob("*.tmp")]
        if kept:
            with pytest.raises(OutputExists, match="--resume"):
                _halving(hv, out)
        _halving(hv, out, mode="resume")
        assert _outcome(out) == hv["reference"], n
        after = _hashes(out / "rungs")
        assert {k: after[k] for k in kept} == kept  # finished rung records reused, not rewritten


def test_halving_full_disk_or_ctrl_c_then_resume_equals_the_uninterrupted_run(
    hv, tmp_path, monkeypatch
):
    """ENOSPC while rung 0's records are written: the run stops with the fix (no candidate is
    marked failed), finished files are untouched; and a Ctrl-C in mid-rung; --resume after
    either equals the uninterrupted run."""
    _full_disk_then_resume(hv, tmp_path, monkeypatch, [6])
    _ctrl_c_then_resume(hv, tmp_path, monkeypatch, [11], [])


@pytest.mark.slow
def test_halving_faults_at_every_kind_of_write_and_many_steps(hv, tmp_path, monkeypatch):
    """ENOSPC at the first checkpoint, a record, rungs.json, rung 1 and results.json; Ctrl-C at
    random steps and inside two file writes."""
    total = _count_writes(hv, tmp_path, monkeypatch)
    assert total > 12
    _full_disk_then_resume(hv, tmp_path, monkeypatch, [1, 4, 9, 11, total - 3, total])
    rng = random.Random(23)
    steps = [rng.randrange(1, 13) for _ in range(4)]  # of the 4 x 2 + 2 x 2 steps of the run
    _ctrl_c_then_resume(hv, tmp_path, monkeypatch, steps, [3, 10])


def _interrupting(original, kill_at: int):
    """``run_candidate`` that raises KeyboardInterrupt at the run's ``kill_at``-th step."""
    seen = [0]

    def interrupted(name, *args, on_step=None, **kw):
        def step(k, n):
            seen[0] += 1
            if seen[0] == kill_at:
                raise KeyboardInterrupt
            on_step(k, n)

        return original(name, *args, on_step=step, **kw)

    return interrupted


@pytest.mark.slow
def test_halving_killed_at_random_points_and_resumed_equals_the_uninterrupted_run(tmp_path):
    """A real ``ncap rank --strategy halving`` process killed with SIGKILL (no handler runs:
    half-written temporary files stay behind) at random moments, then ``--resume``."""
    import signal
    import subprocess

    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "hv_models.py").write_text(HV_MODELS)
    src = str(Path(ncap.__file__).parents[1])
    env = os.environ | {"PYTHONPATH": os.pathsep.join([src, str(folder)]), "OMP_NUM_THREADS": "1"}

    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-c", "from ncap.cli import main; raise SystemExit(main())",
                "rank", "--models", ",".join(HV_NAMES), "--data", "digits", "--n-train", "128",
                "--n-val", "64", "--epochs", "4", "--eval-every", "1", "--batch-size", "64",
                "--strategy", "halving", "--min-budget", "1", "--target-epochs", "40",
                "--no-progress", "--out", str(out), *extra]  # fmt: skip

    subprocess.run(command(tmp_path / "ref"), env=env, check=True, capture_output=True)
    reference = _outcome(tmp_path / "ref")
    kills = []
    for seed in range(3):
        out = tmp_path / f"run{seed}"
        proc = subprocess.Popen(command(out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        rng = random.Random(seed)  # (by progress, not time: a loaded machine's timing varies)
        target = rng.randrange(0, 6)  # rung records on disk (6 in all), then a moment more
        while proc.poll() is None and len(list(out.rglob("rungs/*/*.json"))) < target:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append((proc.returncode, len(list(out.rglob("rungs/*/*.json")))))
        resumed = subprocess.run(command(out, "--resume"), env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert _outcome(out) == reference, kills
    assert any(code == -signal.SIGKILL for code, _ in kills), kills  # some kills landed mid-run


def _ctrl_c_then_resume(hv, tmp_path, monkeypatch, steps, writes):
    original = ncap.ranking.executors.run_candidate
    for kill_at in steps:
        out = tmp_path / f"step{kill_at}"
        monkeypatch.setattr(
            ncap.ranking.executors, "run_candidate", _interrupting(original, kill_at)
        )
        with pytest.raises(KeyboardInterrupt):
            _halving(hv, out)
        monkeypatch.setattr(ncap.ranking.executors, "run_candidate", original)
        _halving(hv, out, mode="resume")
        assert _outcome(out) == hv["reference"], kill_at
    for n in writes:  # Ctrl-C while a file is being written
        out = tmp_path / f"write{n}"
        real = _replace_faulting_at(monkeypatch, n, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            _halving(hv, out)
        monkeypatch.setattr(ncap.storage.os, "replace", real)
        _halving(hv, out, mode="resume")
        assert _outcome(out) == hv["reference"], n


def test_damaged_halving_state_is_named_and_recomputed(hv, tmp_path, monkeypatch):
    """Rung records that are ``[]``, truncated or another candidate's, a checkpoint of another
    candidate, a damaged rungs.json: each is named, redone from the same inputs, and the resumed
    run equals the uninterrupted one (LogME included)."""
    from ncap.ranking.halving_state import rung_file
    from ncap.ranking.segment import checkpoint_path

    out = tmp_path / "damaged"
    # stop at the first write of rung 1 (a checkpoint): rung 0 is complete on disk
    n_rung0 = len(HV_NAMES) * 2 + 1  # 4 checkpoints, 4 records, rungs.json
    real = _replace_faulting_at(monkeypatch, n_rung0 + 1, OSError(errno.ENOSPC, "No space"))
    with pytest.raises(StorageError):
        _halving(hv, out)
    monkeypatch.setattr(ncap.storage.os, "replace", real)
    a, b, c, d = (rung_file(out, 0, name) for name in HV_NAMES)
    a.write_text("[]")
    b.write_bytes(b.read_bytes()[:100])
    c.write_bytes(d.read_bytes())  # c's file holds d's record
    survivors = hv["reference"]["rungs"][0]["kept"]
    ckpts = [checkpoint_path(out / "checkpoints", name) for name in survivors]
    ckpts[0].write_bytes(ckpts[1].read_bytes())  # a survivor's checkpoint is the other's
    (out / "rungs.json").write_text("[]")
    logs = _halving(hv, out, mode="resume")
    text = "\n".join(logs)
    assert f"{a} is malformed (expected a JSON object, found list)" in text
    assert f"{b} is malformed (it is not valid JSON" in text
    assert (
        f"{c} is malformed (it holds the record of {HV_NAMES[3]!r}, not of {HV_NAMES[2]!r})" in text
    )
    assert f"{out / 'rungs.json'} is malformed" in text and "rebuilt from the rung records" in text
    assert f"checkpoint {ckpts[0]} belongs to {survivors[1]!r}, not to {survivors[0]!r}" in text
    assert _outcome(out) == hv["reference"]
    # a record of other settings stops the resume, naming the file
    data = json.loads(d.read_text())
    data["settings"]["seed"] = 99
    d.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=re.escape(f"{d} was produced with different settings")):
        _halving(hv, out, mode="resume")


# 3. a candidate's own numbers or device fail that candidate, never the run -----------------------
DEV_MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Scaled(nn.Module):
        def __init__(self, scale, device=None):
            super().__init__()
            self.lin = nn.Linear(784, 16)
            self.scale, self.device = scale, device

        def forward(self, x):
            out = self.lin(x.flatten(1)) * self.scale
            return out if self.device is None else out.to(self.device)

    def ok():
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU()), 16

    def huge():
        return Scaled(1e30), 16

    def big():
        return Scaled(1e15), 16

    def out_meta():
        return Scaled(1.0, "meta"), 16

    def params_meta():
        with torch.device("meta"):
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 16)), 16
    """
)
BASE = ["--data", "digits", "--n-train", "256", "--n-val", "128", "--steps", "4",
        "--eval-every", "1", "--no-progress"]  # fmt: skip


@pytest.fixture
def dev_models(tmp_path, monkeypatch):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "dev_models.py").write_text(DEV_MODELS)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("dev_models", None)
    return folder


def _cli(capsys, *args):
    from ncap.cli.commands import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_overflowing_or_off_device_models_fail_their_candidate(dev_models, tmp_path, capsys):
    bad = {
        "py:dev_models:huge": "training diverged at step 1: the loss is 9.86e+29, over 10000 x "
        "chance (2.3): the model's outputs overflow",
        "py:dev_models:big": "training diverged at step 1: the loss is 9.86e+14, over 10000 x "
        "chance (2.3): the model's outputs overflow",
        "py:dev_models:out_meta": "the backbone returns its features on meta, not on the run's "
        "device cpu; its forward must keep them on its input's device.",
        "py:dev_models:params_meta": "the model cannot be moved to the run's device cpu "
        "(NotImplementedError: Cannot copy out of meta tensor",
    }
    models = ",".join(["py:dev_models:ok", *bad])
    out = tmp_path / "out"
    # the default score computes LogME first: the off-device models fail there, not the run
    code, _, err = _cli(capsys, "rank", "--models", models, *BASE, "--out", str(out))
    assert code == 0
    records = {c["name"]: c for c in json.loads((out / "results.json").read_text())["candidates"]}
    assert records["py:dev_models:ok"]["status"] == "ok"
    for name, reason in bad.items():
        assert records[name]["status"] == "failed" and reason in records[name]["reason"], name
        assert f"{name} failed: " in err
    assert json.loads((out / "results.json").read_text())["ranking"] == ["py:dev_models:ok"]
    # --resume reruns the failed ones (same failures), keeps the finished one's file
    ok_file = next(
        p for p in (out / "candidates").iterdir() if p.name.startswith("py_dev_models_ok")
    )
    before = _sha(ok_file)
    code, _, err = _cli(capsys, "rank", "--models", models, *BASE, "--out", str(out), "--resume")
    assert code == 0 and _sha(ok_file) == before
    assert all(f"{name} failed: " in err for name in bad)


def test_an_overflowing_candidate_fails_its_rung_under_halving(dev_models, tmp_path, capsys):
    out = tmp_path / "h"
    code, _, err = _cli(capsys, "rank", "--models", "py:dev_models:ok,py:dev_models:huge",
                        *BASE[:6], "--epochs", "4", "--eval-every", "1", "--batch-size", "64",
                        "--strategy", "halving", "--min-budget", "1", "--no-progress",
                        "--out", str(out))  # fmt: skip
    assert code == 0, err
    data = json.loads((out / "results.json").read_text())
    assert data["ranking"] == ["py:dev_models:ok"]
    why = data["rungs"][0]["dropped"]["py:dev_models:huge"]
    assert why.startswith("failed at rung 0: training diverged at step 1: the loss is 9.86e+29")


def test_the_overflow_rule_and_its_numbers():
    import math

    from ncap.exceptions import CandidateError
    from ncap.predict.recommended import predicted_interval
    from ncap.training.divergence import OVERFLOW_FACTOR, DivergenceGuard

    chance = math.log(10)
    guard = DivergenceGuard(10, lr=0.1)
    guard.on_step_end(1, OVERFLOW_FACTOR * chance * 0.99, 64)  # under the cap: a bad start only
    with pytest.raises(CandidateError, match="at step 1: the loss is 7e\\+29, over 10000 x chance"):
        DivergenceGuard(10, lr=0.1).on_step_end(1, 7e29, 64)
    with pytest.raises(CandidateError, match="over 10000 x chance \\(0.693\\)"):
        DivergenceGuard(2, lr=0.1).on_step_end(5, 1e5, 64)
    # a huge link-space value maps to [0, 1] without an OverflowError
    interval = predicted_interval("fit/base", "logit", -1e30, 1.0, 0.1)
    assert interval["68"] == [0.0, 0.0] and interval["95"] == [0.0, 0.0]


# 4. one rule for which flags apply where: an ignored flag is an error ---------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eta", "3"], "--eta applies only with --strategy halving; add --strategy halving"),
        (["--min-budget", "0.5"], "--min-budget applies only with --strategy halving"),
        (["--rung-score", "last-observed"], "--rung-score applies only with --strategy halving"),
        (["--keep-checkpoints"], "--keep-checkpoints applies only with --strategy halving"),
        (["--strategy", "halving", "--score", "paper"],
         "--score applies only with --strategy fixed; halving ranks each rung by --rung-score"),
        (["--address", "auto"], "--address applies only with --executor ray"),
        (["--cpus-per-candidate", "2"], "--cpus-per-candidate applies only with --executor ray"),
        (["--burn-in", "9"], "--burn-in 9 leaves out every one of the 4 evaluation point(s) within "
         "the budget of 4 step(s)"),
        (["--max-val", "0"], "max_val must be >= 1 validation image"),
    ],
)  # fmt: skip
def test_a_flag_that_would_do_nothing_is_an_error(dev_models, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = _hashes(out)
    code, _, err = _cli(capsys, "rank", "--models", "py:dev_models:ok", *BASE, "--out", str(out),
                        *extra)  # fmt: skip
    assert code == 2 and message in err, err
    assert err.startswith("ncap: error: ") and err.count("\n") == 1
    assert _hashes(out) == before and not (out / "candidates").exists()


def test_an_empty_out_and_a_dry_run_with_output_flags_are_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = Path(__file__).parents[2] / "recipes" / "paper.toml"
    cases = [
        (["rank", "--models", "mlp-s", "--data", "digits", "--out", ""], "--out is empty"),
        (["recipe", str(recipe), "--out", " ", "--dry-run"], "--out is empty"),
        (["recipe", str(recipe), "--out", "o", "--dry-run", "--resume"],
         "--resume applies only when the recipe runs; a --dry-run writes nothing"),
        (["recipe", str(recipe), "--out", "o", "--dry-run", "--models", "nope"],
         "unknown models 'nope'; the recipe's models: tv:vgg16"),
    ]  # fmt: skip
    for args, message in cases:
        code, _, err = _cli(capsys, *args)
        assert code == 2 and message in err, (args, err)
    assert list(tmp_path.iterdir()) == []  # nothing written in the current directory
    # --models/--datasets apply to a dry run: its plan is of the part that would run
    code, out, _ = _cli(capsys, "recipe", str(recipe), "--out", "o", "--dry-run", "--models",
                        "tv:resnet18", "--datasets", "cifar10")  # fmt: skip
    assert code == 0 and "models (1): tv:resnet18" in out and "datasets (1):" in out


def test_resume_refuses_a_folder_of_the_other_strategy(dev_models, tmp_path, capsys):
    fixed = tmp_path / "fixed"
    assert _cli(capsys, "rank", "--models", "py:dev_models:ok", *BASE, "--out", str(fixed))[0] == 0
    halving = ["--strategy", "halving", "--epochs", "2", "--min-budget", "1", "--batch-size", "64"]
    before = _hashes(fixed)
    code, _, err = _cli(capsys, "rank", "--models", "py:dev_models:ok", *BASE[:6], "--eval-every",
                        "1", "--no-progress", *halving, "--out", str(fixed), "--resume")  # fmt: skip
    assert code == 2 and f"{fixed} holds a run of --strategy fixed; --resume continues" in err
    assert _hashes(fixed) == before
    half = tmp_path / "halving"
    code, _, err = _cli(capsys, "rank", "--models", "py:dev_models:ok", *BASE[:6], "--eval-every",
                        "1", "--no-progress", *halving, "--out", str(half))  # fmt: skip
    assert code == 0, err
    before = _hashes(half)
    code, _, err = _cli(capsys, "rank", "--models", "py:dev_models:ok", *BASE, "--out", str(half),
                        "--resume")  # fmt: skip
    assert code == 2 and f"{half} holds a run of --strategy halving; --resume continues" in err
    assert _hashes(half) == before


# 5. the cluster: an unreachable address fails at once; a lost node's candidates are retried -----
def test_an_unreachable_ray_address_fails_at_once_with_the_fix(tmp_path, capsys):
    import socket

    from ncap.exceptions import ClusterUnreachable
    from ncap.ranking.executors import check_reachable

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    cases = [
        (closed, ClusterUnreachable, f"the Ray cluster at {closed} cannot be reached (Connection "
         "refused); check the address and that the head node is running"),
        ("ray://no-such-host.invalid:10001", ClusterUnreachable,
         "the Ray cluster at ray://no-such-host.invalid:10001 cannot be reached"),
        ("justahost", ConfigError, "the Ray address 'justahost' is not host:port"),
    ]  # fmt: skip
    for address, kind, message in cases:
        start = time.perf_counter()
        with pytest.raises(kind, match=re.escape(message)):
            check_reachable(address, timeout=2.0)
        assert time.perf_counter() - start < 5
    with socket.socket() as server:  # a listening port is reachable
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}", timeout=2.0)
    out = tmp_path / "o"
    code, _, err = _cli(capsys, "rank", "--models", "mlp-s", "--data", "digits", "--steps", "2",
                        "--executor", "ray", "--address", closed, "--out", str(out),
                        "--no-progress")  # fmt: skip
    assert code == 2 and f"ncap: error: the Ray cluster at {closed} cannot be reached" in err
    assert not (out / "candidates").exists()


NODE_MODELS = textwrap.dedent(
    """
    import os
    from pathlib import Path

    from torch import nn

    def _mark(name):
        import ray

        if not ray.is_initialized():  # (the local reference run: no Ray, none started)
            return
        node = ray.get_runtime_context().get_node_id()
        marks = Path(os.environ["NCAP_TEST_MARKS"])
        (marks / f"{name}-{os.getpid()}.{node}").touch()

    def make(name, width):
        _mark(name)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU()), width

    def a():
        return make("a", 16)

    def b():
        return make("b", 24)

    def c():
        return make("c", 32)

    def d():
        return make("d", 40)
    """
)


@pytest.mark.slow
def test_a_node_lost_mid_run_is_retried_and_nothing_finished_is_lost(tmp_path, monkeypatch):
    """Three nodes on this machine (a head without CPUs, two one-CPU workers): the worker running
    a candidate is removed while it trains; the candidate is rerun on the other node, every
    candidate ends ok with the results of a local run, and files finished before are untouched."""
    import threading

    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from ncap.ranking.executors import RayExecutor
    from ncap.training.config import FinetuneConfig

    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "node_models.py").write_text(NODE_MODELS)
    marks = tmp_path / "marks"
    marks.mkdir()
    src = str(Path(ncap.__file__).parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, str(folder)]))  # (the workers')
    monkeypatch.setenv("NCAP_TEST_MARKS", str(marks))
    monkeypatch.syspath_prepend(str(folder))
    names = [f"py:node_models:{x}" for x in "abcd"]
    config = FinetuneConfig(steps=60, eval_every=10, batch_size=64)
    kwargs = {"config": config, "score": "last-observed"}
    digits = load_dataset("digits", n_train=256, n_val=128)
    local = rank(names, digits, out_dir=tmp_path / "local", **kwargs)
    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        victim = workers[0]
        out = tmp_path / "ray"
        killed: dict = {}

        done = threading.Event()

        def kill_when_victim_trains():
            while not done.is_set() and not killed:
                on_victim = [m for m in marks.iterdir() if m.suffix[1:] == victim.node_id]
                if on_victim:
                    time.sleep(0.5)  # (training has started)
                    finished = out / "candidates"
                    killed["before"] = _hashes(finished) if finished.exists() else {}
                    killed["name"] = on_victim[0].name.split("-")[0]
                    cluster.remove_node(victim, allow_graceful=False)
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_victim_trains)
        killer.start()
        try:
            result = rank(
                names,
                digits,
                out_dir=out,
                **kwargs,
                execution=Execution(executor=RayExecutor(address=cluster.address)),
            )
        finally:
            done.set()
            killer.join()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed, "the victim node never ran a candidate"
    runs = sorted(m.name.split("-")[0] for m in marks.iterdir())
    assert runs.count(killed["name"]) == 2  # built on the lost node, then again elsewhere
    assert [c["status"] for c in result.candidates] == ["ok"] * 4
    assert result.ranking == local.ranking
    for a, b in zip(result.candidates, local.candidates, strict=True):  # (float tolerance)
        assert [p["step"] for p in a["trajectory"]] == [p["step"] for p in b["trajectory"]]
        accuracy = [p["val_accuracy"] for p in b["trajectory"]]
        assert [p["val_accuracy"] for p in a["trajectory"]] == pytest.approx(accuracy, abs=1e-6)
    after = _hashes(out / "candidates")
    assert {k: after[k] for k in killed["before"]} == killed["before"]  # finished: untouched
