"""Property-based robustness of every public entry point (no torch).

Each generated input either works (finite audio, valid codes) or raises a
SnacOnnxError whose message names the problem. Anything else is a failure:
a crash inside onnxruntime, a NaN, a hang (hypothesis deadline), or a foreign
exception type. The number of cases run is printed at the end of the session
(``-s`` shows it) and written to ``.hypothesis-cases.json`` when REPORT_CASES is set.
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snac_onnx import SnacOnnxError
from snac_onnx.cli import main as cli_main
from snac_onnx.layouts import codes_to_tokens, tokens_to_codes
from tests.support import TINY_24, TINY_44

CASES: collections.Counter = collections.Counter()
SETTINGS = settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])

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


@settings(max_examples=40, deadline=20000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(["encode", "decode", "roundtrip", "info", "bogus"]),
    source=st.sampled_from(["ok.wav", "stereo.wav", "low.wav", "nothing.wav", "bad.npz", "codes.npz", "empty.wav"]),
    flags=st.lists(st.sampled_from(["--mix", "--resample", "--json", "-q", "--noise on", "--seed 3", "--force",
                                    "--window-seconds 0.2", "--window-seconds -1", "--layout orpheus", "--threads 1"]),
                   max_size=3),
    model=st.sampled_from([str(TINY_24), str(TINY_44), "no/such-model"]),
)
def test_cli_never_crashes(tmp_path_factory, command, source, flags, model, capsys):
    import soundfile as sf

    work = tmp_path_factory.mktemp("cli")
    os.chdir(work)
    sf.write(work / "ok.wav", (0.1 * np.sin(np.arange(9000) / 4)).astype(np.float32), 24000)
    sf.write(work / "stereo.wav", np.zeros((3000, 2), np.float32), 24000)
    sf.write(work / "low.wav", np.zeros(3000, np.float32), 16000)
    sf.write(work / "empty.wav", np.zeros(0, np.float32), 24000)
    (work / "bad.npz").write_bytes(b"not a zip")
    cli_main(["encode", "ok.wav", "-o", "codes.npz", "-m", str(TINY_24), "-q"])
    out = "out.npz" if command == "encode" else "out.wav"
    args = [command] + ([source] if command != "info" else []) + ["-o", out] * (command != "info")
    args += [part for flag in flags for part in flag.split()] + ["-m", model, "--offline"]
    try:
        code = cli_main(args)
    except SystemExit as exc:
        code = exc.code
    try:
        code = cli_main(args)
    except SystemExit as exc:
        code = exc.code
    assert code in (0, 1, 2)
    CASES[f"cli: exit {code}"] += 1
    # failures leave no partial outputs behind
    leftovers = [p.name for p in work.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    if code != 0:
        assert not (work / out).exists(), "a failed command must not leave its output"


def teardown_module(module):
    total = sum(CASES.values())
    print(f"\nreliability cases: {total} " + json.dumps(dict(sorted(CASES.items()))))
    if os.environ.get("REPORT_CASES"):
        with open(os.environ["REPORT_CASES"], "w") as handle:
            json.dump({"total": total, **CASES}, handle, indent=1)
