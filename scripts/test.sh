#!/usr/bin/env bash
# Set up .venv and run the whole test suite (runtime tests without torch, parity tests against PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
