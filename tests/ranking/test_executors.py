"""The Ray executor writes what the local executor writes, and resumes the same way.

A local Ray instance is started by the test (2 CPUs); the CLI test connects to it by address as a
second driver would connect to an existing cluster.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ncap.data.folders import dataset_from_arrays
from ncap.predict.capacitance import PredictorSettings
from ncap.ranking.executors import make_executor
from ncap.ranking.halving import HalvingSettings
from ncap.ranking.rank import rank
from ncap.ranking.scoring import RANKING_FIELDS
from ncap.ranking.spec import Execution
from ncap.ranking.strategies import Halving
from ncap.training.config import FinetuneConfig

ray = pytest.importorskip("ray")

MODELS = ["timm:resnet10t@random", "tv:squeezenet1_0@random"]
CONFIG = FinetuneConfig(steps=3, eval_every=1, batch_size=4)
PREDICTOR = PredictorSettings(features="linear")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def grey_data():
    rng = np.random.default_rng(0)
    return dataset_from_arrays(
        rng.integers(0, 256, (24, 28, 28), dtype=np.uint8), np.arange(24) % 3, n_val=6
    )


def _comparable(record):
    out = {k: v for k, v in record.items() if k not in ("cost_seconds", "trajectory", "fit")}
    if "backbone" in out:  # (timings differ between processes)
        out["backbone"] = {k: v for k, v in out["backbone"].items() if k != "logme_seconds"}
    out["trajectory"] = [
        {k: v for k, v in p.items() if k != "wall_time"} for p in record["trajectory"]
    ]
    return out


def _close(a, b, path="record"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{k}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-12), path
    else:
        assert a == b, path


def test_ray_results_equal_local_results(ray_cluster, grey_data, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray task with 1 CPU runs single-threaded
    try:
        local = rank(
            MODELS, grey_data, out_dir=tmp_path / "local", config=CONFIG, predictor=PREDICTOR
        )
    finally:
        torch.set_num_threads(threads)
    remote = rank(
        MODELS,
        grey_data,
        out_dir=tmp_path / "ray",
        config=CONFIG,
        predictor=PREDICTOR,
        execution=Execution(executor="ray"),
    )
    assert [c["status"] for c in remote.candidates] == ["ok", "ok"]
    for a, b in zip(local.candidates, remote.candidates, strict=True):
        _close(_comparable(a), _comparable(b))
    assert remote.settings["runtime"]["executor"] == "ray"
    for name in ("results.json", "results.csv", "beta_eff.png", "fits.png"):
        assert (tmp_path / "ray" / name).exists()
    files = sorted(p.name for p in (tmp_path / "ray" / "candidates").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "local" / "candidates").iterdir())


def test_ray_resume_reuses_finished_candidates(ray_cluster, grey_data, tmp_path):
    first = rank(
        MODELS[:1],
        grey_data,
        out_dir=tmp_path,
        config=CONFIG,
        predictor=PREDICTOR,
        execution=Execution(executor="ray"),
    )
    path = next((tmp_path / "candidates").iterdir())
    stamp = path.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--resume"):
        rank(
            MODELS,
            grey_data,
            out_dir=tmp_path,
            config=CONFIG,
            predictor=PREDICTOR,
            execution=Execution(executor="ray"),
        )
    both = rank(
        MODELS,
        grey_data,
        out_dir=tmp_path,
        config=CONFIG,
        predictor=PREDICTOR,
        execution=Execution(executor="ray", mode="resume"),
    )
    assert path.stat().st_mtime_ns == stamp  # reused, not rerun
    # the run is reused as recorded; its score, a rank average by default, is relative to the
    # candidates ranked with it
    assert {k: v for k, v in both.candidates[0].items() if k != "score"} == {
        k: v for k, v in first.candidates[0].items() if k != "score"
    }
    stored = {k: v for k, v in both.candidates[0].items() if k not in RANKING_FIELDS}
    assert stored == json.loads(path.read_text())["record"]
    assert [c["status"] for c in both.candidates] == ["ok", "ok"]
    other = FinetuneConfig(steps=4, eval_every=1, batch_size=4)
    with pytest.raises(ValueError, match="different settings"):
        rank(
            MODELS,
            grey_data,
            out_dir=tmp_path,
            config=other,
            predictor=PREDICTOR,
            execution=Execution(executor="ray", mode="resume"),
        )


def test_cli_joins_an_existing_cluster_by_address(ray_cluster, tmp_path):
    out = tmp_path / "out"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "ncap.cli.commands", "rank", "--models", "tv:squeezenet1_0@random,tv:nope",
         "--data", "digits", "--n-train", "32", "--n-val", "16", "--steps", "3",
         "--eval-every", "1", "--batch-size", "8", "--features", "linear", "--out", str(out),
         "--executor", "ray", "--address", ray_cluster, "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    status = {c["name"]: c["status"] for c in results["candidates"]}
    assert status == {"tv:squeezenet1_0@random": "ok", "tv:nope": "failed"}
    assert results["settings"]["runtime"]["address"] == ray_cluster
    assert "2 candidate task(s)" in proc.stderr


def test_executor_options_are_checked():
    with pytest.raises(ValueError, match="add --executor ray"):
        make_executor("local", gpus_per_candidate=1)
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("dask")
    with pytest.raises(ValueError, match="gpus_per_candidate must be >= 0"):
        make_executor("ray", gpus_per_candidate=-1)


def test_gpu_request_larger_than_the_cluster_is_refused(ray_cluster, grey_data, tmp_path):
    with pytest.raises(ValueError, match="asks for 1 GPU.*has 0"):
        rank(
            MODELS,
            grey_data,
            out_dir=tmp_path,
            config=CONFIG,
            predictor=PREDICTOR,
            execution=Execution(executor=make_executor("ray", gpus_per_candidate=1)),
        )
    assert not (tmp_path / "candidates").exists() or not any((tmp_path / "candidates").iterdir())


@pytest.mark.slow
def test_ray_runs_successive_halving_like_the_local_executor(ray_cluster, grey_data, tmp_path):

    models = ["timm:resnet10t@random", "tv:squeezenet1_0@random", "timm:resnet14t@random"]
    config = FinetuneConfig(epochs=1.0, eval_every=1, batch_size=6)  # 18 images: 3 steps/epoch
    halving = HalvingSettings(eta=2, min_budget=1 / 3, score="last-observed")

    def run(out, executor):
        return rank(
            models,
            grey_data,
            out_dir=tmp_path / out,
            config=config,
            predictor=PREDICTOR,
            strategy=Halving(halving),
            execution=Execution(executor=executor),
        )

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray task with 1 CPU runs single-threaded
    try:
        local = run("local", "local")
    finally:
        torch.set_num_threads(threads)
    remote = run("ray", "ray")
    assert [r["steps"] for r in remote.rungs] == [1, 2]
    assert remote.rungs == local.rungs and remote.ranking == local.ranking
    for a, b in zip(local.candidates, remote.candidates, strict=True):
        assert a["steps"] == b["steps"]
        _close(_comparable(a), _comparable(b) | {"seconds": a["seconds"], "halving": a["halving"]})
    assert not list((tmp_path / "ray" / "checkpoints").glob("*.pt"))
