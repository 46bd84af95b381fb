"""What a new user's first day ran into (issue "a new user never falls over"), one test per finding."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from snac_onnx import (  # noqa: E402
    InvalidArgumentError,
    InvalidAudioError,
    InvalidCodesError,
    ModelFormatError,
    SnacOnnx,
    load_audio,
    load_codes,
    save_codes,
)
from snac_onnx.cli import main  # noqa: E402
from tests.support import HANG_GUARD_S, TINY_24, TINY_44, pcm, without_random_weights_warning  # noqa: E402


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, pcm(24000 + 123, seed=4), 24000, subtype="FLOAT")
    return path


@pytest.fixture
def codes_file(tmp_path, wav):
    path = tmp_path / "speech.npz"
    assert main(["encode", str(wav), "-o", str(path), "-m", str(TINY_24), "-q"]) == 0
    return path


def _refused(capsys, argv, message, leaves=()):
    """The CLI refuses argv: exit 2, one line on stderr holding ``message``, none of ``leaves`` written."""
    code = main(argv)
    err = without_random_weights_warning(capsys.readouterr().err.strip())
    assert code == 2, err
    assert message in err and err.count("\n") == 0, err
    for path in leaves:
        assert not path.exists(), path


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- 3. a tampered manifest is not believed
def _edit_manifest(folder, **config):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["config"].update(config)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"codebook_size": 2048}, "codebook_size: graph 4096, manifest 2048"),
        ({"sampling_rate": 16000}, "sampling_rate: graph 24000, manifest 16000"),
        # same product, so the hop length and every length check agree: only the graph's own config tells
        ({"encoder_rates": [4, 2, 8, 8], "decoder_rates": [8, 8, 2, 4]}, "encoder_rates"),
    ],
)
def test_an_edited_manifest_is_refused_when_the_session_is_built(tiny24_copy, edit, message):
    _edit_manifest(tiny24_copy, **edit)
    codec = SnacOnnx(tiny24_copy)
    with pytest.raises(ModelFormatError, match=message):
        codec.load("encoder")
    with pytest.raises(ModelFormatError, match="disagrees with its manifest"):
        codec.decode([np.zeros(n, np.int64) for n in (1, 2, 4)])


def test_edited_strides_are_refused_from_the_graphs_shapes_alone(tiny24_copy, monkeypatch):
    """Exports without a stored config (older ones) are still checked against their time axes."""
    from snac_onnx.model import contract

    monkeypatch.setattr("snac_onnx.model.contract.CONFIG_METADATA_KEY", "absent")
    assert contract.CONFIG_METADATA_KEY == "absent"  # the key check_graph reads
    _edit_manifest(tiny24_copy, vq_strides=[8, 2, 1], padding_unit=4096)  # consistent with each other
    with pytest.raises(ModelFormatError, match="disagrees with its manifest: its audio input comes in units of 2048"):
        SnacOnnx(tiny24_copy).load("encoder")
    with pytest.raises(ModelFormatError, match="disagrees with its manifest: codes_1 has 2 steps per 1 of codes_0"):
        SnacOnnx(tiny24_copy).load("decoder")


def test_bad_config_values_are_refused_at_load(tiny24_copy):
    for value in (0, -24000):
        _edit_manifest(tiny24_copy, sampling_rate=value)
        with pytest.raises(ModelFormatError, match="sampling_rate"):
            SnacOnnx(tiny24_copy)


# ---------------------------------------------------------------- 6. identity from what decides the audio
def test_model_id_ignores_the_export_time_and_follows_the_graphs(tiny24_copy):
    original = SnacOnnx(TINY_24).model_id
    path = tiny24_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["created"] = "2000-01-01T00:00:00+00:00"
    manifest["export_seconds"] = 1.0
    path.write_text(json.dumps(manifest))
    assert SnacOnnx(tiny24_copy).model_id == original
    manifest["files"]["decoder"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    assert SnacOnnx(tiny24_copy).model_id != original


def test_codes_still_decode_after_the_model_folder_is_rewritten(tmp_path, codes_file, tiny24_copy, capsys):
    path = tiny24_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["created"] = "2030-01-01T00:00:00+00:00"  # a re-export: same graphs, another manifest file
    path.write_text(json.dumps(manifest, indent=1))
    assert main(["decode", str(codes_file), "-o", str(tmp_path / "o.wav"), "-m", str(tiny24_copy), "-q"]) == 0


# ---------------------------------------------------------------- 4. codes files are checked
def _rewrite(path, **meta):
    data = load_codes(path)
    arrays = {f"codes_{i}": c for i, c in enumerate(data.codes)}
    merged = {**data.meta, **meta}
    with open(path, "wb") as handle:
        np.savez(handle, **arrays, meta=np.array(json.dumps(merged)))


@pytest.mark.parametrize(
    "meta,message",
    [
        ({"length": 0}, "'length' is 0; it must be an int >= 1"),
        ({"length": -5}, "'length' is -5"),
        ({"length": 10**9}, "does not fit its codes"),
        ({"length": 1.5}, "'length' is 1.5"),
        ({"sample_rate": True}, "'sample_rate' is True"),
        ({"model_id": "abc"}, "64 hex digits"),
        ({"num_codebooks": 4}, "lacks ['codes_3']"),
        ({"version": 9}, "of a version this snac-onnx reads"),
    ],
)
def test_a_codes_file_with_bad_metadata_is_refused(tmp_path, codes_file, capsys, meta, message):
    _rewrite(codes_file, **meta)
    out = tmp_path / "out.wav"
    _refused(capsys, ["decode", str(codes_file), "-o", str(out), "-m", str(TINY_24)], message, [out])
    assert _leftovers(tmp_path) == []


def test_empty_codes_are_refused(tmp_path, codes_file, capsys):
    meta = load_codes(codes_file).meta
    with open(codes_file, "wb") as handle:
        np.savez(handle, codes_0=np.zeros(0, np.int64), codes_1=np.zeros(0, np.int64),
                 codes_2=np.zeros(0, np.int64), meta=np.array(json.dumps(meta)))
    with pytest.raises(InvalidCodesError, match="non-empty 1-D integer array"):
        load_codes(codes_file)


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "it is a WAV file"),
        (b"fLaC....", "it is a FLAC file"),
        (b"", "not a snac-onnx codes file"),
        (b"PK\x03\x04garbage", "is damaged"),
    ],
)
def test_a_file_that_is_not_a_codes_file_says_so(tmp_path, wav, capsys, content, message):
    path = tmp_path / "not_codes.npz"
    path.write_bytes(wav.read_bytes() if content is None else content)
    _refused(capsys, ["decode", str(path), "-o", str(tmp_path / "o.wav"), "-m", str(TINY_24)], message)
    assert "allow_pickle" not in message


def test_an_npz_that_is_not_ours(tmp_path, capsys):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(InvalidCodesError, match="not a snac-onnx codes file"):
        load_codes(path)


def test_codes_file_records_the_source_and_decodes_back_to_its_rate(tmp_path, capsys):
    low = tmp_path / "low.flac"
    sf.write(low, pcm(16000 * 2 + 7), 16000)
    codes = tmp_path / "low.npz"
    assert main(["encode", str(low), "-o", str(codes), "-m", str(TINY_24), "--resample", "-q"]) == 0
    meta = load_codes(codes).meta
    assert (meta["source_sample_rate"], meta["source_length"]) == (16000, 32007)
    assert abs(meta["length"] - 32007 * 3 / 2) <= 1
    out = tmp_path / "back.wav"
    assert main(["decode", str(codes), "-o", str(out), "--output-rate", "source", "-q", "-m", str(TINY_24)]) == 0
    info = sf.info(out)
    assert (info.samplerate, info.frames) == (16000, 32007)


def test_save_and_load_codes_are_public_and_checked(tmp_path):
    codes = [np.arange(2), np.arange(4), np.arange(8)]
    meta = {"model": "m", "model_id": "a" * 64, "sample_rate": 24000, "length": 4000, "layout": "per-codebook"}
    save_codes(tmp_path / "c.npz", codes, meta)
    loaded = load_codes(tmp_path / "c.npz")
    assert loaded.length == 4000 and loaded.model_id == "a" * 64
    loaded.check_model(SnacOnnx(TINY_24).config)
    with pytest.raises(InvalidCodesError, match="44100 Hz"):
        loaded.check_model(SnacOnnx(TINY_44).config)
    with pytest.raises(InvalidArgumentError, match="'length' is 0"):
        save_codes(tmp_path / "d.npz", codes, {**meta, "length": 0})
    assert not (tmp_path / "d.npz").exists()


# ---------------------------------------------------------------- 7. outputs: umask, folders, leftovers
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(tmp_path, wav, mask):
    old = os.umask(mask)
    try:
        assert main(["encode", str(wav), "-o", str(tmp_path / "c.npz"), "-m", str(TINY_24), "-q"]) == 0
        assert main(["decode", str(tmp_path / "c.npz"), "-o", str(tmp_path / "o.wav"), "-q"]) == 0
    finally:
        os.umask(old)
    for name in ("c.npz", "o.wav"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask


def test_an_output_that_is_a_folder_is_refused_and_leaves_nothing(tmp_path, wav, capsys):
    folder = tmp_path / "out.npz"
    folder.mkdir()
    _refused(capsys, ["encode", str(wav), "-o", str(folder), "-m", str(TINY_24)], "is a folder")
    assert list(folder.iterdir()) == [] and _leftovers(tmp_path) == []


def test_an_unwritable_output_names_the_output_not_a_temp_file(tmp_path, wav, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["encode", str(wav), "-o", str(blocker / "c.npz"), "-m", str(TINY_24)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write output" in err and ".partial" not in err and ".c.npz" not in err


def test_encode_refuses_an_audio_name_for_the_codes(tmp_path, wav, capsys):
    _refused(capsys, ["encode", str(wav), "-o", str(tmp_path / "x.wav"), "-m", str(TINY_24)], "is an .npz",
             [tmp_path / "x.wav"])


def test_decode_refuses_an_unknown_audio_suffix_before_decoding(tmp_path, codes_file, capsys):
    _refused(capsys, ["decode", str(codes_file), "-o", str(tmp_path / "x.mp4")], "use a name ending in")


# ---------------------------------------------------------------- clear errors
def test_missing_input_says_so(tmp_path, capsys):
    _refused(capsys, ["encode", str(tmp_path / "nope.wav"), "-o", str(tmp_path / "c.npz"), "-m", str(TINY_24)],
             "does not exist")


@pytest.mark.parametrize(
    "option,value", [("--window-seconds", "nan"), ("--window-seconds", "-1"), ("--threads", "-2"),
                     ("--parallel", "0"), ("--precision", "fp64"), ("--seed", "x")]
)
def test_bad_options_are_one_line_usage_errors(tmp_path, wav, capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        main(["roundtrip", str(wav), "-o", str(tmp_path / "o.wav"), "-m", str(TINY_24), option, value])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and option in err and err.count("\n") == 0, err
    assert not (tmp_path / "o.wav").exists()


def test_huge_noise_is_blamed_not_the_model():
    codec = SnacOnnx(TINY_24)
    codes = codec.encode(pcm(4096))
    noise = [np.full(shape, 1e30, np.float32) for shape in codec.noise_shapes(1, codes[0].shape[0])]
    with pytest.raises(InvalidArgumentError, match="noise given peaks at 1e"):
        codec.decode(codes, noise=noise)


def test_truncated_wav_is_refused(tmp_path, capsys):
    path = tmp_path / "cut.wav"
    sf.write(path, pcm(24000), 24000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 3200])  # header says 1 s, 67 ms of it is there
    with pytest.raises(InvalidAudioError, match="cut short: its header declares 48000 bytes"):
        load_audio(path, 24000)
    _refused(capsys, ["encode", str(path), "-o", str(tmp_path / "c.npz"), "-m", str(TINY_24)], "cut short")


# ---------------------------------------------------------------- the first day
def test_load_audio_does_what_the_cli_does(tmp_path):
    stereo = tmp_path / "stereo.flac"
    left, right = pcm(16000), pcm(16000, seed=1)
    sf.write(stereo, np.stack([left, right], axis=1), 16000)
    audio = load_audio(stereo, 24000, mix=True, resample=True)
    assert audio.dtype == np.float32 and audio.shape == (24000,)
    with pytest.raises(InvalidAudioError, match="2 channels"):
        load_audio(stereo, 24000)


def test_mp3_is_read_when_libsndfile_can(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3")
    path = tmp_path / "a.mp3"
    sf.write(path, pcm(24000), 24000, format="MP3")
    assert load_audio(path, 24000).size > 20000
    from snac_onnx.corpus import list_inputs

    assert list_inputs(tmp_path) == [str(path.resolve())]
    assert list_inputs(str(tmp_path / "*")) == [str(path.resolve())]


def _cli(*args, stdin=b""):
    return subprocess.run([sys.executable, "-m", "snac_onnx", *args], input=stdin, capture_output=True, timeout=HANG_GUARD_S)


def test_pipes_decode_to_raw_pcm_on_stdout(codes_file):
    result = _cli("decode", "-", "-o", "-", "--raw", "-q", "-m", str(TINY_24), stdin=codes_file.read_bytes())
    assert result.returncode == 0, result.stderr
    length = load_codes(codes_file).length
    assert len(result.stdout) == 2 * length
    assert b"->" in result.stderr  # the summary goes to stderr when stdout carries audio


def test_pipes_roundtrip_wav_in_and_out(wav):
    result = _cli("roundtrip", "-", "-o", "-", "-q", "-m", str(TINY_24), stdin=wav.read_bytes())
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(io.BytesIO(result.stdout))
    assert rate == 24000 and audio.size == sf.info(wav).frames


def test_help_shows_defaults_choices_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = capsys.readouterr().out
    assert "(default: fp32)" in text and "{fp32,int8,fp32-cl,fp16}" in text and "examples:" in text
    assert text.count("snac-onnx encode ") >= 2
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    text = capsys.readouterr().out
    assert "--parallel" not in text and "--threads" not in text
    with pytest.raises(SystemExit):
        main(["decode", "--help"])
    assert "default of the API's decode()" in " ".join(capsys.readouterr().out.split())


def test_progress_is_labelled_in_real_seconds_and_reaches_100(monkeypatch):
    pytest.importorskip("tqdm")
    from snac_onnx import cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with cli._progress("decode", 180 * 24000 + 1234, 24000, quiet=False) as bar:
        for done in range(0, 200 * 24000, 4 * 24000 + 77):  # chunks that overshoot the real length
            bar.to(done)
        assert bar.bar.desc.startswith("decode")
    assert bar.bar.n == bar.bar.total == round((180 * 24000 + 1234) / 24000, 2)


def test_pipes_raw_pcm_in_and_out():
    """arecord -f S16_LE -r 16000 | snac-onnx roundtrip - --raw-input 16000 --resample -o - --raw --output-rate source"""
    pcm16 = (pcm(16000 + 333) * 32767).astype("<i2")
    result = _cli("roundtrip", "-", "--raw-input", "16000", "--resample", "-o", "-", "--raw", "--output-rate", "source",
                  "-q", "-m", str(TINY_24), stdin=pcm16.tobytes())
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == len(pcm16.tobytes())  # same rate, same length back


def test_raw_input_rate_is_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["encode", "-", "--raw-input", "0", "-o", str(tmp_path / "c.npz")])
    assert exc.value.code == 2 and "--raw-input" in capsys.readouterr().err
