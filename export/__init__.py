"""Export official SNAC checkpoints to ONNX (run from a checkout: ``python -m export --help``).

Needs torch and the official ``snac`` package; the runtime package ``snac_onnx``
never does. This package is not shipped in the wheel.
"""
