#!/usr/bin/env bash
# Set up .venv, check the house rules (ruff, mypy --strict on the runtime), build the docs, run the whole test suite
# (runtime tests without torch, parity tests against PyTorch). For everyday work the quick run leaves out the
# tests marked slow (exports, parity, the wheel, Ray): .venv/bin/python -m pytest -n 2 -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check snac_onnx
.venv/bin/mypy
# The documentation site: a broken link or an API reference that no longer resolves fails here (a few seconds).
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$SITE"  # not --quiet: it hides the warnings --strict counts
rm -rf "$SITE"
trap - EXIT
# Two workers (pytest-xdist): most of the time is torch.onnx's single-threaded tracing of the exports. Each
# module, or class (tests/parity: one per official config and its export), runs on one worker, so a module or
# class fixture is built once.
exec .venv/bin/python -m pytest -q --durations=15 -n 2 --dist loadscope "$@"
