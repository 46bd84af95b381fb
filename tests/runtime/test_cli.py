"""The snac-onnx command line on wav files (no torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from snac_onnx.cli import main  # noqa: E402
from snac_onnx.files.codes import load_codes  # noqa: E402
from snac_onnx.layouts import tokens_to_codes  # noqa: E402
from tests.support import HANG_GUARD_S, TINY_24, TINY_44, pcm, without_random_weights_warning  # noqa: E402


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, pcm(24000 * 5 + 123, seed=4), 24000, subtype="FLOAT")
    return path


def test_encode_decode_round_trip_matches_the_api(tmp_path, wav, tiny24, capsys):
    codes_path = tmp_path / "codes.npz"
    assert main(["encode", str(wav), "-o", str(codes_path), "-m", str(TINY_24), "--json", "--layout", "orpheus",
                 "--window-seconds", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    audio = sf.read(wav, dtype="float32")[0]
    assert summary["length"] == audio.size and summary["model"] == "tiny_24khz"
    data = load_codes(codes_path)
    expected = tiny24.encode(audio)
    for a, b in zip(data.codes, expected):
        np.testing.assert_array_equal(a, b)  # windowed (1 s) encode equals one-shot
    for a, b in zip(tokens_to_codes(data.tokens, (4, 2, 1), 4096, "orpheus"), expected):
        np.testing.assert_array_equal(a, b)
    out = tmp_path / "out.wav"
    assert main(["decode", str(codes_path), "-o", str(out), "-m", str(TINY_24), "-q"]) == 0
    decoded, rate = sf.read(out, dtype="float32")
    assert rate == 24000 and decoded.size == audio.size
    reference = tiny24.decode(expected, length=audio.size, noise=False)
    assert np.abs(decoded - reference).max() <= 2 / 32768 + 1e-4  # 16-bit wav quantisation


def test_decode_uses_the_model_named_in_the_codes_file(tmp_path, wav, monkeypatch):
    codes_path = tmp_path / "codes.npz"
    main(["encode", str(wav), "-o", str(codes_path), "-m", str(TINY_24), "-q"])
    monkeypatch.chdir(TINY_24.parent)  # meta names "tiny_24khz", which is a folder here
    assert main(["decode", str(codes_path), "-o", str(tmp_path / "o.wav")]) == 0


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["encode"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "make,args,message",
    [
        (lambda p: sf.write(p, np.zeros((1000, 2), np.float32), 24000), [], "2 channels; SNAC is mono: average them with --mix"),
        (lambda p: sf.write(p, np.zeros(1000, np.float32), 16000), [], "16000 Hz but the model expects 24000 Hz; convert it (soxr) with --resample"),
        (lambda p: p.write_bytes(b"RIFF not a wav"), [], "cannot read"),
        (lambda p: None, [], "does not exist"),
    ],
)
def test_refusals_exit_2_with_one_line(tmp_path, capsys, make, args, message):
    src = tmp_path / "in.wav"
    make(src)
    out = tmp_path / "codes.npz"
    assert main(["encode", str(src), "-o", str(out), "-m", str(TINY_24), *args]) == 2
    err = without_random_weights_warning(capsys.readouterr().err.strip())
    assert message in err and err.count("\n") == 0
    assert not out.exists()


def test_mix_and_resample(tmp_path):
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([pcm(20000), pcm(20000, seed=1)], axis=1), 24000)
    assert main(["roundtrip", str(stereo), "-o", str(tmp_path / "a.wav"), "-m", str(TINY_24), "--mix", "-q"]) == 0
    low = tmp_path / "low.flac"
    sf.write(low, pcm(16000), 16000)
    assert main(["encode", str(low), "-o", str(tmp_path / "c.npz"), "-m", str(TINY_24), "--resample", "-q"]) == 0
    assert load_codes(tmp_path / "c.npz").meta["length"] == 24000


def test_wrong_model_for_codes_is_refused_and_leaves_nothing(tmp_path, wav, capsys):
    codes_path = tmp_path / "codes.npz"
    main(["encode", str(wav), "-o", str(codes_path), "-m", str(TINY_24), "-q"])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["decode", str(codes_path), "-o", str(out_dir / "o.wav"), "-m", str(TINY_44)]) == 2
    assert "pass --model with the right one, or --force" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []


def test_info_json(capsys):
    assert main(["info", "-m", str(TINY_44), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "CPUExecutionProvider" in info["available_providers"]
    assert info["model"]["providers_in_use"] == {"decoder": ["CPUExecutionProvider"]}
    assert info["model"]["manifest"]["name"] == "tiny_44khz"
    assert info["model"]["fused_snake"] is (info["fused_snake_kernel"] is not None)


def test_console_entry_point_runs_as_module(tmp_path, wav):
    result = subprocess.run(
        [sys.executable, "-m", "snac_onnx", "roundtrip", str(wav), "-o", str(tmp_path / "o.wav"), "-m", str(TINY_24), "--json"],
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "tiny_24khz"
