#!/usr/bin/env bash
# The main job: set up .venv, export snac_24khz to models/snac_24khz (checked against PyTorch),
# then round-trip a short clip through it with snac_onnx.
#
# The official weights come from the Hugging Face Hub. Where the hub cannot be reached (and the
# files are not cached), this script says so loudly and exports the official config with SEEDED
# RANDOM weights instead, so the whole pipeline still runs; that model's audio is not meaningful.
# Pass --random-init to ask for that directly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python

if [ "${1:-}" = "--random-init" ]; then
  $PY -m export --random-init 24khz --seed 0 -o models/snac_24khz
else
  set +e
  HF_HUB_DOWNLOAD_TIMEOUT=${HF_HUB_DOWNLOAD_TIMEOUT:-10} $PY -m export snac_24khz -o models/snac_24khz
  status=$?
  set -e
  if [ "$status" -eq 3 ]; then
    echo "=============================================================================="
    echo " The Hugging Face Hub is not reachable and snac_24khz is not cached."
    echo " Exporting the official 24 kHz config with SEEDED RANDOM WEIGHTS instead."
    echo " Everything below runs for real, but the audio it makes is NOT meaningful."
    echo "=============================================================================="
    $PY -m export --random-init 24khz --seed 0 -o models/snac_24khz
  elif [ "$status" -ne 0 ]; then
    exit "$status"
  fi
fi
$PY scripts/roundtrip.py models/snac_24khz --out out
