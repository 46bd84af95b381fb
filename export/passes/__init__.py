"""Graph passes of the channels-last graphs, one module each (each tested on a small graph in tests/export).

The int8 variant is the fp32 channels-last graph after, in order: :mod:`.quantize_dense` (every dense
``MatMul`` becomes per-row quantization, ``MatMulInteger`` and dequantization), :mod:`.fuse_quantize` (a layer
whose output is quantized writes the quantized rows itself) and :mod:`.fuse_dequantize_add` (a residual add joins
the dequantization). :mod:`.functions` gives every ``ai.snac_onnx`` node its function body, and
:mod:`.cleanup` drops what no node reads.
"""
