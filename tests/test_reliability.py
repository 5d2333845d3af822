"""Issue 23: halving, resume, the lock, user arrays and models, the cluster, under faults.

One section per class of the issue, each with at least three cases; each asserts the exit code or
the error, the message, and that finished work is intact (file hashes before and after). Halving
fault tests assert that ``--resume`` after the fault equals an uninterrupted run.
"""

import hashlib
import os
import re
from pathlib import Path

import pytest

from ncap.exceptions import StorageError
from ncap.storage import LOCK_NAME, directory_lock


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
