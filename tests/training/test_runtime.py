"""Devices, precision and the data loader: the CPU path is the reference every other path matches."""

import pytest
import torch

from ncap.data.registry import load_dataset
from ncap.models.builtin import BUILTIN_INPUT, resnet
from ncap.training.config import FinetuneConfig
from ncap.training.loop import finetune
from ncap.training.runtime import Runtime, resolve_device

CUDA = torch.cuda.is_available()


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    for bad in ("gpu", "cuda:x", "tpu:0", ""):
        with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:<index>"):
            resolve_device(bad)
    with pytest.raises(ValueError, match="workers must be >= 0"):
        Runtime(workers=-1)
    with pytest.raises(ValueError, match="unknown device"):
        Runtime(device="metal")
    assert Runtime().precision(torch.device("cpu")) == "fp32"
    assert Runtime().num_workers(torch.device("cpu")) == 0


@pytest.mark.skipif(CUDA, reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="sees no CUDA GPU.*--device cpu"):
        resolve_device("cuda:0")


def _run(runtime, steps=6):
    torch.manual_seed(0)
    module, features = resnet(8, 1, 2)
    data = load_dataset("digits", n_train=200, n_val=60)
    config = FinetuneConfig(steps=steps, eval_every=2, batch_size=16)
    return finetune(module, features, data, config, input_spec=BUILTIN_INPUT, runtime=runtime)


def _strip(points):
    return [{k: v for k, v in p.items() if k != "wall_time"} for p in points]


def test_loader_workers_give_the_same_batches():
    serial = _run(Runtime(workers=0))
    parallel = _run(Runtime(workers=2))
    assert _strip(serial.points) == _strip(parallel.points)
    assert parallel.runtime["workers"] == 2 and parallel.runtime["precision"] == "fp32"


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_float32_matches_the_cpu():
    cpu = _run(Runtime(device="cpu"))
    gpu = _run(Runtime(device="cuda", amp=False))
    assert gpu.runtime["device"].startswith("cuda") and gpu.runtime["precision"] == "fp32"
    for a, b in zip(cpu.points, gpu.points, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        for variant, value in a["beta_eff"].items():
            assert b["beta_eff"][variant] == pytest.approx(value, rel=1e-3, abs=1e-9)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_mixed_precision_keeps_the_probe_in_float32():
    amp = _run(Runtime(device="cuda", amp=True))
    cpu = _run(Runtime(device="cpu"))
    assert amp.runtime["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    for a, b in zip(cpu.points, amp.points, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=0.05)
