import json
from pathlib import Path

import pytest
import torch

from ncap.cli.commands import main
from ncap.data.idx import fashion_mnist_dir
from ncap.data.registry import load_dataset
from ncap.models.nb201 import (
    EDGES,
    OPS,
    NB201Network,
    all_archs,
    arch_to_str,
    parse_arch,
    sample_archs,
)
from ncap.nas.nats import nats_accuracies
from ncap.nas.search import DEFAULT_SCORE, search
from ncap.ranking.spec import Execution
from ncap.training.config import FinetuneConfig

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_parse_and_format_roundtrip():
    ops = parse_arch(ARCH)
    assert ops == (
        "nor_conv_3x3",
        "nor_conv_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "skip_connect",
    )
    assert arch_to_str(ops) == ARCH
    assert len(EDGES) == 6 and EDGES[0] == (1, 0) and EDGES[-1] == (3, 2)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("|nor_conv_3x3~0|+|none~0|skip_connect~1|", "3"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown operation 'conv'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read 'op~0'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "must have 2 input"),
    ],
)
def test_parse_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_arch(text)


def test_space_size_and_sampling():
    archs = list(all_archs())
    assert len(archs) == len(OPS) ** 6 == 15625 and len(set(archs)) == 15625
    a, b = sample_archs(50, seed=3), sample_archs(50, seed=3)
    assert a == b and len(set(a)) == 50 and set(a) <= set(archs)
    assert sample_archs(50, seed=4) != a
    with pytest.raises(ValueError, match="between 1 and 15625"):
        sample_archs(0)


def test_network_shapes_and_cell_semantics():
    net = NB201Network(ARCH, width=4, cells=2, in_channels=1)
    assert net.num_features == 16
    for size in (14, 28, 32):
        assert net(torch.randn(2, 1, size, size)).shape == (2, 16)
    # an all-'none' cell outputs zeros: the stage adds nothing but the reduction path
    zero = NB201Network("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", width=4, cells=1)
    cell = zero.body[2]
    assert torch.equal(cell(torch.randn(1, 4, 7, 7)), torch.zeros(1, 4, 7, 7))
    # skip-only cell: node1 = x, node2 = x + node1, node3 = x + node1 + node2 = 4x
    skip = NB201Network(
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
        width=4,
    )
    x = torch.randn(1, 4, 5, 5)
    assert torch.allclose(skip.body[2](x), 4 * x)


def test_search_ranks_architectures_with_rank_outputs(tmp_path, monkeypatch):

    data = load_dataset("digits", n_train=192, n_val=96, image_size=14)
    archs = sample_archs(2, seed=1)
    config = FinetuneConfig(epochs=2.0, eval_every=1)
    result = search(archs, data, out_dir=tmp_path, config=config)
    assert [c["status"] for c in result.candidates] == ["ok", "ok"]
    assert all(c["name"].startswith("nb201:") for c in result.candidates)
    saved = json.loads((tmp_path / "results.json").read_text())
    # the default score (Q4 of the bench-v3 protocol): the fisher proxy of the untrained network
    assert saved["settings"]["score"]["name"] == DEFAULT_SCORE == "fisher"
    fisher = [c["backbone"]["proxies"]["fisher"] for c in result.candidates]
    assert all(c["score"]["value"] == v for c, v in zip(result.candidates, fisher))
    assert result.ranking == [
        c["name"]
        for c in sorted(result.candidates, key=lambda c: -c["backbone"]["proxies"]["fisher"])
    ]
    assert saved["settings"]["search_space"] == {"name": "nas-bench-201", "width": 8, "cells": 1}
    assert (tmp_path / "fits.png").exists() and len(
        list((tmp_path / "candidates").glob("*.json"))
    ) == 2
    # same seed, same untrained init and same trajectory; resume with another width is refused
    again = search(archs, data, out_dir=tmp_path / "again", config=config)
    assert [p["val_loss"] for p in again.candidates[0]["trajectory"]] == [
        p["val_loss"] for p in result.candidates[0]["trajectory"]
    ]
    with pytest.raises(ValueError, match="different settings"):
        search(
            archs,
            data,
            out_dir=tmp_path,
            config=config,
            width=4,
            execution=Execution(mode="resume"),
        )
    # computing the proxies leaves the training as it was: the extrapolation ranks the same runs
    paper = search(archs, data, out_dir=tmp_path / "paper", config=config, score="paper")
    assert [p["val_loss"] for p in paper.candidates[0]["trajectory"]] == [
        p["val_loss"] for p in result.candidates[0]["trajectory"]
    ]
    assert "proxies" not in paper.candidates[0]["backbone"]


def test_the_nas_default_is_the_committed_q4_choice():
    path = Path(__file__).parents[2] / "benchmarks" / "results" / "nas-v1-q4" / "q4.json"
    q4 = json.loads(path.read_text())
    assert DEFAULT_SCORE == q4["default"]
    assert q4["protocol"].startswith("docs/benchmark-v3-protocol.md")


def test_proxy_names_are_the_proxies_ncap_computes():
    from ncap.predict.proxies import PROXIES
    from ncap.predict.scores import PROXY_SCORES

    assert set(PROXY_SCORES) == set(PROXIES) | {"flops"}


class FakeNats:
    def __init__(self, table):
        self.table = table
        self.keys = list(table)

    def query_index_by_arch(self, arch):
        return self.keys.index(arch) if arch in self.table else -1

    def get_more_info(self, index, dataset, hp="12", is_random=True):
        assert hp == "200" and is_random is False
        return {"test-accuracy": self.table[self.keys[index]][dataset]}


def test_nats_lookup_with_an_api_object_and_missing_files(tmp_path, monkeypatch):
    archs = sample_archs(3, seed=0)
    api = FakeNats({a: {"cifar10": 90.0 + k} for k, a in enumerate(archs)})
    got = nats_accuracies(archs, api=api)
    assert got == {a: pytest.approx((90.0 + k) / 100) for k, a in enumerate(archs)}
    with pytest.raises(ValueError, match="not in the NATS-Bench"):
        nats_accuracies([ARCH], api=FakeNats({}))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="NATS-tss-v1_0-3ffb9-simple"):
        nats_accuracies(archs, tmp_path)


def test_cli_nas_errors(tmp_path, capsys):
    assert main(["nas", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "either --archs" in capsys.readouterr().err
    assert (
        main(
            [
                "nas",
                "--archs",
                "|bogus~0|",
                "--out",
                str(tmp_path),
                "--no-progress",
                "--data",
                "digits",
            ]
        )
        == 2
    )
    assert "node groups" in capsys.readouterr().err
    args = ["nas", "--sample", "2", "--out", str(tmp_path / "s"), "--no-progress", "--data",
            "digits", "--n-train", "64", "--n-val", "32"]  # fmt: skip
    assert main([*args, "--score", "best-proxy"]) == 2  # refused before any training
    err = capsys.readouterr().err
    assert "unknown score 'best-proxy'" in err and "fisher" in err
    assert not (tmp_path / "s" / "candidates").exists()


@pytest.mark.skipif(
    fashion_mnist_dir() is None, reason="Fashion-MNIST (Debian package) not installed"
)
def test_the_proxies_ncap_nas_ranks_by_are_the_benchmarks():
    """proxies_of on the NAS benchmark's data and architectures gives the recorded values (the
    default was chosen on them)."""
    from ncap.bench.plans import BenchPlan, load_target
    from ncap.models.registry import create_backbone
    from ncap.ranking.training_free import proxies_of

    path = Path(__file__).parents[2] / "benchmarks" / "results" / "nas-v1.json"
    results = json.loads(path.read_text())
    plan = BenchPlan.from_dict(results["plan"])
    (target,) = plan.targets
    data = load_target(target)
    for name in plan.models[:2]:
        backbone = create_backbone(name, **plan.model_options(), seed=0)
        got = proxies_of(backbone, data, FinetuneConfig(batch_size=plan.batch_size), ["fisher"])
        recorded = results["training_free"][target.key][name]["proxies"]["fisher"]
        assert got["proxies"]["fisher"] == pytest.approx(recorded, rel=1e-5)
