import json
import re
import subprocess
import sys

import numpy as np
import pytest

from ncap.cli.commands import build_parser, main
from ncap.data.idx import fashion_mnist_dir

RANK_ARGS = ["rank", "--models", "mlp-s,lenet", "--data", "digits", "--n-train", "256",
             "--n-val", "128", "--epochs", "1", "--eval-every", "1", "--no-progress"]  # fmt: skip


def test_rank_prints_table_and_writes_outputs(tiny_zoo, tmp_path, capsys):
    assert main([*RANK_ARGS, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mlp-s" in out and "lenet" in out and "predicted" in out
    assert (tmp_path / "results.json").exists() and (tmp_path / "fits.png").exists()
    # a second run refuses to overwrite, --resume reuses
    assert main([*RANK_ARGS, "--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*RANK_ARGS, "--out", str(tmp_path), "--resume", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["ranking"]) == ["lenet", "mlp-s"]
    trust = data["settings"]["score"]["trust"]  # the trust statement under the table and in JSON
    assert set(trust) >= {"p_best", "expected_regret", "warnings", "calibrated"}
    assert trust["p_best"] is None or 0.0 <= trust["p_best"] <= 1.0
    assert "trust:" in out


def test_full_epochs_prints_kendall_tau(tiny_zoo, tmp_path, capsys):
    assert main([*RANK_ARGS, "--out", str(tmp_path), "--full-epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "Kendall tau" in out and "true final" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--models", "no-such-net", "--data", "digits"],
            "unknown model 'no-such-net'. Built-in models: ",
        ),
        (
            ["--models", "mlp-s", "--data", "no-such-data"],
            "Datasets: cifar10, cifar100, cub200, digits, fashion-mnist",
        ),
        (
            ["--models", "mlp-s", "--data", "/no/such/dir"],
            "not a known name and not a directory",
        ),
        (["--models", "zz:foo", "--data", "digits"], "unknown model source 'zz'"),
    ],
)
def test_bad_names_and_paths(tiny_zoo, tmp_path, capsys, args, message):
    code = main(["rank", *args, "--out", str(tmp_path), "--steps", "4", "--eval-every", "1",
                 "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert message in captured.err + captured.out
    assert code in (1, 2)  # 2: refused before running; 1: every candidate failed


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["rank", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    parser = build_parser()
    rank_parser = parser._subparsers._group_actions[0].choices["rank"]
    for action in rank_parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{action.option_strings} has no help text"


def test_zoo_and_datasets_listing(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) >= 6 and "resnet-s" in out and "mobilenet-s" in out
    assert main(["datasets"]) == 0
    assert "fashion-mnist-5-9" in capsys.readouterr().out


@pytest.mark.skipif(
    fashion_mnist_dir() is None, reason="Fashion-MNIST (Debian package) not installed"
)
def test_demo_runs_offline_on_fashion_mnist(tiny_zoo, tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(["demo", "--out", str(out), "--no-progress", "--epochs", "0.25", "--eval-every", "2"])
        == 0
    )
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["dataset"]["name"] == "fashion-mnist-5-9"
    assert len(data["candidates"]) >= 6
    assert len({c["backbone"]["family"] for c in data["candidates"]}) >= 6
    assert all(c["status"] == "ok" for c in data["candidates"])
    preds = [c["predicted_accuracy"] for c in data["candidates"]]
    assert np.all(np.isfinite(preds))
    printed = " ".join(capsys.readouterr().out.split())
    assert "ranking on fashion-mnist-5-9" in printed
    # the demo assumes T by rank()'s rule (the budget = 10% of T) and says so in the title
    budget = data["settings"]["budget_steps"] / 47  # epochs: 3000 images / 64 = 47 steps each
    assert data["settings"]["score"]["target_epochs"] == pytest.approx(10 * budget)
    assert data["settings"]["score"]["target_assumed"] is True
    assert re.search(r"predictions for T = 2\.\d+ epochs, ASSUMED \(set --target-epochs\)", printed)


def test_help_imports_neither_torch_nor_scikit_learn():
    """`ncap --help` answers fast: the flags are built from settings modules without heavy imports."""
    code = (
        "import sys\nfrom ncap.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'sklearn', 'scipy', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
