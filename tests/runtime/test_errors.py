"""Bad input and bad model files give our errors, with messages that say what to do (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from snac_onnx import (
    InvalidAudioError,
    InvalidCodesError,
    ModelFormatError,
    ModelNotFoundError,
    SampleRateError,
    SnacOnnx,
    SnacOnnxError,
)
from tests.support import TINY_24, pcm


def test_error_classes_inherit_builtins():
    assert issubclass(InvalidAudioError, ValueError) and issubclass(InvalidAudioError, SnacOnnxError)
    assert issubclass(ModelNotFoundError, FileNotFoundError) and issubclass(ModelNotFoundError, SnacOnnxError)
    assert issubclass(InvalidCodesError, ValueError) and issubclass(SampleRateError, ValueError)


def test_wrong_sample_rate_names_both_rates(tiny24):
    with pytest.raises(SampleRateError, match=r"16000 Hz.*expects 24000 Hz.*resample"):
        tiny24.encode(pcm(100), sample_rate=16000)


@pytest.mark.parametrize(
    "audio,pattern",
    [
        (np.zeros(0, np.float32), "no samples"),
        (np.zeros((0, 100), np.float32), "empty batch"),
        (np.zeros((2, 2, 100), np.float32), "2 channels"),
        (np.zeros((1, 1, 1, 100), np.float32), "expected \\(samples,\\)"),
        (np.zeros(100, bool), "dtype bool"),
        (np.zeros(100, np.uint8), "dtype uint8"),
        (np.zeros(100, np.complex64), "dtype complex64"),
        (np.array(["a"]), "dtype <U1"),
        ("not audio", "numpy array"),
    ],
)
def test_bad_audio(tiny24, audio, pattern):
    with pytest.raises(InvalidAudioError, match=pattern):
        tiny24.encode(audio)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_audio(tiny24, bad):
    audio = pcm(1000)
    audio[10] = bad
    with pytest.raises(InvalidAudioError, match="1 NaN or infinite"):
        tiny24.encode(audio)


def _codes(frames: int, strides=(4, 2, 1), batch: int | None = None):
    shape = lambda n: (n,) if batch is None else (batch, n)  # noqa: E731
    return [np.zeros(shape(frames * strides[0] // s), np.int64) for s in strides]


def test_bad_codes(tiny24, tiny44):
    with pytest.raises(InvalidCodesError, match="expected 3 codebooks"):
        tiny24.decode(_codes(2)[:2])
    with pytest.raises(InvalidCodesError, match="list of 3 integer arrays"):
        tiny24.decode(np.zeros((3, 4), np.int64))
    float_codes = _codes(2)
    float_codes[1] = float_codes[1].astype(np.float32)
    with pytest.raises(InvalidCodesError, match=r"codes\[1\] has dtype float32"):
        tiny24.decode(float_codes)
    out_of_range = _codes(2)
    out_of_range[2][3] = 4096
    with pytest.raises(InvalidCodesError, match=r"\[0, 4096\]; codes must lie in \[0, 4096\)"):
        tiny24.decode(out_of_range)
    negative = _codes(2)
    negative[0][0] = -1
    with pytest.raises(InvalidCodesError, match=r"\[-1, 0\]"):
        tiny24.decode(negative)
    uneven = _codes(2)
    uneven[2] = uneven[2][:-1]
    with pytest.raises(InvalidCodesError, match=r"lengths \[2, 4, 7\].*must be \[2, 4, 8\]"):
        tiny24.decode(uneven)
    mixed = _codes(2)
    mixed[0] = mixed[0][None]
    with pytest.raises(InvalidCodesError, match="mix 1-D and 2-D"):
        tiny24.decode(mixed)
    batches = _codes(2, batch=2)
    batches[1] = batches[1][:1]
    with pytest.raises(InvalidCodesError, match="different batch sizes"):
        tiny24.decode(batches)
    with pytest.raises(InvalidCodesError, match="0 frames"):
        tiny24.decode(_codes(0))
    with pytest.raises(InvalidCodesError, match="not a multiple of 4.*attention window.*pad the codes to 4 frames"):
        tiny44.decode(_codes(3, strides=(8, 4, 2, 1)))


def test_bad_decode_arguments(tiny24):
    codes = _codes(2)
    with pytest.raises(InvalidCodesError, match=r"length must be an int in \[1, 4096\]"):
        tiny24.decode(codes, length=5000)
    with pytest.raises(InvalidCodesError, match="length must be"):
        tiny24.decode(codes, length=0)
    with pytest.raises(ValueError, match="seed applies to generated noise only"):
        tiny24.decode(codes, noise=False, seed=1)
    with pytest.raises(ValueError, match=r"noise\[0\] has shape"):
        tiny24.decode(codes, noise=[np.zeros((1, 1, 5), np.float32)] * 4)
    with pytest.raises(ValueError, match="list of 4 arrays"):
        tiny24.decode(codes, noise=[np.zeros((1, 1, 64), np.float32)])


def test_missing_model_folder(tmp_path: Path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        SnacOnnx(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        SnacOnnx(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="manifest.json' is missing"):
        SnacOnnx(tmp_path)


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_manifest_problems(tiny24_copy: Path):
    (tiny24_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        SnacOnnx(tiny24_copy)
    (tiny24_copy / "manifest.json").write_text((TINY_24 / "manifest.json").read_text())
    _edit_manifest(tiny24_copy, lambda d: d.update(format_version=99))
    with pytest.raises(ModelFormatError, match="format_version 99.*reads version 1"):
        SnacOnnx(tiny24_copy)
    _edit_manifest(tiny24_copy, lambda d: d.update(format_version=1) or d.pop("files"))
    with pytest.raises(ModelFormatError, match="lacks a required field"):
        SnacOnnx(tiny24_copy)


def test_manifest_names_differing_from_the_contract(tiny24_copy: Path):
    _edit_manifest(tiny24_copy, lambda d: d["graphs"]["decoder"]["inputs"].__setitem__(0, "tokens"))
    with pytest.raises(ModelFormatError, match="decoder names.*differ from the contract"):
        SnacOnnx(tiny24_copy)


def test_missing_graph_file(tiny24_copy: Path):
    (tiny24_copy / "encoder.onnx").unlink()
    codec = SnacOnnx(tiny24_copy)
    with pytest.raises(ModelNotFoundError, match="encoder.onnx' is missing"):
        codec.encode(pcm(100))
    codec.decode(_codes(1), noise=False)  # the decoder alone still works


def test_corrupted_byte_is_caught_by_checksum(tiny24_copy: Path):
    path = tiny24_copy / "decoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="sha256.*corrupt"):
        SnacOnnx(tiny24_copy).decode(_codes(1))


def test_truncated_file_without_checksum_is_a_clear_error(tiny24_copy: Path):
    path = tiny24_copy / "decoder.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelFormatError, match="truncated or corrupt"):
        SnacOnnx(tiny24_copy, verify=False).decode(_codes(1))


def test_graph_with_other_input_names(tiny24_copy: Path):
    onnx = pytest.importorskip("onnx")
    path = tiny24_copy / "encoder.onnx"
    model = onnx.load(str(path))
    old = model.graph.input[0].name
    model.graph.input[0].name = "pcm"
    for node in model.graph.node:
        node.input[:] = ["pcm" if name == old else name for name in node.input]
    onnx.save(model, str(path))
    with pytest.raises(ModelFormatError, match=r"inputs \['pcm'\].*different exports"):
        SnacOnnx(tiny24_copy, verify=False).encode(pcm(100))


def test_manifest_tail_tiles(tiny24_copy: Path):
    """graphs.decoder.tail_tiles: checked at load; absent (exports before tiling) means 1."""
    assert SnacOnnx(tiny24_copy).manifest.decoder_tail_tiles == 3
    for bad in (0, "3", 2.5, True):
        _edit_manifest(tiny24_copy, lambda d: d["graphs"]["decoder"].update(tail_tiles=bad))  # noqa: B023
        with pytest.raises(ModelFormatError, match="tail_tiles must be an int >= 1"):
            SnacOnnx(tiny24_copy)
    _edit_manifest(tiny24_copy, lambda d: d["graphs"]["decoder"].pop("tail_tiles"))
    assert SnacOnnx(tiny24_copy).manifest.decoder_tail_tiles == 1


# ---------------------------------------------------------------- found by a fuzz pass: bare errors made clear
@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.encode([[0.1, 0.2], [0.3]]),
        lambda c: c.encode([0.1, [0.2, 0.3]]),
        lambda c: c.decode_tokens([[1, 2], [3]]),
        lambda c: c.stream().push_tokens([[1, 2], [3]]),
        lambda c: c.orpheus_stream().push([[1, 2], [3]]),
        lambda c: c.preset_stream("mini-omni").push([[1, 2], [3]]),
        lambda c: c.decode(_codes(1), noise=[[[1.0], 2.0], [0.0], [0.0], [0.0]]),
    ],
    ids=["encode", "encode-mixed", "decode_tokens", "push_tokens", "orpheus", "mini-omni", "noise"],
)
def test_ragged_nested_lists_are_our_error_not_numpys(tiny24, call):
    with pytest.raises(SnacOnnxError, match="nested lists") as caught:
        call(tiny24)
    assert "inhomogeneous" not in str(caught.value)


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda d: d["files"].update(decoder="decoder.onnx"), "files.decoder"),
        (lambda d: d["files"].update(encoder=["encoder.onnx"]), "files.encoder"),
        (lambda d: d["files"]["decoder"].update(sha256=None), "files.decoder"),
        (lambda d: d["files"].update(stream=7), "files.stream"),
        (lambda d: d.update(files="encoder.onnx"), "files"),
        (lambda d: d.update(variants={"int8": {"encoder": "e.onnx", "decoder": "d.onnx"}}), "variants.int8.encoder"),
    ],
)
def test_a_file_entry_of_the_wrong_type_is_named(tiny24_copy: Path, edit, field):
    _edit_manifest(tiny24_copy, edit)
    with pytest.raises(ModelFormatError, match=rf"{field} must be an object") as caught:
        SnacOnnx(tiny24_copy)
    assert "dictionary update sequence" not in str(caught.value)


def test_edited_vq_strides_are_named_not_just_the_padding_unit(tiny24_copy: Path):
    _edit_manifest(tiny24_copy, lambda d: d["config"].update(vq_strides=[s // 2 or 1 for s in d["config"]["vq_strides"]]))
    with pytest.raises(ModelFormatError, match=r"vq_strides \[2, 1, 1\] give padding_unit 1024.*records padding_unit 2048"):
        SnacOnnx(tiny24_copy)


def test_edited_encoder_rates_are_named_not_just_the_hop_length(tiny24_copy: Path):
    _edit_manifest(
        tiny24_copy, lambda d: d["config"].update(encoder_rates=[2, 4, 8, 4], decoder_rates=[4, 8, 4, 2])
    )
    with pytest.raises(ModelFormatError, match=r"encoder_rates \[2, 4, 8, 4\] give hop_length 256.*records hop_length 512"):
        SnacOnnx(tiny24_copy)
