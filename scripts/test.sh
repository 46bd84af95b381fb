#!/usr/bin/env bash
# Set up .venv, check the house rules (ruff, mypy --strict on the runtime), run the whole test suite
# (runtime tests without torch, parity tests against PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check snac_onnx
.venv/bin/mypy
exec .venv/bin/python -m pytest -q --durations=15 "$@"
