#!/usr/bin/env bash
# The GPU check (issue 21), at most ~5 minutes on one GPU; prints a Markdown report for the docs:
#   1. the CUDA tests (tests/training/test_runtime.py, tests/models/test_checkpoints.py: -k cuda);
#   2. benchmarks/throughput.py at 224 px: float32, --amp, and --amp with channels_last, pinned
#      memory and non-blocking copies (ncap's fine-tuning vs a plain PyTorch loop);
#   3. a ranking of the four real ImageNet checkpoints (and their random twins) at their own input
#      sizes on Fashion-MNIST classes 5-9 (digits without it), --device cuda.
# Without a CUDA GPU (CI) it says so and skips every part in seconds (one torch import).
# GPU_CHECK_DEVICE=cpu runs every part on the CPU instead, at the sizes GPU_CHECK_SIZE (px),
# GPU_CHECK_STEPS, GPU_CHECK_TRAIN and GPU_CHECK_VAL (images) give: the test of the script's GPU path. Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT="${1:-gpu-check-out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export NCAP_OFFLINE=1
START=$(date +%s)

read -r TORCH GPU < <("$PYTHON" -c 'import torch
print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')
echo "# ncap GPU check ($(date -u +%Y-%m-%dT%H:%MZ), torch $TORCH)"
echo
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
SIZE="${GPU_CHECK_SIZE:-224}"
STEPS="${GPU_CHECK_STEPS:-30}"
N_TRAIN="${GPU_CHECK_TRAIN:-3000}"
N_VAL="${GPU_CHECK_VAL:-1000}"
if [ "$DEVICE" = cpu ]; then
  GPU="the CPU (GPU_CHECK_DEVICE=cpu)"
fi
if [ -z "$GPU" ]; then
  echo "No CUDA GPU on this machine (torch $TORCH): the CUDA tests, the GPU throughput table and"
  echo "the GPU ranking are skipped (the CUDA tests skip themselves in the ordinary test suite)."
  echo
  echo "| part | result |"
  echo "|---|---|"
  echo "| CUDA tests | skipped: no GPU |"
  echo "| throughput at 224 px (AMP off/on) | skipped: no GPU |"
  echo "| ranking of the four real checkpoints | skipped: no GPU |"
  echo
  echo "gpu_check: CPU mode, $(( $(date +%s) - START )) s"
  exit 0
fi

echo "GPU: $GPU"
echo
echo "## 1. CUDA tests"
echo
"$PYTHON" -m pytest -q -p no:cacheprovider tests/training/test_runtime.py tests/models/test_checkpoints.py \
  -k cuda -m "" -rs 2>&1 | tail -n 8 | sed 's/^/    /'
echo
echo "## 2. Throughput at $SIZE px (ncap's fine-tuning vs a plain PyTorch loop)"
for FLAGS in "" "--amp" "--amp --channels-last --pin-memory --non-blocking"; do
  echo
  echo "flags: ${FLAGS:-none (float32)}"
  echo
  # shellcheck disable=SC2086  # FLAGS is a list of flags
  "$PYTHON" benchmarks/throughput.py --device "$DEVICE" --sizes "$SIZE" --steps "$STEPS" \
    --batch-size 64 --repeats 3 $FLAGS --json "$OUT/throughput${FLAGS// /}.json" | sed -n '/^device /,$p'
done
echo
echo "## 3. Ranking the four real ImageNet checkpoints and their twins (own input sizes, $DEVICE)"
echo
MODELS="tv:mobilenet_v2@IMAGENET1K_V1,timm:tf_efficientnet_lite0,timm:tf_efficientnet_lite1,timm:tf_efficientnet_lite2"
TWINS="tv:mobilenet_v2@random,timm:tf_efficientnet_lite0@random,timm:tf_efficientnet_lite1@random,timm:tf_efficientnet_lite2@random"
DATA=$("$PYTHON" -c 'from ncap.data.idx import fashion_mnist_dir; print("fashion-mnist-5-9" if fashion_mnist_dir() else "digits")')
"$PYTHON" -m ncap.cli rank --models "$MODELS,$TWINS" --data "$DATA" \
  --n-train "$N_TRAIN" --n-val "$N_VAL" --epochs 1 --device "$DEVICE" \
  $( [ "$DEVICE" = cpu ] && echo "--input-size $SIZE") --out "$OUT/rank" --overwrite --no-progress --json > "$OUT/rank.json"
"$PYTHON" - "$OUT/rank/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("| rank | model | observed acc | predicted acc | input | cost s | weights sha256 |")
print("|---|---|---|---|---|---|---|")
order = {n: i + 1 for i, n in enumerate(r["ranking"])}
for c in sorted(r["candidates"], key=lambda c: order.get(c["name"], 99)):
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    size = (c.get("runtime", {}).get("input") or {}).get("size")
    sha = c.get("backbone", {}).get("weights_sha256", "random")[:12]
    print(f"| {order.get(c['name'], '-')} | {c['name']} | {pct(c.get('observed_accuracy'))} | "
          f"{pct((c.get('prediction') or {}).get('accuracy'))} | {size} | "
          f"{(c.get('cost_seconds') or 0):.1f} | {sha} |")
PY
echo
echo "gpu_check: $(( $(date +%s) - START )) s on $GPU"
