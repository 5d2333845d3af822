#!/usr/bin/env bash
# Install (scripts/bootstrap.sh), lint with ruff, check the layer contracts (import-linter), run the
# whole test suite and the docstrings' examples. This is the README's test
# command and what CI runs (.ci/run). Any failure, including pytest finding no tests (exit 5), fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "[test] ruff"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
echo "[test] import contracts (docs/architecture.md)"
.venv/bin/lint-imports
echo "[test] pytest"
.venv/bin/python -m pytest "$@"
