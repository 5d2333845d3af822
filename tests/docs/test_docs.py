"""Every code block of the README and docs/ runs (issue 25: docs that match the code).

- ``python`` blocks run in-process on tiny data (those of docs/ with ``-m slow``): the built-in zoo pretrained on a tiny set
  (``tiny_zoo``), ``n_train``/``n_val``/``epochs`` shrunk by :data:`SHRINK`, in a temporary
  directory; a line marked ``# needs: ...`` (a GPU, internet) is left out and must be the block's
  last statement.
- ``bash`` blocks: every ``ncap ...`` command parses with ncap's own parser (its flags exist and take
  the values shown); lines with ``...`` are placeholders and skipped.
"""

import re
import shlex
from pathlib import Path

import pytest

from ncap.cli.commands import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHRINK = (
    (r"n_train=3000", "n_train=384"),
    (r"n_val=1000", "n_val=128"),
    (r"n_val=450", "n_val=128"),
    (r"epochs=4\)", "epochs=2)"),
    (r"min_budget=1\.0", "min_budget=0.5"),
    (r'"recipes/paper\.toml"', repr(str(ROOT / "recipes" / "paper.toml"))),
)


def _blocks(kind: str):
    """The blocks of one language; docs/'s Python blocks (40-45 s each here) are marked slow,
    the README's runs in the default suite."""
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for k, match in enumerate(re.finditer(rf"```{kind}\n(.*?)```", text, re.S)):
            slow = kind == "python" and path.name != "README.md"
            yield pytest.param(match.group(1), id=f"{path.name}-{k}",
                               marks=[pytest.mark.slow] if slow else [])  # fmt: skip


def _commands(block: str):
    """The ``ncap ...`` commands of a shell block (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#") or "..." in line:
            continue
        for part in re.split(r"&&|&(?!&)|;", line):
            words = shlex.split(part)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if words and words[0].endswith("ncap"):
                yield words[1:]


@pytest.mark.parametrize("block", list(_blocks("bash")))
def test_every_ncap_command_in_the_docs_parses(block):
    parser = build_parser()
    for argv in _commands(block):
        try:
            parser.parse_args(argv)
        except SystemExit as err:
            if err.code != 0:  # (--help exits 0)
                raise AssertionError(f"`ncap {' '.join(argv)}` does not parse") from None


def test_the_docs_have_commands_and_python_blocks():
    assert sum(1 for b in _blocks("bash") for _ in _commands(b.values[0])) >= 15
    assert len(list(_blocks("python"))) >= 3


@pytest.mark.parametrize("block", list(_blocks("python")))
def test_every_python_block_runs_on_tiny_data(block, tiny_zoo, tmp_path, monkeypatch, capsys):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    lines = block.splitlines()
    needs = [k for k, line in enumerate(lines) if "# needs:" in line]
    assert all(k == len(lines) - 1 for k in needs), "only the last statement may need more"
    code = "\n".join(line for line in lines if "# needs:" not in line)
    for pattern, replacement in SHRINK:
        code = re.sub(pattern, replacement, code)
    exec(compile(code, "<docs block>", "exec"), {"__name__": "__docs__"})
    capsys.readouterr()
