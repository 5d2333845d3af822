"""benchmarks/throughput.py: its figures are computed from the runs it times."""

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
throughput = pytest.importorskip("throughput")


def test_a_tiny_measurement_reports_what_it_timed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NCAP_OFFLINE", "1")
    out = tmp_path / "t.json"
    argv = ["--models", "tv:mobilenet_v2@random", "--sizes", "32", "--steps", "2"]
    rows = throughput.main([*argv, "--batch-size", "4", "--repeats", "2", "--json", str(out)])
    (row,) = rows
    images = 2 * 4
    assert row["plain_images_per_s"] == pytest.approx(
        images / statistics.median(row["plain_seconds"])
    )
    ratios = [t / p for t, p in zip(row["ncap_train_seconds"], row["plain_seconds"])]
    assert row["train_ratio"] == pytest.approx(statistics.median(ratios))
    assert row["train_ratio_range"] == [min(ratios), max(ratios)]
    # the evaluations are part of ncap's run, so its whole time is longer than its training
    assert all(n > t > 0 for n, t in zip(row["ncap_seconds"], row["ncap_train_seconds"]))
    assert 0 < row["prep_share"] < 1
    table = capsys.readouterr().out
    assert f"| tv:mobilenet_v2@random | 32 | {row['ncap_train_images_per_s']:.1f} |" in table
    assert out.exists()


def test_cuda_options_are_refused_clearly_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="CUDA"):
        throughput.main(["--device", "cuda", "--sizes", "32", "--steps", "1"])
