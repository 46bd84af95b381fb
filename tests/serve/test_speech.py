"""``POST /v1/audio/speech`` in front of an LLM server, as users run it: a real server process, the official
``openai`` client (and raw httpx for the SSE form and the faults), and a fake upstream that speaks the completions
streaming protocol as llama.cpp and vLLM do (tests/serve/fake_llm.py). Every audio check compares with the offline
decode (noise off) of the tokens the upstream sent: exact, nothing missing at either end (no torch)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import zlib

import numpy as np
import pytest

pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
import httpx  # noqa: E402  # after the skips: the [serve] and [test] extras

from snac_onnx import PRESETS, SnacOnnx  # noqa: E402
from snac_onnx.files.audio import pcm16  # noqa: E402
from snac_onnx.layouts import codes_to_tokens  # noqa: E402
from snac_onnx.serve.sentences import split_text  # noqa: E402
from tests.serve.fake_llm import FakeLLM, orpheus_steps  # noqa: E402
from tests.serve.support import free_port, metric, start_server  # noqa: E402
from tests.support import HANG_GUARD_S, REPO, TINY_24  # noqa: E402

UPSTREAM_KEY = "sekrit-upstream-key-1234"
JOIN_MS = 100


@pytest.fixture(scope="module")
def codec():
    return SnacOnnx(TINY_24)


def codes_for(prompt: str, codec) -> list[np.ndarray]:
    """The codes the fake model 'generates' for a prompt: a pure function of the prompt."""
    rng = np.random.default_rng(zlib.crc32(prompt.encode()))
    frames = 5 + zlib.crc32(prompt.encode()) % 6
    return [rng.integers(0, 4096, n) for n in codec.config.code_lengths(frames)]


class Scripts:
    """The fake upstream's behaviour, switched per test."""

    def __init__(self, codec) -> None:
        self.codec = codec
        self.mode = "speak"
        self.preset = "orpheus"
        self.extra: list = []
        self.release = threading.Event()

    def __call__(self, body: dict) -> list:
        preset = PRESETS[self.preset]
        ids = codes_to_tokens(codes_for(body["prompt"], self.codec), (4, 2, 1), preset.layout).tolist()
        if preset.modulo:  # an id in another slot's range, and one above the audio range: Maya1's card takes both
            ids[1] -= 4096
            ids.insert(9, preset.audio_range[1] + 3)
        if self.mode == "speak":
            return [*self.extra, *orpheus_steps(ids)]
        if self.mode == "second_fails":  # a later piece fails after some audio
            if "Second" in body["prompt"]:
                return [("tokens", ids[:14]), ("error", "the model crashed on the second")]
            return orpheus_steps(ids)
        if self.mode == "second_silent":  # a later piece has no audio at all
            return [("text", "I cannot say that.")] if "Second" in body["prompt"] else orpheus_steps(ids)
        if self.mode == "length":
            return [("tokens", ids[:21]), ("finish", "length")]
        if self.mode == "malformed":
            return [("tokens", ids[:21]), ("raw", '{"choices": {"text": 3}}')]
        if self.mode == "huge_tag":
            return [("text", "<custom_token_" + "7" * 5000 + ">"), *orpheus_steps(ids)]
        if self.mode == "paced":  # three frames, then wait for the test
            return [("tokens", ids[:21]), ("wait", self.release), ("tokens", ids[21:])]
        if self.mode == "error_mid":
            return [("tokens", ids[:21]), ("sleep", 0.3), ("error", "the model crashed")]
        if self.mode == "stall":
            return [("tokens", ids[:21]), ("hang",)]
        if self.mode == "hang":
            return [("hang",)]
        if self.mode == "refuse":
            return [("status", 500, {"error": {"code": 500, "message": "out of memory", "type": "server_error"}})]
        if self.mode == "loading":
            return [("status", 503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
                     "7")]
        raise AssertionError(self.mode)


@pytest.fixture(scope="module")
def llm(codec):
    scripts = Scripts(codec)
    fake = FakeLLM(scripts).start()
    fake.scripts = scripts
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def server(llm, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("speech") / "server.log"
    proc = start_server(
        TINY_24, port, "--llm", llm.url, "--preset", "orpheus", "--llm-timeout", "3", "--max-streams", "3",
        "--llm-api-key", UPSTREAM_KEY, "--join-ms", str(JOIN_MS), "--piece-chars", "40", "--log-level", "info",
        log=log,
    )
    yield {"port": port, "log": log, "url": f"http://127.0.0.1:{port}/v1"}
    proc.terminate()
    proc.wait(timeout=HANG_GUARD_S)


@pytest.fixture(autouse=True)
def _reset(llm):
    llm.scripts.mode, llm.scripts.preset, llm.scripts.extra = "speak", "orpheus", []
    llm.scripts.release.clear()
    llm.flavor = "llama.cpp"


def _expected(text: str, codec, voice: str = "tara", preset: str = "orpheus", max_chars: int = 40) -> np.ndarray:
    """The audio a request for ``text`` must give: each piece's offline decode, joined by the silence."""
    p = PRESETS[preset]
    silence = np.zeros(round(JOIN_MS / 1000 * codec.sample_rate), np.float32)
    parts = []
    for k, piece in enumerate(split_text(text, max_chars)):
        if k:
            parts.append(silence)
        parts.append(codec.decode(codes_for(p.format_prompt(piece, voice), codec), noise=False)[p.trim_samples :])
    return np.concatenate(parts)


def _s16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.int32)


def _assert_pcm(data: bytes, audio: np.ndarray) -> None:
    got, want = _s16(data), _s16(pcm16(audio))
    assert got.shape == want.shape, f"{got.size} samples, want {want.size}"
    assert np.abs(got - want).max() <= 1


def _client(server, **kwargs):
    return openai.OpenAI(base_url=server["url"], api_key="unused", max_retries=0, **kwargs)


def _metric(server, name: str) -> float:
    return metric(server["port"], name)


LONG = "The quick brown fox jumps. Over the lazy dog, twice! Then it sleeps in the sun all afternoon."


@pytest.mark.parametrize("flavor", ["llama.cpp", "vllm"])
def test_openai_client_pcm_and_wav_are_exact_and_long_input_is_split_and_joined(server, llm, codec, flavor):
    llm.flavor = flavor  # llama.cpp: <custom_token_N> text; vLLM: token ids in the chunks too
    client = _client(server)
    expected = _expected(LONG, codec)
    assert len(split_text(LONG, 40)) == 3
    with client.audio.speech.with_streaming_response.create(
        model="orpheus", voice="tara", input=LONG, response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        data = response.read()
    _assert_pcm(data, expected)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="tara", input="Hello there.", response_format="wav"
    ) as response:
        data = response.read()
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[40:44] == b"\xff\xff\xff\xff"
    _assert_pcm(data[44:], _expected("Hello there.", codec))
    prompt = llm.requests[-1]["prompt"]
    assert prompt == PRESETS["orpheus"].format_prompt("Hello there.", "tara")
    sent = llm.requests[-1]
    assert sent["stream"] is True and sent["stop"] == ["<custom_token_2>"] and sent["stop_token_ids"] == [128258]
    assert (sent["temperature"], sent["top_p"], sent["repetition_penalty"], sent["max_tokens"]) == (0.6, 0.8, 1.3, 1200)


def test_sse_events_carry_the_audio_and_the_usage(server, codec):
    body = {"model": "orpheus", "voice": "leo", "input": "Hello there.", "response_format": "pcm",
            "stream_format": "sse"}
    events = []
    with httpx.stream("POST", server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert events[-1]["type"] == "speech.audio.done" and len(deltas) == len(events) - 1
    usage = events[-1]["usage"]
    assert usage["input_tokens"] == 20 and usage["total_tokens"] == 20 + usage["output_tokens"] > 20
    _assert_pcm(b"".join(base64.b64decode(e["audio"]) for e in deltas), _expected("Hello there.", codec, "leo"))


def test_flac_mp3_and_opus_decode(server, codec):
    """Each format as it streams: FLAC lossless (its STREAMINFO says the length is unknown, 0, as a stream must:
    libsndfile reads such a file only with the length filled in, which the test does), MP3 and Opus decodable with
    the length of the audio."""
    import soundfile as sf

    client = _client(server)
    expected = _expected("Hello there.", codec)
    for fmt in ("flac", "mp3", "opus"):
        with client.audio.speech.with_streaming_response.create(
            model="orpheus", voice="tara", input="Hello there.", response_format=fmt
        ) as response:
            data = bytearray(response.read())
        if fmt == "flac":
            assert data[:4] == b"fLaC" and data[21] & 0x0F == 0 and data[22:26] == bytes(4)  # total samples: unknown
            data[21] |= (expected.size >> 32) & 0x0F
            data[22:26] = (expected.size & 0xFFFFFFFF).to_bytes(4, "big")
        audio, rate = sf.read(io.BytesIO(bytes(data)), dtype="float32")
        assert rate == codec.sample_rate
        if fmt == "flac":  # lossless 16-bit: the same samples as pcm
            _assert_pcm(pcm16(audio), expected)
        else:  # lossy, with the codec's own padding
            assert abs(audio.size - expected.size) <= 2048, (fmt, audio.size, expected.size)


def test_first_audio_comes_three_frames_after_the_first_audio_token(server, llm, codec):
    """The upstream stops after three frames until the test lets it go on: the first audio byte must come while
    it waits (the stream's physical minimum), not after the whole generation."""
    llm.scripts.mode = "paced"
    sent_before = llm.sent_tokens
    body = {"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm"}
    with httpx.stream("POST", server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S) as response:
        chunks = response.iter_bytes()
        first = next(chunks)
        assert llm.sent_tokens - sent_before == 21 and not llm.scripts.release.is_set()
        llm.scripts.release.set()
        data = first + b"".join(chunks)
    assert len(first) > 0
    _assert_pcm(data, _expected("Hello there.", codec))


def test_the_upstream_failing_before_any_audio_is_a_clear_502_503_504(server, llm):
    body = {"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm"}
    llm.scripts.mode = "refuse"
    r = httpx.post(server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S)
    assert r.status_code == 502 and "answered 500: out of memory" in r.json()["error"]["message"]
    llm.scripts.mode = "loading"
    r = httpx.post(server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S)
    assert r.status_code == 503 and r.headers["retry-after"] == "7" and "Loading model" in r.json()["error"]["message"]
    llm.scripts.mode = "hang"
    r = httpx.post(server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S)
    assert r.status_code == 504 and "sent nothing for 3.0 s" in r.json()["error"]["message"]
    assert _metric(server, "snac_streams_active") == 0


def test_an_unreachable_upstream_is_a_502_with_the_reason(codec):
    port, dead = free_port(), free_port()
    proc = start_server(TINY_24, port, "--llm", f"http://127.0.0.1:{dead}/v1", "--preset", "orpheus")
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/audio/speech", timeout=HANG_GUARD_S,
                       json={"model": "orpheus", "voice": "tara", "input": "Hi.", "response_format": "pcm"})
        assert r.status_code == 502 and "cannot be reached" in r.json()["error"]["message"], r.text
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


def test_an_upstream_error_after_the_audio_started_ends_with_what_was_final(server, llm, codec):
    llm.scripts.mode = "error_mid"
    body = {"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm",
            "stream_format": "sse"}
    with httpx.stream("POST", server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "error" and "the model crashed" in events[-1]["error"]["message"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    codes = codes_for(PRESETS["orpheus"].format_prompt("Hello there.", "tara"), codec)
    _assert_pcm(audio, codec.decode([c[: 3 * n] for c, n in zip(codes, (1, 2, 4))], noise=False))
    body["stream_format"] = "audio"
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
        "POST", server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S
    ) as response:
        b"".join(response.iter_bytes())  # cut short: the connection is dropped
    assert llm.wait_for(lambda: _metric(server, "snac_streams_active") == 0)


def test_a_stalled_upstream_ends_the_response_with_an_error_event(server, llm):
    llm.scripts.mode = "stall"
    body = {"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm",
            "stream_format": "sse"}
    started = time.monotonic()
    with httpx.stream("POST", server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "error" and "sent nothing for 3.0 s" in events[-1]["error"]["message"]
    assert time.monotonic() - started < 50
    assert llm.wait_for(lambda: _metric(server, "snac_streams_active") == 0)


def test_text_that_is_not_audio_is_skipped_and_counted(server, llm, codec):
    llm.scripts.extra = [("text", "Sure! Here is the audio:"), ("text", " ")]
    before = _metric(server, 'snac_llm_skipped_total{kind="text"}')
    r = httpx.post(server["url"] + "/audio/speech", timeout=HANG_GUARD_S,
                   json={"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm"})
    assert r.status_code == 200
    _assert_pcm(r.content, _expected("Hello there.", codec))
    assert _metric(server, 'snac_llm_skipped_total{kind="text"}') - before == len("Sure! Here is the audio:")


def test_ids_out_of_range_follow_the_presets_policy(server, llm):
    llm.scripts.extra = [("tokens", [156938 + 5])]  # above Orpheus's audio range, before any audio: strict
    r = httpx.post(server["url"] + "/audio/speech", timeout=HANG_GUARD_S,
                   json={"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm"})
    assert r.status_code == 502 and "above the orpheus audio range" in r.json()["error"]["message"]


def test_a_client_that_disconnects_cancels_the_upstream_request(server, llm):
    llm.scripts.mode = "paced"
    cancelled = llm.cancelled
    body = {"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm"}
    with httpx.stream("POST", server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S) as response:
        next(response.iter_bytes())  # audio flows, the upstream waits; then the client goes
    assert llm.wait_for(lambda: llm.cancelled == cancelled + 1), "the upstream never saw the cancellation"
    assert llm.wait_for(lambda: _metric(server, "snac_streams_active") == 0)
    llm.scripts.release.set()


def test_beyond_max_streams_503_before_anything_is_sent_upstream(server, llm):
    llm.scripts.mode = "paced"
    body = {"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm"}
    import contextlib

    import websockets.sync.client as ws_client

    with contextlib.ExitStack() as stack:
        holders = [
            stack.enter_context(ws_client.connect(f"ws://127.0.0.1:{server['port']}/v1/stream?preset=orpheus"))
            for _ in range(3)
        ]
        for h in holders:
            assert json.loads(h.recv())["type"] == "start"
        asked = len(llm.requests)
        r = httpx.post(server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert len(llm.requests) == asked


def test_the_upstream_key_is_sent_and_never_logged(server, llm):
    r = httpx.post(server["url"] + "/audio/speech", timeout=HANG_GUARD_S,
                   json={"model": "orpheus", "voice": "tara", "input": "Hi.", "response_format": "pcm"})
    assert r.status_code == 200
    assert llm.headers[-1]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    info = httpx.get(server["url"] + "/info", timeout=HANG_GUARD_S).text
    assert UPSTREAM_KEY not in info and UPSTREAM_KEY not in server["log"].read_text()


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"speed": 1.5}, 400, "speed: only 1.0"),
        ({"response_format": "aac"}, 400, "not supported"),
        ({"voice": "alloy"}, 400, "voices"),
        ({"model": "whisper-1"}, 404, "not served here"),
        ({"input": ""}, 400, "input"),
        ({"input": "x" * 5000}, 400, "at most 4096"),
        ({"temperature": 2}, 400, "temperature"),
    ],
)
def test_bad_requests_are_clear_400s(server, llm, change, status, words):
    asked = len(llm.requests)
    body = {"model": "orpheus", "voice": "tara", "input": "Hi.", "response_format": "pcm", **change}
    r = httpx.post(server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S)
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert len(llm.requests) == asked


def test_models_and_voices(server):
    models = _client(server).models.list()
    assert [m.id for m in models.data] == ["orpheus"]
    voices = httpx.get(server["url"] + "/audio/voices", timeout=HANG_GUARD_S).json()
    assert [v["id"] for v in voices["voices"]] == list(PRESETS["orpheus"].voices) and voices["default"] == "tara"


def test_maya1_modulo_trim_and_description_and_the_servers_own_key(llm, codec):
    """Maya1 through the same front: its description in ``instructions``, its ids reduced modulo 4096 whatever the
    slot, its first 2048 samples trimmed; the server requires its own key."""
    llm.scripts.preset = "maya1"
    port = free_port()
    proc = start_server(TINY_24, port, "--llm", llm.url, "--preset", "maya1", "--api-key", "mine", "--join-ms",
                        str(JOIN_MS), "--piece-chars", "40")
    try:
        url = f"http://127.0.0.1:{port}/v1"
        body = {"model": "maya1", "voice": "any", "instructions": "A calm voice.", "input": "Hello there.",
                "response_format": "pcm"}
        assert httpx.post(url + "/audio/speech", json=body, timeout=HANG_GUARD_S).status_code == 401
        r = httpx.post(url + "/audio/speech", json=body, timeout=HANG_GUARD_S, headers={"Authorization": "Bearer mine"})
        assert r.status_code == 200, r.text
        _assert_pcm(r.content, _expected("Hello there.", codec, voice="A calm voice.", preset="maya1"))
        assert llm.requests[-1]["prompt"].startswith('<custom_token_3><|begin_of_text|><description="A calm voice.">')
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=HANG_GUARD_S).status_code == 200  # no key needed
        assert httpx.get(f"{url}/info", timeout=HANG_GUARD_S).status_code == 401
        import websockets.sync.client as ws_client

        with ws_client.connect(f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus") as ws:
            error = json.loads(ws.recv())
            with pytest.raises(Exception, match="1008"):
                ws.recv()
        assert "--api-key" in error["message"]
        headers = {"Authorization": "Bearer mine"}
        with ws_client.connect(f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus", additional_headers=headers) as ws:
            assert json.loads(ws.recv())["type"] == "start"
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-m", str(TINY_24), "--llm", "http://127.0.0.1:9/v1"], "--llm and --preset go together"),
        (["-m", str(TINY_24), "--llm", "http://127.0.0.1:9/v1", "--preset", "mini-omni"], "not a completions model"),
        (["-m", str(TINY_24), "--llm", "http://127.0.0.1:9/v1", "--preset", "maya2"], "one of"),
        (["-m", str(REPO / "tests/fixtures/tiny_44khz"), "--llm", "http://127.0.0.1:9/v1", "--preset", "orpheus"],
         "presets are for the 24 kHz model"),
    ],
)
def test_a_speech_front_that_cannot_work_is_refused_at_startup(args, words):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "snac_onnx", "serve", *args], capture_output=True, text=True,
                            timeout=HANG_GUARD_S, cwd=REPO)
    assert result.returncode == 2 and words in result.stderr, (result.returncode, result.stderr[-500:])


TWO = "First sentence here, fine. Second sentence comes after it."


def _sse(server, body: dict) -> list[dict]:
    with httpx.stream("POST", server["url"] + "/audio/speech", json=body, timeout=HANG_GUARD_S) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize(("mode", "words"), [("second_fails", "crashed on the second"), ("second_silent", "no audio")])
def test_a_later_piece_that_fails_ends_the_response_after_the_audio_that_was_final(server, llm, codec, mode, words):
    """The first piece plays whole; the second's failure (an error, or no audio at all) ends the SSE response with
    an error event, never a silently missing sentence; every place is let go."""
    llm.scripts.mode = mode
    assert len(split_text(TWO, 40)) == 2
    events = _sse(server, {"model": "orpheus", "voice": "tara", "input": TWO, "response_format": "pcm",
                           "stream_format": "sse"})
    assert events[-1]["type"] == "error" and words in events[-1]["error"]["message"], events[-1]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    first = codec.decode(codes_for(PRESETS["orpheus"].format_prompt(split_text(TWO, 40)[0], "tara"), codec),
                         noise=False)
    assert len(audio) >= len(pcm16(first))
    _assert_pcm(audio[: len(pcm16(first))], first)
    assert llm.wait_for(lambda: _metric(server, "snac_streams_active") == 0)


@pytest.mark.parametrize(("mode", "words"), [("length", "max_tokens"), ("malformed", "malformed chunk")])
def test_a_generation_cut_by_max_tokens_or_a_malformed_chunk_is_an_error(server, llm, mode, words):
    llm.scripts.mode = mode
    events = _sse(server, {"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm",
                           "stream_format": "sse"})
    assert events[-1]["type"] == "error" and words in events[-1]["error"]["message"], events[-1]
    assert llm.wait_for(lambda: _metric(server, "snac_streams_active") == 0)


def test_a_tag_with_an_endless_number_is_text_not_a_crash(server, llm, codec):
    llm.scripts.mode = "huge_tag"
    r = httpx.post(server["url"] + "/audio/speech", timeout=HANG_GUARD_S,
                   json={"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm"})
    assert r.status_code == 200
    _assert_pcm(r.content, _expected("Hello there.", codec))
    assert "Traceback" not in server["log"].read_text()


def test_a_client_gone_before_the_first_audio_cancels_the_upstream_request(server, llm):
    llm.scripts.mode = "hang"
    cancelled = llm.cancelled
    body = {"model": "orpheus", "voice": "tara", "input": "Hello there.", "response_format": "pcm"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server["url"] + "/audio/speech", json=body, timeout=httpx.Timeout(60, read=1.0))
    assert llm.wait_for(lambda: llm.cancelled == cancelled + 1), "the upstream never saw the cancellation"
    assert llm.wait_for(lambda: _metric(server, "snac_streams_active") == 0)
