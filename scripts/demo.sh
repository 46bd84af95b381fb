#!/usr/bin/env bash
# The main job: set up .venv, export snac_24khz to models/snac_24khz (checked against PyTorch),
# then round-trip a short clip through it with snac_onnx, and say what to try next.
#
#   bash scripts/demo.sh                 # official weights from the hub (random ones if it is unreachable)
#   bash scripts/demo.sh --random-init   # seeded random weights on purpose
#   bash scripts/demo.sh --force-export  # export again even if models/snac_24khz already passed parity
#
# The official weights come from the Hugging Face Hub. Where the hub cannot be reached (and the
# files are not cached), this script says so and exports the official config with SEEDED RANDOM
# weights instead, so the whole pipeline still runs; that model's audio is not meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
RANDOM_INIT=0
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --random-init) RANDOM_INIT=1 ;;
    --force-export) FORCE=1 ;;
    *) echo "usage: bash scripts/demo.sh [--random-init] [--force-export]" >&2; exit 2 ;;
  esac
done
MODEL=models/snac_24khz
echo "1/3 setting up .venv (torch==2.13.0 CPU, onnxruntime, snac-onnx; log in out/setup.log) ..."
mkdir -p out
if ! bash scripts/setup.sh > out/setup.log 2>&1; then
  tail -20 out/setup.log >&2
  echo "setup failed; the whole log is out/setup.log" >&2
  exit 1
fi
PY=.venv/bin/python

# A folder that passed parity and still loads (checksums, graph names, the graphs' own config) is kept.
exported_ok() {
  [ -f "$MODEL/manifest.json" ] && $PY - "$MODEL" <<'EOF' 2>/dev/null
import sys
from snac_onnx import SnacOnnx
codec = SnacOnnx(sys.argv[1]).load()
sys.exit(0 if codec.manifest.raw.get("parity", {}).get("passed") else 1)
EOF
}

if [ "$FORCE" -eq 0 ] && exported_ok; then
  echo "2/3 $MODEL already exported and passed parity against PyTorch: kept (--force-export to redo it)"
elif [ "$RANDOM_INIT" -eq 1 ]; then
  echo "2/3 exporting the official 24 kHz config with SEEDED RANDOM weights to $MODEL ..."
  $PY -m export --random-init 24khz --seed 0 -o "$MODEL"
else
  echo "2/3 exporting hubertsiuzdak/snac_24khz to $MODEL and checking it against PyTorch ..."
  set +e
  $PY -m export snac_24khz -o "$MODEL"
  status=$?
  set -e
  if [ "$status" -eq 3 ]; then
    echo "    The Hugging Face Hub is not reachable and snac_24khz is not cached: exporting the official"
    echo "    24 kHz config with SEEDED RANDOM WEIGHTS instead. Everything runs for real; the audio is NOT"
    echo "    meaningful speech."
    $PY -m export --random-init 24khz --seed 0 -o "$MODEL"
  elif [ "$status" -ne 0 ]; then
    exit "$status"
  fi
fi
echo "3/3 round-tripping a 3 s clip through $MODEL ..."
$PY scripts/roundtrip.py "$MODEL" --out out

CLI=.venv/bin/snac-onnx
cat <<EOF

Done. The model is in $MODEL (encoder.onnx, decoder.onnx, stream.onnx, manifest.json); the clip and
its round trip are out/roundtrip_in.wav and out/roundtrip_out.wav.

Try next:
  $CLI roundtrip your.wav -o out/your_snac.wav -m $MODEL --mix --resample
  $CLI encode your.wav -o out/your.npz -m $MODEL --mix --resample --layout orpheus
  $CLI decode out/your.npz -o out/your_decoded.wav --output-rate source
  $CLI serve -m $MODEL     # decode many token streams at once: WebSocket ws://127.0.0.1:8000/v1/stream
EOF
