"""A run killed at a random point and resumed ends with the results of an uninterrupted run.

The slow test kills a real ``ncap rank`` process (SIGKILL) after a random delay, for several seeds;
the fast one interrupts the run in-process at a random training step.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ncap
import ncap.ranking.executors
from ncap.data.registry import load_dataset
from ncap.ranking.rank import rank
from ncap.ranking.spec import Execution
from ncap.training.config import FinetuneConfig

MODELS = textwrap.dedent(
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
NAMES = ["py:fault_models:a", "py:fault_models:b", "py:fault_models:c", "py:fault_models:d"]
TIMES = {"cost_seconds", "full_seconds", "wall_time", "seconds", "logme_seconds"}


def _strip(value):
    """Everything but wall-clock times."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _comparable(out: Path):
    data = json.loads((out / "results.json").read_text())
    return _strip(data["candidates"]), data["ranking"]


@pytest.fixture
def fault_models(tmp_path, monkeypatch):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "fault_models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("fault_models", None)
    return folder


def test_interrupted_at_a_random_step_and_resumed_equals_uninterrupted(
    fault_models, tmp_path, monkeypatch
):
    names = NAMES[:3]
    config = FinetuneConfig(steps=4, eval_every=1)
    kwargs = {"config": config}
    digits = load_dataset("digits", n_train=256, n_val=128)
    rank(names, digits, out_dir=tmp_path / "ref", **kwargs)
    original = ncap.ranking.executors.run_candidate
    total = len(names) * config.steps
    kill_at = random.Random(0).randrange(1, total)
    seen = [0]

    def interrupted(name, *args, on_step=None, **kw):
        def step(k, n):
            seen[0] += 1
            if seen[0] == kill_at:
                raise KeyboardInterrupt
            on_step(k, n)

        return original(name, *args, on_step=step, **kw)

    monkeypatch.setattr(ncap.ranking.executors, "run_candidate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rank(names, digits, out_dir=tmp_path / "run", **kwargs)
    monkeypatch.setattr(ncap.ranking.executors, "run_candidate", original)
    rank(names, digits, out_dir=tmp_path / "run", **kwargs, execution=Execution(mode="resume"))
    assert _comparable(tmp_path / "run") == _comparable(tmp_path / "ref")


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from ncap.cli import main; raise SystemExit(main())", "rank",
            "--models", ",".join(NAMES), "--data", "digits", "--n-train", "512", "--n-val", "128",
            "--steps", "24", "--eval-every", "2", "--no-progress", "--out", str(out), *extra]  # fmt: skip


@pytest.mark.slow
def test_killed_at_random_points_and_resumed_equals_uninterrupted(fault_models, tmp_path):
    src = Path(ncap.__file__).parents[1]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(src), str(fault_models)])}
    start = time.perf_counter()
    subprocess.run(_command(tmp_path / "ref"), env=env, check=True, capture_output=True)
    duration = time.perf_counter() - start
    reference = _comparable(tmp_path / "ref")
    outcomes = []
    for seed in range(5):
        out = tmp_path / f"run{seed}"
        delay = random.Random(seed).uniform(0.3 * duration, duration)
        proc = subprocess.Popen(_command(out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = len(list((out / "candidates").glob("*.json"))) if out.exists() else 0
        outcomes.append((round(delay, 2), proc.returncode, finished))
        resumed = subprocess.run(_command(out, "--resume"), env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert _comparable(out) == reference, outcomes
    print("kill delay s, exit code, candidate files at the kill:", outcomes)
    # the kills landed at different points of the run (not all before or all after it)
    assert len({o[2] for o in outcomes}) > 1 or any(o[1] == -signal.SIGKILL for o in outcomes)
