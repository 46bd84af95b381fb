#!/usr/bin/env bash
# Print the commands to try after the demo, on the clip it made: each runs as printed, from the repository's root.
# The one source of the demo's "Try next" (tests/runtime/test_demo.py runs what this prints).
#
#   bash scripts/try_next.sh [MODEL] [CLIP] [CLI]   (defaults: models/snac_24khz out/roundtrip_in.wav .venv/bin/snac-onnx)
set -euo pipefail
MODEL=${1:-models/snac_24khz}
CLIP=${2:-out/roundtrip_in.wav}
CLI=${3:-.venv/bin/snac-onnx}
OUT=$(dirname "$CLIP")
cat <<END
Try next, on the clip the demo made ($CLIP; put your own audio file in its place: any rate, mono or stereo):
  $CLI roundtrip $CLIP -o $OUT/try_roundtrip.wav -m $MODEL --mix --resample
  $CLI encode $CLIP -o $OUT/try.npz -m $MODEL --mix --resample --layout orpheus
  $CLI decode $OUT/try.npz -o $OUT/try_decoded.wav --output-rate source
  $CLI info -m $MODEL
  $CLI serve -m $MODEL   # decode many token streams at once: WebSocket ws://127.0.0.1:8000/v1/stream (Ctrl-C stops it)
END
