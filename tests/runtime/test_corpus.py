"""Corpus tokenization on a local Ray instance (no torch): codes equal SnacOnnx.encode file by file,
broken files become error rows, a rerun does no work."""

from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
sf = pytest.importorskip("soundfile")

from snac_onnx import SnacOnnx  # noqa: E402
from snac_onnx.cli import main as cli_main  # noqa: E402
from snac_onnx.corpus import list_inputs, tokenize_corpus  # noqa: E402
from snac_onnx.files.audio import AudioReader  # noqa: E402
from tests.support import TINY_24, TINY_44  # noqa: E402

pytestmark = pytest.mark.slow  # starts a local Ray


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    good = []
    for i in range(52):
        rate = [24000, 24000, 16000, 48000][i % 4]
        suffix = [".wav", ".flac", ".ogg", ".wav"][i % 4 if i % 4 != 3 else 0]
        seconds = float(rng.uniform(0.05, 4.0)) if i % 10 else 7.5  # a few longer than the 2 s window
        n = max(1, int(seconds * rate))
        audio = (0.2 * np.sin(np.arange(n) * rng.uniform(0.01, 0.3)) + 0.05 * rng.standard_normal(n)).astype(np.float32)
        if i == 7:
            audio = np.stack([audio, -audio], axis=1)  # stereo, mixed with --mix
        folder = root / f"spk{i % 5}"
        folder.mkdir(exist_ok=True)
        path = folder / f"utt{i:03d}{suffix}"
        sf.write(path, audio, rate)
        good.append(str(path.resolve()))
    broken = []
    for name, content in [("garbage.wav", b"not audio at all"), ("empty.flac", b""), ("text.ogg", b"OggS?nope"),
                          ("truncated.wav", None)]:
        path = root / "bad" / name
        path.parent.mkdir(exist_ok=True)
        if content is None:
            sf.write(path, np.zeros(1000, np.float32), 24000)
            path.write_bytes(path.read_bytes()[:30])
        else:
            path.write_bytes(content)
        broken.append(str(path.resolve()))
    return root, good, broken


@pytest.fixture(scope="module")
def ray_local(one_ray_at_a_time):
    """The local Ray that tokenize_corpus starts, shut down after the module (with the lock still held)."""
    yield
    ray.shutdown()


def test_tokenize_corpus_then_rerun_does_nothing(corpus, ray_local, tmp_path_factory):
    root, good, broken = corpus
    out = tmp_path_factory.mktemp("out")
    summary = tokenize_corpus(root, out, model=str(TINY_24), actors=2, threads_per_actor=1, resample=True, mix=True,
                              window_seconds=2.0, layout="interleaved")
    assert (summary.found, summary.processed, summary.skipped) == (56, 56, 0)
    assert summary.errors == len(broken)
    table = pq.read_table(out)
    rows = {r["path"]: r for r in table.to_pylist()}
    assert set(rows) == set(good) | set(broken)
    for path in broken:
        assert rows[path]["error"] and "Error" in rows[path]["error"]
        assert rows[path]["codes_0"] == []
    codec = SnacOnnx(TINY_24)
    model_id = SnacOnnx(TINY_24).model_id
    for path in good:
        row = rows[path]
        assert row["error"] is None and row["model"] == "tiny_24khz" and row["model_id"] == model_id
        reader = AudioReader(path, 24000, mix=True, resample=True)
        assert row["sample_rate"] == 24000 and row["source_sample_rate"] == reader.file_rate
        assert row["duration"] == pytest.approx(reader.seconds)
        expected = codec.encode(reader.read(0, reader.num_samples))
        for i, codes in enumerate(expected):
            assert row[f"codes_{i}"] == codes.tolist(), (path, i)
        assert len(row["tokens"]) == 7 * len(row["codes_0"])

    files_before = sorted(p.name for p in out.iterdir())
    again = tokenize_corpus(root, out, model=str(TINY_24), actors=2, resample=True, mix=True, layout="interleaved")
    assert (again.processed, again.skipped) == (0, 56)
    assert sorted(p.name for p in out.iterdir()) == files_before


def test_manifest_and_glob_inputs(corpus, tmp_path):
    root, good, broken = corpus
    manifest = tmp_path / "files.jsonl"
    manifest.write_text("".join(json.dumps({"path": p}) + "\n" for p in good[:5]))
    assert list_inputs(manifest) == sorted(good[:5])
    assert list_inputs(str(root / "spk0" / "*.wav")) == sorted(p for p in good if "/spk0/" in p and p.endswith(".wav"))
    with pytest.raises(FileNotFoundError, match="not a folder, a glob"):
        list_inputs(tmp_path / "nothing_here")


def test_cli_tokenize_json(corpus, ray_local, tmp_path, capsys):
    root, good, broken = corpus
    code = cli_main(["tokenize", str(root / "spk1"), "-o", str(tmp_path / "o"), "-m", str(TINY_24), "--resample",
                     "--actors", "1", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["processed"] == sum("/spk1/" in p for p in good) and summary["errors"] == 0


def test_reruns_keep_one_row_per_file_one_schema_and_refuse_other_settings(ray_local, tmp_path):
    from snac_onnx import InvalidArgumentError

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"a{i}.wav", np.full(3000 + 100 * i, 0.1, np.float32), 24000)
    broken = src / "b.wav"
    broken.write_bytes(b"not audio")
    out = tmp_path / "out"
    first = tokenize_corpus(src, out, model=str(TINY_24), actors=1)
    assert (first.processed, first.errors) == (4, 1)
    sf.write(broken, np.full(5000, 0.1, np.float32), 24000)  # the file is fixed, then retried
    again = tokenize_corpus(src, out, model=str(TINY_24), actors=1, retry_errors=True)
    assert (again.processed, again.errors, again.skipped) == (1, 0, 3)
    table = pq.read_table(out)  # the whole folder, as pandas/pyarrow users read it
    rows = table.to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(str(p.resolve()) for p in src.iterdir())  # one row per file
    assert all(r["error"] is None and r["codes_0"] for r in rows)
    assert {"layout", "tokens", "model_id"} <= set(table.column_names)
    for options, differs in [({"layout": "orpheus"}, "layout: this run 'orpheus', the folder None"),
                             ({"model": str(TINY_44)}, "model")]:
        with pytest.raises(InvalidArgumentError, match=differs):
            tokenize_corpus(src, out, **{"model": str(TINY_24), "actors": 1, **options})
    # Turning --resample on is accepted (no row already there changes: every file is at the model's rate); the
    # folder records it, and turning it off again is refused.
    widened = tokenize_corpus(src, out, model=str(TINY_24), actors=1, resample=True)
    assert (widened.processed, widened.options_changed) == (0, ("resample",))
    assert pq.read_table(out).to_pylist() == rows
    with pytest.raises(InvalidArgumentError, match="resample: this run False, the folder True"):
        tokenize_corpus(src, out, model=str(TINY_24), actors=1)


def test_the_summary_names_the_failed_files(ray_local, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "ok.wav", np.full(3000, 0.1, np.float32), 24000)
    sf.write(src / "stereo.wav", np.full((3000, 2), 0.1, np.float32), 24000)
    sf.write(src / "slow.wav", np.full(3000, 0.1, np.float32), 16000)
    summary = tokenize_corpus(src, tmp_path / "out", model=str(TINY_24), actors=1)
    assert summary.errors == 2 and [p.rsplit("/", 1)[1] for p, _ in summary.failed] == ["slow.wav", "stereo.wav"]
    assert "with --resample" in summary.failed[0][1] and "with --mix" in summary.failed[1][1]
    fixed = tokenize_corpus(src, tmp_path / "out", model=str(TINY_24), actors=1, retry_errors=True, mix=True,
                            resample=True)
    assert (fixed.processed, fixed.errors, fixed.failed, set(fixed.options_changed)) == (2, 0, (), {"mix", "resample"})
    job = json.loads((tmp_path / "out" / "_snac_onnx_job.json").read_text())
    assert (job["mix"], job["resample"]) == (True, True)
    assert [(h["mix"], h["resample"]) for h in job["history"]] == [(False, False)]
