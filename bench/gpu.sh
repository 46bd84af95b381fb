#!/usr/bin/env bash
# Every GPU check in one go (bench/gpu_check.py: providers, CUDA-vs-CPU parity, the fp16 variant's error,
# batched stream steps at 1/8/64 rows, the stream pool with and without batching), in a few minutes, on a
# machine with an NVIDIA GPU. CI never runs it.
#
# Needs python3 with torch (the model is exported there, with seeded random weights), onnx, onnxscript,
# onnxruntime-gpu (alone: beside onnxruntime it silently gives CPU only) and snac==1.2.1. Wheels missing
# there can be put in .whl/ (installed to /tmp/site; the device tool's note on carrying wheels says how).
# The report goes to $OUT/gpu.md (OUT defaults to out/gpu).
#
#   bash bench/gpu.sh                    # export models/ there, then every check
#   MODEL=models/snac_24khz bash bench/gpu.sh --seconds 5
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu_name.txt" || true
MODEL=${MODEL:-/tmp/snac_24khz_gpu}
if [ ! -f "$MODEL/manifest.json" ]; then
  timeout 400 "$PY" -m export --random-init 24khz --seed 0 -o "$MODEL" -q --precision fp16
fi
timeout 300 "$PY" bench/gpu_check.py "$MODEL" --out "$OUT/gpu.md" "$@"
