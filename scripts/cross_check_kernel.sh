#!/usr/bin/env bash
# Portability check of the fused Snake kernel (csrc/snake.c) beyond the GCC/Linux build that
# `pip install` does here. Needs the network (PyPI) once, for zig's clang-based C compiler.
#
#   1. compiles csrc/snake.c with clang (zig cc) for aarch64 Linux, x86-64 and arm64 macOS and
#      x86-64 Windows (MinGW), with -Wall -Wextra -Werror: the non-GCC and non-x86 code paths
#      (no target_clones, other thread and symbol-export branches) must at least compile cleanly;
#   2. compiles it with clang in MSVC mode (zig cc -target x86_64-windows-msvc and aarch64-windows-msvc), so
#      the _MSC_VER branches (intrin.h, __restrict, _InterlockedExchangeAdd64, __declspec(dllexport)) are
#      compiled by something. zig ships no MSVC C runtime headers, so the few declarations the kernel takes
#      from stdlib.h, string.h and math.h come from stub headers with the UCRT's signatures, written here;
#   3. builds the x86-64 Linux library with clang (stable ABI, as setup.py) into a scratch copy of the
#      checkout and runs the kernel tests (tests/runtime/test_fused_snake.py) against it, so clang's code
#      path also runs.
#
# MSVC itself is not here: the Windows job of .github/workflows/wheels.yml is what compiles the kernel with it.
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
# -Wno-missing-field-initializers: the kernels' positional SnakeJob initializers leave the trailing stream
# fields (state, new_state, residual) zero, as C defines; recent clang warns about that under -Wextra.
FLAGS=(-O3 -fno-math-errno -fvisibility=hidden -Wall -Wextra -Werror -Wno-missing-field-initializers)
echo "zig $("$ZIG" version)"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
for target in aarch64-linux-gnu x86_64-macos aarch64-macos x86_64-windows-gnu; do
    "$ZIG" cc -target "$target" "${FLAGS[@]}" -c csrc/snake.c -o "$SCRATCH/snake-$target.o"  # zig writes next to -o /dev/null
    echo "compiled for $target"
done

STUB="$SCRATCH/msvc-crt"
mkdir -p "$STUB"
printf '%s\n' '#pragma once' '#include <stddef.h>' \
    '__declspec(restrict) void *__cdecl malloc(size_t size);' 'void __cdecl free(void *block);' > "$STUB/stdlib.h"
printf '%s\n' '#pragma once' '#include <stddef.h>' \
    'void *__cdecl memcpy(void *dst, const void *src, size_t size);' \
    'void *__cdecl memset(void *dst, int value, size_t size);' > "$STUB/string.h"
printf '%s\n' '#pragma once' 'double __cdecl sin(double x);' 'double __cdecl fmod(double x, double y);' \
    'double __cdecl nearbyint(double x);' 'float __cdecl fabsf(float x);' \
    '#define INFINITY ((float)(1e+300 * 1e+300))' '#define NAN (-(float)(INFINITY * 0.0F))' > "$STUB/math.h"
for target in x86_64-windows-msvc aarch64-windows-msvc; do
    "$ZIG" cc -target "$target" -ffreestanding -isystem "$STUB" "${FLAGS[@]}" -c csrc/snake.c -o "$SCRATCH/snake-$target.obj"
    echo "compiled for $target (clang in MSVC mode, stub C runtime headers)"
done

PYINC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
git ls-files -z | xargs -0 cp --parents -t "$SCRATCH"
"$ZIG" cc -target x86_64-linux-gnu.2.17 -shared -fPIC "${FLAGS[@]}" -DSNAKE_PYTHON_MODULE=1 -DPy_LIMITED_API=0x030A0000 \
    -I"$PYINC" csrc/snake.c -o "$SCRATCH/snac_onnx/_snake.abi3.so" -lm -lpthread
echo "built $SCRATCH/snac_onnx/_snake.abi3.so with clang"
cd "$SCRATCH"
SCRATCH="$SCRATCH" "$PY" -c "import os, snac_onnx.model.kernels as k; lib = k.snake_library(); \
assert lib and str(lib).startswith(os.environ['SCRATCH']), lib; print('tests use', lib)"
"$PY" -m pytest -q -p no:cacheprovider tests/runtime/test_fused_snake.py
