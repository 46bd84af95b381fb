#!/usr/bin/env bash
# Portability check of the fused Snake kernel (csrc/snake.c) beyond the GCC/Linux build that
# `pip install` does here. Needs the network (PyPI) once, for zig's clang-based C compiler.
#
#   1. compiles csrc/snake.c with clang (zig cc) for aarch64 Linux, x86-64 and arm64 macOS and
#      x86-64 Windows (MinGW), with -Wall -Wextra -Werror: the non-GCC and non-x86 code paths
#      (no target_clones, other thread and symbol-export branches) must at least compile cleanly;
#   2. builds the x86-64 Linux library with clang into a scratch copy of the checkout and runs the
#      kernel tests (tests/runtime/test_fused_snake.py) against it, so clang's code path also runs.
#
# The MSVC branches (_MSC_VER) are not covered: there is no MSVC here.
# Usage: bash scripts/cross_check_kernel.sh      (from the repository root, after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
ZIG_DIR=${ZIG_DIR:-build/zig}
if [[ ! -x "$ZIG_DIR/ziglang/zig" ]]; then
    "$PY" -m pip install -q --target "$ZIG_DIR" ziglang
fi
ZIG="$ZIG_DIR/ziglang/zig"
FLAGS=(-O3 -fno-math-errno -fvisibility=hidden -Wall -Wextra -Werror)
echo "zig $("$ZIG" version)"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
for target in aarch64-linux-gnu x86_64-macos aarch64-macos x86_64-windows-gnu; do
    "$ZIG" cc -target "$target" "${FLAGS[@]}" -c csrc/snake.c -o "$SCRATCH/snake-$target.o"  # zig writes next to -o /dev/null
    echo "compiled for $target"
done

PYINC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
SUFFIX=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
git ls-files -z | xargs -0 cp --parents -t "$SCRATCH"
"$ZIG" cc -target x86_64-linux-gnu.2.17 -shared -fPIC "${FLAGS[@]}" -DSNAKE_PYTHON_MODULE=1 -I"$PYINC" \
    csrc/snake.c -o "$SCRATCH/snac_onnx/_snake$SUFFIX" -lm -lpthread
echo "built $SCRATCH/snac_onnx/_snake$SUFFIX with clang"
cd "$SCRATCH"
SCRATCH="$SCRATCH" "$PY" -c "import os, snac_onnx.model.kernels as k; lib = k.snake_library(); \
assert lib and str(lib).startswith(os.environ['SCRATCH']), lib; print('tests use', lib)"
"$PY" -m pytest -q -p no:cacheprovider tests/runtime/test_fused_snake.py
