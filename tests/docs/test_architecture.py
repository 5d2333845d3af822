"""Guard rails that follow the tree: docs/architecture.md names every module, the import graph has
no cycle (module level or not), every import inside a function says why it is there, and
``dir(ncap)`` is the public API."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import ncap

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "ncap"
DOC = ROOT / "docs" / "architecture.md"


def documented_paths(text: str) -> set[str]:
    """Paths (relative to src/ncap) of the entries of the doc's tree block."""
    block = text.split("```\nsrc/ncap/\n", 1)[1].split("```", 1)[0]
    stack: list[str] = []
    out: set[str] = set()
    for line in block.splitlines():
        match = re.match(r"^([│ ]*)[├└]── (\S+)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 4
        name = match.group(2)
        stack = stack[:depth]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
            out.add("/".join(stack))
        else:
            out.add("/".join([*stack, name]))
    return out


def source_modules() -> list[str]:
    paths = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if path.name in ("__init__.py", "__main__.py") and rel != "__init__.py":
            rel = rel.rsplit("/", 1)[0]  # a package: its folder is named
        paths.append(rel)
    return sorted(set(paths))


def test_the_architecture_doc_names_every_module():
    named = documented_paths(DOC.read_text())
    missing = [m for m in source_modules() if m not in named]
    assert not missing, f"docs/architecture.md's tree does not name {missing}"
    gone = sorted(n for n in named if not (SRC / n).exists())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


def test_the_doc_parser_sees_nesting():
    text = "```\nsrc/ncap/\n├── a.py   x\n├── p/     y\n│   ├── b.py\n│   └── q/\n│       └── c.py\n```"
    assert documented_paths(text) == {"a.py", "p", "p/b.py", "p/q", "p/q/c.py"}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycles_module_level_or_not():
    grimp = pytest.importorskip("grimp")  # (import-linter's graph builder, a dev dependency)
    graph = grimp.build_graph("ncap", cache_dir=None)  # every import: in functions, TYPE_CHECKING
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(edges) == []


def test_dir_is_the_public_api():
    assert dir(ncap) == sorted(ncap.__all__)
    assert "importlib" not in dir(ncap) and "Any" not in dir(ncap)


# An import inside a function is kept only for a reason named in a trailing comment on one of its
# lines: ``# lazy: torch, keeps ncap --help fast`` (a heavy package that importing the module
# should not load), ``# optional: ray`` (an optional dependency), ``# cycle: a <-> b`` (breaks a
# real import cycle). Anything else belongs at module level.
REASON = re.compile(r"#\s*(lazy|optional|cycle):\s*\S")


def local_imports(source: str) -> list[tuple[int, str, bool]]:
    """``(line, statement, has a reason comment)`` for every import inside a function."""
    lines = source.splitlines()
    found: dict[int, tuple[int, str, bool]] = {}
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import | ast.ImportFrom):
                span = lines[node.lineno - 1 : node.end_lineno]
                reason = any(REASON.search(line) for line in span)
                found[node.lineno] = (node.lineno, ast.unparse(node), reason)
    return sorted(found.values())


def test_the_local_import_finder_reads_the_reason():
    source = (
        "import os\n"
        "def f():\n"
        "    import torch  # lazy: torch, keeps ncap --help fast\n"
        "    from a import (  # optional: a\n"
        "        b,\n"
        "    )\n"
        "    import json\n"
        "    def g():\n"
        "        import sys  # (no reason)\n"
    )
    assert local_imports(source) == [
        (3, "import torch", True),
        (4, "from a import b", True),
        (7, "import json", False),
        (9, "import sys", False),
    ]


def test_every_import_inside_a_function_names_its_reason():
    unexplained = [
        f"{path.relative_to(ROOT)}:{line}: {statement}"
        for path in sorted(SRC.rglob("*.py"))
        for line, statement, reason in local_imports(path.read_text())
        if not reason
    ]
    assert not unexplained, (
        "move these imports to module level, or end them with '# lazy: <package>, <why>', "
        "'# optional: <package>' or '# cycle: <a> <-> <b>':\n" + "\n".join(unexplained)
    )
