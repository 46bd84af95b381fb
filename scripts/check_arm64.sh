#!/usr/bin/env bash
# The project on aarch64 Linux, here on an x86-64 machine: an arm64 Debian (bookworm) root run under qemu-user
# emulation (binfmt_misc), where the project is built natively for aarch64 (the fused Snake kernel included, by
# the root's own gcc), the kernel's and the runtime's tests run on the tiny fixture models against the installed
# package, and its decode and stream outputs are compared with this machine's x86-64 outputs on the same codes
# (scripts/platform_outputs.py says which tolerance and why).
#
# Emulation proves the kernel builds, is used (codec.fused_snake) and computes the same audio on aarch64; it says
# nothing about speed: every aarch64 instruction is translated by qemu.
#
# Needs root, the network to Debian's and PyPI's mirrors, and .venv (scripts/setup.sh) for the x86-64 side.
# The root is cached in build/arm64-root (about 600 MB; delete it to start over); the first run takes longer.
# Each stage runs under a timeout. Writes build/arm64-result.json and prints a summary.
# Usage: bash scripts/check_arm64.sh      (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ROOT="$REPO/build/arm64-root"
HOST_PY="$REPO/.venv/bin/python"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The runtime tests run under emulation: the kernel's own tests, the lookup and missing-kernel policy, and the
# codec and streams on the tiny fixtures (the same files the wheels' test-command runs on native runners).
TESTS=(tests/runtime/test_fused_snake.py tests/runtime/test_kernels.py tests/runtime/test_codec.py tests/runtime/test_streaming.py
       tests/runtime/test_cl_kernels.py tests/runtime/test_int8.py)

stage() { echo; echo "== $(date +%H:%M:%S) $*"; }
unmount_all() {  # everything mounted under the root, deepest first (mmdebstrap may leave its /sys behind)
    awk -v root="$ROOT" 'index($2, root "/") == 1 {print $2}' /proc/mounts | sort -r | while read -r target; do
        umount "$target" 2>/dev/null || umount -l "$target" || true
    done
}
trap unmount_all EXIT
[[ $(id -u) == 0 ]] || { echo "needs root (apt-get, mount, chroot)" >&2; exit 2; }
[[ -x "$HOST_PY" ]] || { echo "needs .venv: bash scripts/setup.sh" >&2; exit 2; }

stage "tools: qemu-user-static, binfmt-support, mmdebstrap"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v update-binfmts >/dev/null; then
    timeout 300 apt-get update -q
    # binfmt_misc first, so that qemu-user-static's install registers its interpreters in it
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q qemu-user-static binfmt-support mmdebstrap
fi

stage "binfmt_misc: aarch64 binaries run through qemu"
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    update-binfmts --import qemu-aarch64 2>/dev/null || true
    update-binfmts --enable qemu-aarch64 || true
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then  # register it by hand, with F (fix binary): no copy in the root
    echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
        > /proc/sys/fs/binfmt_misc/register
fi
grep -E '^(enabled|interpreter|flags)' /proc/sys/fs/binfmt_misc/qemu-aarch64

if [[ ! -f "$ROOT/.snac-ready" ]]; then
    stage "arm64 Debian bookworm root in $ROOT (cached for later runs)"
    rm -rf "$ROOT"
    mkdir -p "$(dirname "$ROOT")"
    timeout 2400 mmdebstrap --arch=arm64 --variant=apt \
        --include=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates \
        bookworm "$ROOT" "$MIRROR"
    touch "$ROOT/.snac-ready"
fi
cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"  # for a binfmt entry without the F flag
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# this machine's CA bundle (it may hold a proxy's certificate that pip needs to reach PyPI)
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-certificates.crt"

unmount_all
# /proc, and /dev with /dev/shm (multiprocessing's semaphores). Not /sys: with this machine's /sys and its x86
# /proc/cpuinfo both visible, onnxruntime's CPU detection crashes at import under qemu (a segfault in
# onnxruntime_pybind11_state's initialisation, qemu 7.2); with either one alone it works.
for fs in proc dev dev/pts dev/shm; do
    mount --bind "/$fs" "$ROOT/$fs"
done
in_root() {  # run a command in the arm64 root, with a timeout in seconds
    local limit=$1
    shift
    timeout "$limit" chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/opt/venv/bin:/usr/bin:/bin LANG=C.UTF-8 \
        PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "$@"
}
in_root 60 uname -m
in_root 60 python3 -c "import platform; print('python', platform.python_version(), platform.machine())"

stage "x86-64 reference outputs (this machine, fused kernel and plain nodes)"
"$HOST_PY" -c "from snac_onnx.model import kernels; assert kernels.snake_library(), 'no x86-64 kernel built'"
timeout 300 "$HOST_PY" scripts/platform_outputs.py write "$REPO/build/arm64-reference.npz"

stage "the checkout into the root: /work/snac-onnx (tracked files, as they are now)"
rm -rf "$ROOT/work"
mkdir -p "$ROOT/work/snac-onnx" "$ROOT/work/tests-run"
git ls-files -z | xargs -0 cp --parents -t "$ROOT/work/snac-onnx"
cp "$REPO/build/arm64-reference.npz" "$ROOT/work/"
# the tests run from a folder with copies of tests/, export/ and pyproject.toml, so they import the installed
# package (as cibuildwheel's test-sources does)
cp -r "$ROOT/work/snac-onnx/tests" "$ROOT/work/snac-onnx/export" "$ROOT/work/snac-onnx/pyproject.toml" \
    "$ROOT/work/snac-onnx/scripts" "$ROOT/work/tests-run/"

stage "a venv in the root with numpy, onnxruntime, onnx and pytest (aarch64 wheels from PyPI)"
[[ -x "$ROOT/opt/venv/bin/python" ]] || in_root 600 python3 -m venv /opt/venv
in_root 1800 python -m pip install -q "numpy>=1.24" "onnxruntime>=1.17" "onnx>=1.16" "pytest>=8"
in_root 120 python -c "import numpy, onnxruntime, platform; print('numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__, platform.machine())"

stage "build and install snac-onnx natively for aarch64 (the kernel must build: SNAC_ONNX_REQUIRE_KERNEL=1)"
in_root 1800 /usr/bin/env SNAC_ONNX_REQUIRE_KERNEL=1 python -m pip install -q --force-reinstall --no-deps /work/snac-onnx
in_root 120 /usr/bin/env -C /work/tests-run python -c "
import snac_onnx, platform
from snac_onnx.model import kernels
from snac_onnx import SnacOnnx
lib = kernels.snake_library()
assert lib is not None and '/opt/venv/' in str(lib), lib
codec = SnacOnnx('tests/fixtures/tiny_24khz')
codec.load('decoder')
print('machine', platform.machine(), 'kernel', lib.name, 'codec.fused_snake', codec.fused_snake)
assert codec.fused_snake
"
LIB=$(in_root 60 /usr/bin/env -C /work/tests-run python -c "from snac_onnx.model import kernels; print(kernels.snake_library())")
in_root 60 readelf -h "$LIB" | grep -E "Class|Machine"  # an aarch64 ELF, built in the root

stage "tests under emulation: ${TESTS[*]}"
in_root 3000 /usr/bin/env -C /work/tests-run python -m pytest -q -p no:cacheprovider "${TESTS[@]}" 2>&1 | tee "$REPO/build/arm64-tests.log"
status=${PIPESTATUS[0]}
[[ $status == 0 ]] || { echo "tests failed under aarch64 ($status)" >&2; exit 1; }

stage "aarch64 outputs against the x86-64 reference"
in_root 900 /usr/bin/env -C /work/tests-run python scripts/platform_outputs.py compare /work/arm64-reference.npz \
    | tee "$REPO/build/arm64-result.json"
status=${PIPESTATUS[0]}
echo
echo "tests: $(tail -n 1 "$REPO/build/arm64-tests.log")"
echo "max abs difference against x86-64: $("$HOST_PY" -c "import json; print(json.load(open('$REPO/build/arm64-result.json'))['max_abs_diff_overall'])")"
exit "$status"
