"""benchmarks/gpu_check.sh: quick and honest without a GPU; its GPU path runs end to end on the CPU."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def _run(tmp_path, **env):
    full = os.environ | {"PYTHON": sys.executable, "OMP_NUM_THREADS": "1"} | env
    return subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=full,
        timeout=1800,  # the slow test took 858 s at a load average of 12 on 2 cores
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_skips_quickly(tmp_path):
    start = time.perf_counter()
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "No CUDA GPU on this machine" in done.stdout
    assert "| throughput at 224 px (AMP off/on) | skipped: no GPU |" in done.stdout
    assert time.perf_counter() - start < 120  # one torch import, even on a loaded machine


@pytest.mark.slow
def test_its_gpu_path_runs_on_the_cpu_at_a_tiny_size(tmp_path):
    done = _run(
        tmp_path,
        GPU_CHECK_DEVICE="cpu",
        GPU_CHECK_SIZE="32",
        GPU_CHECK_STEPS="2",
        GPU_CHECK_TRAIN="512",
        GPU_CHECK_VAL="128",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert out.count("| tv:mobilenet_v2@IMAGENET1K_V1 | 32 |") == 3  # float32, amp, amp + options
    assert "| rank | model | observed acc |" in out
    assert out.count("@random |") >= 4 and "timm:tf_efficientnet_lite2 |" in out
    assert (tmp_path / "out" / "rank" / "results.json").exists()
