"""Builds the fused Snake kernel (csrc/snake.c) as snac_onnx._snake.

Everything else is in pyproject.toml. The extension is built against Python's stable ABI
(``Py_LIMITED_API``, CPython 3.10 and later): only its module init function touches Python
(onnxruntime loads the library by path), so one wheel per platform, tagged ``cp310-abi3``,
serves every supported CPython.

Where no C compiler works (a ``python:3.x-slim`` image, Windows without the Build Tools), an
install from source still succeeds without the kernel: this script then prints a banner saying
so, and snac_onnx logs one WARNING per process that CPU decoding runs unfused (slower;
see snac_onnx.model.kernels). With ``SNAC_ONNX_REQUIRE_KERNEL=1`` (set by the wheel builds in
.github/workflows/wheels.yml) a kernel that does not build fails the build instead.
"""

import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE_KERNEL = os.environ.get("SNAC_ONNX_REQUIRE_KERNEL", "") not in ("", "0")
# The free-threaded CPython builds (3.13t, 3.14t) have no stable ABI: there the kernel is built for the
# running interpreter alone.
LIMITED_API = not sysconfig.get_config_var("Py_GIL_DISABLED")
LIMITED_API_VERSION = "0x030A0000"  # CPython 3.10, the oldest the package supports (requires-python)

if sys.platform == "win32":
    compile_args: list[str] = ["/O2", "/fp:precise"]
    libraries: list[str] = []
else:
    compile_args = ["-O3", "-fno-math-errno", "-fvisibility=hidden", "-Wall"]
    libraries = ["m", "pthread"]

NO_KERNEL_BANNER = """
==============================================================================
snac-onnx: the fused Snake kernel (csrc/snake.c) could NOT be compiled:
    {error}
Installing without it. snac-onnx works, but decoding on CPU runs unfused
and much slower (snac-onnx logs a WARNING saying how much, once per process).
To get the kernel: install a snac-onnx wheel built for this platform, or
install a C compiler (gcc or clang; on Windows the MSVC Build Tools) and
reinstall from source. Set SNAC_ONNX_REQUIRE_KERNEL=1 to make this an error.
==============================================================================
"""


class BuildKernel(build_ext):
    """build_ext that says loudly when the optional kernel is skipped (setuptools only logs a line)."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # setuptools skips an optional extension on CompileError, LinkError and more
            if not REQUIRE_KERNEL:
                sys.stderr.write(NO_KERNEL_BANNER.format(error=str(exc).strip() or type(exc).__name__))
                sys.stderr.flush()
            raise


setup(
    cmdclass={"build_ext": BuildKernel},
    ext_modules=[
        Extension(
            "snac_onnx._snake",
            sources=["csrc/snake.c"],
            define_macros=[("SNAKE_PYTHON_MODULE", "1")]
            + ([("Py_LIMITED_API", LIMITED_API_VERSION)] if LIMITED_API else []),
            extra_compile_args=compile_args,
            libraries=libraries,
            py_limited_api=LIMITED_API,
            optional=not REQUIRE_KERNEL,
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if LIMITED_API else {},
)
