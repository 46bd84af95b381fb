"""Property-based robustness of every public entry point (no torch).

Each generated input either works (finite audio, valid codes) or raises a
SnacOnnxError whose message names the problem. Anything else is a failure:
a crash inside onnxruntime, a NaN, a hang (pytest-timeout), or a foreign
exception type. The number of cases run is printed at the end of the session
(``-s`` shows it) and written to ``.hypothesis-cases.json`` when REPORT_CASES is set.
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snac_onnx import SnacOnnxError
from snac_onnx.cli import main as cli_main
from snac_onnx.layouts import codes_to_tokens, tokens_to_codes
from tests.support import TINY_24, TINY_44, without_random_weights_warning

CASES: collections.Counter = collections.Counter()
# deadline=None: no time limit per example (a loaded machine is slow, not wrong); pytest-timeout stops a hang
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

DTYPES = st.sampled_from(
    [np.float32, np.float64, np.float16, np.int16, np.int32, np.int64, np.uint8, np.bool_, np.complex64, object]
)


def _arrays(dtype, shape):
    if dtype is object:
        return st.just(np.empty(shape, dtype=object))
    elements = None
    if np.dtype(dtype).kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(dtype).itemsize * 8)
    return hnp.arrays(dtype, shape, elements=elements)


shapes = st.one_of(
    hnp.array_shapes(min_dims=1, max_dims=1, min_side=0, max_side=5000),
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=600),
    st.tuples(st.integers(0, 3), st.integers(1, 3), st.integers(0, 3000)),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
)


def _outcome(name, fn):
    try:
        result = fn()
    except SnacOnnxError as exc:
        assert str(exc), "errors must say what was wrong"  # noqa: PT017
        CASES[f"{name}: clear error"] += 1
        return None
    CASES[f"{name}: worked"] += 1
    return result


def _transform(arr, how):
    if how == "non-contiguous" and arr.ndim >= 1 and arr.shape[-1] > 1:
        arr = arr[..., ::2]
    elif how == "read-only":
        arr = arr.copy()
        arr.setflags(write=False)
    elif how == "fortran" and arr.ndim >= 2:
        arr = np.asfortranarray(arr)
    return arr


@SETTINGS
@given(dtype=DTYPES, shape=shapes, how=st.sampled_from(["plain", "non-contiguous", "read-only", "fortran"]), data=st.data())
def test_encode_any_array(tiny24, dtype, shape, how, data):
    arr = _transform(data.draw(_arrays(dtype, shape)), how)
    codes = _outcome("encode", lambda: tiny24.encode(arr))
    if codes is not None:
        assert all(c.dtype == np.int64 and ((c >= 0) & (c < 4096)).all() for c in codes)


@SETTINGS
@given(
    amplitude=st.sampled_from([0.0, 1e-30, 1e-3, 1.0, 3.9, 4.1, 1e4, 3.4e38]),
    length=st.integers(1, 6000),
    rate=st.sampled_from([None, 24000, 16000, 44100, 0, -1]),
)
def test_encode_amplitudes_and_rates(tiny24, amplitude, length, rate):
    audio = (amplitude * np.sin(np.arange(length) / 3.0)).astype(np.float32)
    codes = _outcome("encode amplitude/rate", lambda: tiny24.encode(audio, sample_rate=rate))
    if codes is not None:
        audio_out = tiny24.decode(codes, length=length, noise=False)
        assert np.isfinite(audio_out).all()


code_dtypes = st.sampled_from([np.int64, np.int32, np.int16, np.uint16, np.uint64, np.float32, np.bool_])
CORRUPTIONS = ["none", "none", "none", "dtype", "drop codebook", "extra codebook", "shorten one", "out of range",
               "negative", "batch mismatch", "mixed ranks", "empty"]


@SETTINGS
@given(
    frames=st.integers(1, 12),
    batch=st.one_of(st.none(), st.integers(1, 3)),
    corruption=st.sampled_from(CORRUPTIONS),
    dtype=code_dtypes,
    noise=st.sampled_from([False, True]),
    model=st.sampled_from(["tiny24", "tiny44"]),
    seed=st.integers(0, 1000),
)
def test_decode_valid_and_corrupted_codes(request, frames, batch, corruption, dtype, noise, model, seed):
    """Valid codes (any frame count: non-multiples of the attention window must be refused) and one corruption."""
    codec = request.getfixturevalue(model)
    rng = np.random.default_rng(seed)
    shape = (lambda n: (n,)) if batch is None else (lambda n: (batch, n))
    codes = [rng.integers(0, 4096, shape(n)) for n in codec.config.code_lengths(frames)]
    if corruption == "dtype":
        codes[0] = codes[0].astype(dtype)
    elif corruption == "drop codebook":
        codes = codes[:-1]
    elif corruption == "extra codebook":
        codes = codes + [codes[-1]]
    elif corruption == "shorten one":
        codes[-1] = codes[-1][..., :-1]
    elif corruption == "out of range":
        codes[1][..., 0] = 4096 + seed
    elif corruption == "negative":
        codes[1][..., 0] = -1 - seed
    elif corruption == "batch mismatch" and batch is not None:
        codes[0] = np.concatenate([codes[0], codes[0]])
    elif corruption == "mixed ranks":
        codes[0] = codes[0][None] if batch is None else codes[0][0]
    elif corruption == "empty":
        codes = [c[..., :0] for c in codes]
    audio = _outcome(f"decode ({corruption})", lambda: codec.decode(codes, noise=noise, seed=1 if noise else None))
    if audio is not None:
        assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
        benign = (
            corruption == "none"
            or (corruption == "dtype" and np.dtype(dtype).kind in "iu")
            or (corruption == "batch mismatch" and batch is None)
        )
        assert benign and frames % codec.config.frames_multiple == 0, "a bad input was accepted"


@SETTINGS
@given(
    frames=st.integers(0, 8),
    layout=st.sampled_from(["interleaved", "codebook_major", "orpheus"]),
    strides=st.sampled_from([(4, 2, 1), (8, 4, 2, 1)]),
    cut=st.integers(0, 3),
    poke=st.one_of(st.none(), st.tuples(st.integers(0, 200), st.integers(-5, 200000))),
    seed=st.integers(0, 1000),
)
def test_tokens_valid_and_corrupted(frames, layout, strides, cut, poke, seed):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, 4096, frames * strides[0] // s) for s in strides]
    tokens = codes_to_tokens(codes, strides, layout)
    tokens = tokens[: tokens.size - cut] if cut else tokens
    if poke is not None and tokens.size:
        tokens = tokens.copy()
        tokens[poke[0] % tokens.size] = poke[1]
    back = _outcome("tokens_to_codes", lambda: tokens_to_codes(tokens, strides, 4096, layout))
    if back is not None:
        np.testing.assert_array_equal(codes_to_tokens(back, strides, layout), tokens)


@SETTINGS
@given(pushes=st.lists(st.one_of(
    hnp.arrays(np.int64, st.integers(0, 20), elements=st.integers(-2, 4100)),
    st.integers(-2, 4100),
    st.just(np.zeros(3, np.float32)),
), max_size=12))
def test_stream_any_pushes(tiny24, pushes):
    stream = tiny24.stream()
    pieces = []
    for item in pushes:
        out = _outcome("stream push", lambda: stream.push(item))  # noqa: B023
        if out is not None:
            pieces.append(out)
    final = _outcome("stream flush", stream.flush)
    for piece in pieces + ([final] if final is not None else []):
        assert piece.dtype == np.float32 and np.isfinite(piece).all()


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3), st.just(object()), st.just(np.zeros(2)),
)


def mostly(valid):
    """Valid values three times in four, junk otherwise (so that cases with every argument valid come up)."""
    return st.one_of(valid, valid, valid, JUNK)


@SETTINGS
@given(
    threads=mostly(st.integers(0, 4)), parallel=mostly(st.integers(1, 4)),
    max_chunk_seconds=mostly(st.floats(0.01, 100)), providers=mostly(st.sampled_from(
        [None, "CPUExecutionProvider", ["CPUExecutionProvider"], ("CUDAExecutionProvider", {}), "NoSuchProvider"])),
    precision=mostly(st.sampled_from(["fp32", "fp32", "int8", "fp16"])),
    model=mostly(st.sampled_from([str(TINY_24), TINY_44, TINY_24, "snac_24khz", "no/such", str(TINY_24) + "/x.onnx"])),
)
def test_constructor_any_arguments(threads, parallel, max_chunk_seconds, providers, precision, model):
    from snac_onnx import SnacOnnx

    def make():
        codec = SnacOnnx(model, threads=threads, parallel=parallel, max_chunk_seconds=max_chunk_seconds,
                         providers=providers, precision=precision, offline=True)
        codec.decode([np.zeros(n, np.int64) for n in codec.config.code_lengths(codec.config.frames_multiple)],
                     noise=False)
        return codec

    _outcome("SnacOnnx(...) + decode", make)


@SETTINGS
@given(fields=st.dictionaries(st.sampled_from(["intra_op_threads", "inter_op_threads", "graph_optimization",
                                               "memory_pattern", "cpu_arena", "memory_reuse", "fused_snake"]),
                              st.one_of(JUNK, st.sampled_from(["all", "basic", 1, 0, True, False, None])), max_size=4))
def test_session_settings_any_fields(fields):
    from snac_onnx import SessionSettings, SnacOnnx

    def make():
        codec = SnacOnnx(TINY_24, settings=SessionSettings(**fields))
        return codec.decode([np.zeros(n, np.int64) for n in (1, 2, 4)], noise=False)

    _outcome("SessionSettings(...) + decode", make)


@SETTINGS
@given(
    length=st.one_of(JUNK, st.integers(-5, 10000)), noise=st.one_of(JUNK, st.sampled_from(["official", "seeded"])),
    seed=st.one_of(JUNK, st.integers(0, 2**63)), frames=st.integers(1, 3), shaped_noise=st.booleans(),
    scale=st.sampled_from([0.0, 1.0, 1e3, 1e30, float("nan")]),
)
def test_decode_any_length_noise_and_seed(tiny24, length, noise, seed, frames, shaped_noise, scale):
    codes = [np.zeros(n, np.int64) for n in tiny24.config.code_lengths(frames)]
    if shaped_noise:
        noise = [np.full(shape, scale, np.float32) for shape in tiny24.noise_shapes(1, frames)]
    audio = _outcome("decode(length, noise, seed)", lambda: tiny24.decode(codes, length=length, noise=noise, seed=seed))
    if audio is not None:
        assert np.isfinite(audio).all()


@SETTINGS
@given(
    tokens=st.one_of(JUNK, hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(-2, 200000))),
    layout=st.one_of(JUNK, st.sampled_from(["interleaved", "codebook_major", "orpheus", "ORPHEUS", "x"])),
)
def test_decode_tokens_any_input(tiny24, tokens, layout):
    audio = _outcome("decode_tokens", lambda: tiny24.decode_tokens(tokens, layout, noise=False))
    if audio is not None:
        assert np.isfinite(audio).all()


@SETTINGS
@given(params=st.dictionaries(st.sampled_from(["mode", "chunk_frames", "left_context", "lookahead", "steps_per_call",
                                               "layout", "noise", "seed"]),
                               st.one_of(JUNK, st.integers(0, 8), st.sampled_from(["stateful", "window", "auto"])),
                               max_size=4))
def test_stream_any_parameters(tiny24, params):
    def run():
        stream = tiny24.stream(**params)
        return np.concatenate([stream.push_codes([np.zeros(n, np.int64) for n in (3, 6, 12)]), stream.flush()])

    audio = _outcome("stream(params)", run)
    if audio is not None:
        assert np.isfinite(audio).all()


@SETTINGS
@given(
    name=st.sampled_from(["orpheus", "vyvotts-qwen3", "vyvotts-lfm2", "vyvotts-llama3", "mini-omni"]),
    pushes=st.lists(st.one_of(JUNK, st.integers(0, 200000), st.text(max_size=20),
                              hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(-5, 200000))), max_size=6),
)
def test_preset_stream_any_pushes(tiny24, name, pushes):
    from snac_onnx import MiniOmniHeads

    stream = tiny24.preset_stream(name)
    heads = MiniOmniHeads()
    for item in pushes:
        out = _outcome("preset stream push", lambda: stream.push(item))  # noqa: B023
        if out is not None:
            assert out.dtype == np.float32 and np.isfinite(out).all()
        _outcome("mini-omni heads push", lambda: heads.push(item))  # noqa: B023
    _outcome("preset stream flush", stream.flush)


@pytest.fixture(scope="module")
def codes_bytes(tmp_path_factory):
    from snac_onnx import SnacOnnx, save_codes

    codec = SnacOnnx(TINY_24)
    path = tmp_path_factory.mktemp("codes") / "c.npz"
    audio = (0.1 * np.sin(np.arange(5000) / 4)).astype(np.float32)
    save_codes(path, codec.encode(audio), {"model": codec.name, "model_id": codec.model_id, "sample_rate": 24000,
                                           "length": 5000, "layout": "per-codebook"})
    return path.read_bytes()


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 4000)))
def test_codes_file_any_bytes(tmp_path_factory, codes_bytes, edits, cut):
    from snac_onnx import SnacOnnx, load_codes

    data = bytearray(codes_bytes if cut is None else codes_bytes[:cut])
    for where, value in edits:
        if data:
            data[where % len(data)] = value
    path = tmp_path_factory.mktemp("fuzzcodes") / "c.npz"
    path.write_bytes(bytes(data))

    def decode():
        loaded = load_codes(path)
        codec = SnacOnnx(TINY_24)
        loaded.check_model(codec.config)
        return codec.decode(loaded.codes, length=loaded.length, noise=False)

    audio = _outcome("codes file bytes", decode)
    if audio is not None:
        assert np.isfinite(audio).all()


@pytest.mark.parametrize("damage", ["encrypted", "unknown compression"])
def test_codes_file_with_unreadable_zip_entries_is_refused(tmp_path, codes_bytes, damage):
    """Found by the fuzz pass above: zipfile raises NotImplementedError (compression method) or RuntimeError
    (encrypted entry) for these; they must be an InvalidCodesError like any other damage."""
    import struct
    import zipfile

    from snac_onnx import InvalidCodesError, load_codes

    data = bytearray(codes_bytes)
    with zipfile.ZipFile(__import__("io").BytesIO(bytes(data))) as archive:
        local = next(i for i in archive.infolist() if i.filename == "codes_0.npy").header_offset
    central = next(
        at
        for at in range(len(data) - 46)
        if data[at : at + 4] == b"PK\x01\x02"
        and data[at + 46 : at + 46 + struct.unpack_from("<H", data, at + 28)[0]] == b"codes_0.npy"
    )
    # flags and compression method: local header at +6 / +8, central directory entry at +8 / +10
    for flags_at, method_at in ((local + 6, local + 8), (central + 8, central + 10)):
        if damage == "encrypted":
            struct.pack_into("<H", data, flags_at, struct.unpack_from("<H", data, flags_at)[0] | 1)
        else:
            struct.pack_into("<H", data, method_at, 99)
    path = tmp_path / "c.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidCodesError, match="damaged"):
        load_codes(path)


@pytest.fixture(scope="module")
def audio_bytes():
    import io

    import soundfile as sf

    out = {}
    for fmt, subtype in [("WAV", "PCM_16"), ("WAV", "PCM_U8"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")]:
        buffer = io.BytesIO()
        sf.write(buffer, (0.2 * np.sin(np.arange(4000) / 5)).astype(np.float32), 24000, format=fmt, subtype=subtype)
        out[f"{fmt}/{subtype}"] = buffer.getvalue()
    return out


@SETTINGS
@given(kind=st.sampled_from(["WAV/PCM_16", "WAV/PCM_U8", "FLAC/PCM_16", "OGG/VORBIS"]),
       edits=st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 255)), max_size=3),
       cut=st.one_of(st.none(), st.integers(0, 9000)), mix=st.booleans(), resample=st.booleans(),
       rate=st.sampled_from([24000, 16000]))
def test_audio_file_any_bytes(tmp_path_factory, audio_bytes, kind, edits, cut, mix, resample, rate):
    from snac_onnx import load_audio

    data = bytearray(audio_bytes[kind] if cut is None else audio_bytes[kind][:cut])
    for where, value in edits:
        if data:
            data[where % len(data)] = value
    path = tmp_path_factory.mktemp("fuzzaudio") / "a.bin"
    path.write_bytes(bytes(data))
    audio = _outcome("audio file bytes", lambda: load_audio(path, rate, mix=mix, resample=resample))
    if audio is not None:
        assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(["encode", "decode", "roundtrip", "info", "bogus"]),
    source=st.sampled_from(["ok.wav", "stereo.wav", "low.wav", "nothing.wav", "bad.npz", "codes.npz", "empty.wav",
                            "ok.wav/", "."]),
    output=st.sampled_from(["out.npz", "out.wav", "out.flac", "out.mp4", "sub/out.wav", "ok.wav/x.wav", "."]),
    flags=st.lists(st.sampled_from(["--mix", "--resample", "--json", "-q", "--noise on", "--seed 3", "--force",
                                    "--window-seconds 0.2", "--window-seconds -1", "--window-seconds nan",
                                    "--layout orpheus", "--threads 1", "--threads 99999", "--parallel 0",
                                    "--precision int8", "--precision fp64", "--output-rate source",
                                    "--output-rate 16000", "--output-rate 0", "--raw", "--seed -1",
                                    "--raw-input 24000", "--raw-input 0"]),
                   max_size=3),
    model=st.sampled_from([str(TINY_24), str(TINY_44), "no/such-model", "snac_24khz", str(TINY_24) + "/encoder.onnx"]),
)
def test_cli_never_crashes(tmp_path_factory, command, source, output, flags, model, capsys):
    """Every run exits 0, or 2 with one line on stderr and no output file (nor temporary file) left."""
    work = tmp_path_factory.mktemp("cli")
    home = os.getcwd()
    os.chdir(work)  # the generated commands name relative paths; the next tests on this worker need the old cwd
    try:
        _cli_case(work, command, source, output, flags, model, capsys)
    finally:
        os.chdir(home)


def _cli_case(work, command, source, output, flags, model, capsys):
    """One case of :func:`test_cli_never_crashes`, run in ``work``."""
    import soundfile as sf

    sf.write(work / "ok.wav", (0.1 * np.sin(np.arange(9000) / 4)).astype(np.float32), 24000)
    sf.write(work / "stereo.wav", np.zeros((3000, 2), np.float32), 24000)
    sf.write(work / "low.wav", np.zeros(3000, np.float32), 16000)
    sf.write(work / "empty.wav", np.zeros(0, np.float32), 24000)
    (work / "bad.npz").write_bytes(b"not a zip")
    cli_main(["encode", "ok.wav", "-o", "codes.npz", "-m", str(TINY_24), "-q"])
    capsys.readouterr()
    before = set(work.rglob("*"))
    args = [command] + ([source] if command != "info" else []) + ["-o", output] * (command != "info")
    args += [part for flag in flags for part in flag.split()] + ["-m", model, "--offline"]
    try:
        code = cli_main(args)
    except SystemExit as exc:
        code = exc.code
    err = without_random_weights_warning(capsys.readouterr().err.strip())
    assert code in (0, 2), (args, code, err)
    CASES[f"cli: exit {code}"] += 1
    if code != 0:
        assert err.count("\n") == 0 and "Traceback" not in err, err
        assert set(work.rglob("*")) == before, "a refused command must leave nothing behind"
    assert [p.name for p in work.rglob(".*")] == []


def teardown_module(module):
    total = sum(CASES.values())
    print(f"\nreliability cases: {total} " + json.dumps(dict(sorted(CASES.items()))))
    if os.environ.get("REPORT_CASES"):
        with open(os.environ["REPORT_CASES"], "w") as handle:
            json.dump({"total": total, **CASES}, handle, indent=1)
