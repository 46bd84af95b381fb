"""Builds the optional fused Snake kernel (csrc/snake.c) as snac_onnx._snake.

Everything else is in pyproject.toml. The extension is optional: where no C
compiler is available the install still succeeds, and snac_onnx runs the same
graphs without it (slower on CPU; see snac_onnx.kernels).
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args: list[str] = ["/O2", "/fp:precise"]
    libraries: list[str] = []
else:
    compile_args = ["-O3", "-fno-math-errno", "-fvisibility=hidden", "-Wall"]
    libraries = ["m", "pthread"]

setup(
    ext_modules=[
        Extension(
            "snac_onnx._snake",
            sources=["csrc/snake.c"],
            define_macros=[("SNAKE_PYTHON_MODULE", "1")],
            extra_compile_args=compile_args,
            libraries=libraries,
            optional=True,
        )
    ]
)
