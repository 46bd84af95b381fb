"""SnacOnnx: encode PCM to SNAC codes and decode codes to PCM with onnxruntime."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from .audio import check_sample_rate, prepare_audio
from .codes import PreparedCodes, prepare_codes
from .errors import InvalidCodesError, ModelFormatError, SnacOnnxError
from .hub import DEFAULT_MODEL, ModelLocation, resolve_model
from .layouts import TokenLayout, codes_to_tokens, tokens_to_codes
from .manifest import (
    AUDIO_NAME,
    MANIFEST_FILE,
    Manifest,
    ModelConfig,
    code_names,
    decoder_io,
    encoder_io,
    load_manifest,
    noise_names,
    sha256_file,
)
from .orpheus import END_OF_SPEECH, OrpheusStream
from .parallel import decode_in_chunks, encode_in_chunks
from .sessions import (
    ProviderSpec,
    SessionSettings,
    create_session,
    fused_snake_library,
    normalize_providers,
    provider_names,
    uses_fused_snake,
)
from .streaming import StreamDecoder

__all__ = ["SnacOnnx"]

NoiseArg = bool | Sequence[np.ndarray]


class SnacOnnx:
    """A SNAC codec running on onnxruntime, without torch.

    Args:
        model: a folder of an exported model (``encoder.onnx``, ``decoder.onnx``,
            ``manifest.json``, as written by ``python -m export``); a short name
            (``snac_24khz``, ``snac_32khz``, ``snac_44khz``; see
            :data:`snac_onnx.hub.MODEL_REPOS`); or a Hugging Face repo id. Hub
            files come from the local cache first, then the network.
        providers: onnxruntime execution providers, in onnxruntime's forms: a
            name, a ``(name, options)`` pair, or a list of them, in order of
            preference. None means ``["CPUExecutionProvider"]``. A requested
            provider that onnxruntime does not use is reported with a warning on
            the ``snac_onnx`` logger; :attr:`active_providers` tells what runs.
        threads: onnxruntime intra-op threads; 0 lets onnxruntime choose.
            Ignored when ``settings`` is given.
        parallel: split each long encode/decode into up to this many time
            chunks, with exact context, run concurrently (see
            :mod:`snac_onnx.parallel`); short inputs are never split. Default 1.
            With the fused Snake kernel, one run with 2 threads is the faster
            choice on 2 cores (10 s at 24 kHz: decode 0.65 s vs 0.73 s for
            ``threads=1, parallel=2``); without it, ``parallel=2`` won.
        max_chunk_seconds: longer inputs are encoded/decoded in chunks of at
            most about this many seconds (exact context, same result), so
            memory stays bounded however long the input (60 s at 24 kHz:
            209 MB peak for the process in 5 s chunks, 976 MB one-shot). The
            default, 5 s, is also faster on CPU (smaller tensors stay in
            cache; 60 s at 24 kHz: decode 3.46 s vs 3.96 s one-shot).
            All chunks of one call run with the same length, so onnxruntime's
            arena re-uses one set of buffers (10 s at 24 kHz: 174 MB peak
            for the whole process, with the decoder's tiled tail). None:
            never split.
        settings: full session settings (threads, graph optimisation, memory
            pattern, arena); see :class:`~snac_onnx.sessions.SessionSettings`.
        verify: check each graph file's sha256 against the manifest before its
            session is built (about 0.1-0.5 s per file).
        precision: ``"fp32"`` (default) or a variant the export holds
            (``"int8"`` for CPU, ``"fp16"`` for GPU; see ``manifest.precisions``
            and the measured error and speed in ``manifest.raw["variants"]``).
        revision: hub revision (branch, tag or commit) to pin.
        offline: never use the network (None follows ``HF_HUB_OFFLINE``).
        cache_dir: huggingface_hub cache folder (None: its default).

    Sessions are created lazily and separately: a decode-only user never loads
    (or downloads) the encoder. One instance may be shared by threads; it holds no per-call state.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        providers: ProviderSpec | Sequence[ProviderSpec] | None = None,
        threads: int = 0,
        parallel: int = 1,
        max_chunk_seconds: float | None = 5.0,
        settings: SessionSettings | None = None,
        verify: bool = True,
        precision: str = "fp32",
        revision: str | None = None,
        offline: bool | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self._location: ModelLocation = resolve_model(model, revision=revision, offline=offline, cache_dir=cache_dir)
        self._manifest = load_manifest(self._location.folder)
        self._manifest_sha256: str | None = None
        self._manifest.file_entry("decoder", precision)  # raises if the export lacks this precision
        self._precision = precision
        self._providers = normalize_providers(providers)
        self._settings = settings if settings is not None else SessionSettings(intra_op_threads=threads)
        self._verify = verify
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._lock = threading.Lock()
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise ValueError(f"parallel must be an int >= 1, got {parallel!r}")
        self._parallel = parallel
        if max_chunk_seconds is not None and not max_chunk_seconds > 0:
            raise ValueError(f"max_chunk_seconds must be > 0 or None, got {max_chunk_seconds!r}")
        self._max_chunk_seconds = max_chunk_seconds
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ properties
    @property
    def manifest(self) -> Manifest:
        """The parsed manifest of the model."""
        return self._manifest

    @property
    def location(self) -> ModelLocation:
        """Where the model's files are (folder, and hub repo when resolved from the hub)."""
        return self._location

    @property
    def fused_snake(self) -> bool:
        """Whether Snake runs on snac_onnx's fused kernel (:mod:`snac_onnx.kernels`).

        For sessions already built, what they do; before that, what they will do
        given ``settings.fused_snake``, the providers and the installed library.
        """
        with self._lock:
            built = list(self._sessions.values())
        if built:
            return all(uses_fused_snake(s) for s in built)
        try:
            return fused_snake_library(self._settings.fused_snake, provider_names(self._providers)) is not None
        except SnacOnnxError:
            return False

    @property
    def manifest_sha256(self) -> str:
        """sha256 of this model's ``manifest.json``: identifies the export codes were made with."""
        if self._manifest_sha256 is None:
            self._manifest_sha256 = sha256_file(self._location.folder / MANIFEST_FILE)
        return self._manifest_sha256

    @property
    def precision(self) -> str:
        """The precision of the graphs in use (``fp32``, ``int8``, ``fp16``)."""
        return self._precision

    @property
    def config(self) -> ModelConfig:
        return self._manifest.config

    @property
    def name(self) -> str:
        return self._manifest.name

    @property
    def sample_rate(self) -> int:
        """Audio sample rate in Hz."""
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        """Audio samples per step of the finest codebook."""
        return self.config.hop_length

    @property
    def vq_strides(self) -> tuple[int, ...]:
        """Temporal stride of each codebook, coarse first (e.g. ``(4, 2, 1)``)."""
        return self.config.vq_strides

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    @property
    def padding_unit(self) -> int:
        """Audio is padded to a multiple of this many samples before encoding."""
        return self.config.padding_unit

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per coarse code (one frame of the coarsest codebook)."""
        return self.config.hop_length * self.config.vq_strides[0]

    @property
    def active_providers(self) -> dict[str, list[str]]:
        """Providers in use per created session (``{"encoder": [...], ...}``)."""
        return {role: s.get_providers() for role, s in self._sessions.items()}

    # ------------------------------------------------------------------ sessions
    def _session(self, role: str) -> ort.InferenceSession:
        session = self._sessions.get(role)
        if session is not None:
            return session
        with self._lock:
            session = self._sessions.get(role)
            if session is None:
                session = self._build_session(role)
                self._sessions[role] = session
        return session

    def _build_session(self, role: str) -> ort.InferenceSession:
        manifest = self._manifest
        entry = manifest.file_entry(role, self._precision)
        path = self._location.fetch(entry["path"])
        if self._verify and path.is_file():
            actual = sha256_file(path)
            expected = entry["sha256"]
            if actual != expected:
                raise ModelFormatError(
                    f"{str(path)!r} has sha256 {actual[:16]}..., the manifest expects {expected[:16]}...: "
                    "the file is corrupt or from another export; re-export or re-download the model"
                )
        inputs, outputs = (encoder_io if role == "encoder" else decoder_io)(manifest.config)
        tiled = role == "decoder" and manifest.decoder_tail_tiles > 1
        return create_session(path, self._providers, self._settings, inputs, outputs, tiled)

    def _mapper(self):
        """``map`` over chunks: builtin (one at a time) or the shared pool's (``parallel`` at a time)."""
        if self._parallel == 1:
            return map
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=self._parallel, thread_name_prefix="snac_onnx")
        return self._executor.map

    # ------------------------------------------------------------------ encode
    def encode(self, audio: np.ndarray, sample_rate: int | None = None) -> list[np.ndarray]:
        """Encode PCM to codes.

        Args:
            audio: mono PCM at :attr:`sample_rate`, shape ``(samples,)``,
                ``(batch, samples)`` or ``(batch, 1, samples)``; float in [-1, 1]
                (float32; float64/float16 converted) or int16/int32 (scaled).
                It is right-padded with zeros to :attr:`padding_unit` like SNAC's
                ``preprocess``; decode with ``length=`` to trim back.
            sample_rate: the audio's rate in Hz, checked against the model's.

        Returns:
            One int64 array per codebook, coarse first: ``(frames_i,)`` for 1-D
            input, ``(batch, frames_i)`` otherwise.
        """
        check_sample_rate(sample_rate, self.sample_rate)
        prepared = prepare_audio(audio, self.padding_unit)
        names = code_names(self.num_codebooks)
        session = self._session("encoder")
        results = encode_in_chunks(
            lambda feeds: session.run(names, feeds), prepared.batch, self.config, self._parallel,
            self._mapper(), AUDIO_NAME, self._max_chunk_seconds,
        )
        codes = [np.asarray(r, dtype=np.int64) for r in results]
        if prepared.unbatched:
            codes = [c[0] for c in codes]
        return codes

    # ------------------------------------------------------------------ decode
    def noise_shapes(self, batch: int, coarse_frames: int) -> list[tuple[int, int, int]]:
        """Shapes of the decoder's noise inputs for ``batch`` items of ``coarse_frames`` frames."""
        return [(batch, 1, n) for n in self.config.noise_lengths(coarse_frames)]

    def decode(
        self,
        codes: Sequence[np.ndarray],
        *,
        length: int | None = None,
        noise: NoiseArg = True,
        seed: int | None = None,
    ) -> np.ndarray:
        """Decode codes to PCM.

        Args:
            codes: one integer array per codebook, coarse first, each
                ``(frames_i,)`` or ``(batch, frames_i)``; values in
                ``[0, codebook_size)``; ``frames_i = frames_0 * vq_strides[0] / vq_strides[i]``.
            length: trim the output to this many samples (the original length
                given to :meth:`encode`); None keeps the padded length
                ``frames_0 * samples_per_frame``.
            noise: SNAC's decoder adds Gaussian noise in each NoiseBlock.
                True (default, the official behaviour): fresh noise, from ``seed``
                when given. False: no noise, deterministic output. A list of
                float arrays (shapes from :meth:`noise_shapes`): that noise.
            seed: seed for the noise when ``noise`` is True.

        Returns:
            float32 PCM in [-1, 1]: ``(samples,)`` for 1-D codes, ``(batch, samples)`` otherwise.
        """
        prepared = prepare_codes(codes, self.config)
        total = prepared.coarse_frames * self.samples_per_frame
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 0 < length <= total:
                raise InvalidCodesError(
                    f"length must be an int in [1, {total}] (the samples these codes decode to), got {length!r}"
                )
        code_feeds = dict(zip(code_names(self.num_codebooks), prepared.arrays))
        noise_feeds = dict(zip(noise_names(self.config.num_noise_blocks), self._noise(prepared, noise, seed)))
        session = self._session("decoder")
        audio = decode_in_chunks(
            lambda feeds: session.run([AUDIO_NAME], feeds), code_feeds, noise_feeds, self.config,
            self._parallel, self._mapper(), self._max_chunk_seconds,
        )
        audio = audio[:, 0, : total if length is None else int(length)]
        if not np.isfinite(audio).all():  # never hand out silently broken audio
            raise ModelFormatError(
                "the decoder produced NaN or infinite samples from valid codes: the model files or the fused "
                "Snake kernel are damaged; re-download the model, or pass SessionSettings(fused_snake=False)"
            )
        return audio[0] if prepared.unbatched else audio

    def _noise(self, prepared: PreparedCodes, noise: NoiseArg, seed: int | None) -> list[np.ndarray]:
        shapes = self.noise_shapes(prepared.batch_size, prepared.coarse_frames)
        if noise is True:
            rng = np.random.default_rng(seed)
            return [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]
        if seed is not None:
            raise ValueError("seed applies to generated noise only; pass noise=True with seed, or drop seed")
        if noise is False:
            return [np.zeros(shape, dtype=np.float32) for shape in shapes]
        if isinstance(noise, np.ndarray) or not isinstance(noise, Sequence) or len(noise) != len(shapes):
            raise ValueError(f"noise must be True, False, or a list of {len(shapes)} arrays of shapes {shapes}")
        out = []
        for j, (arr, shape) in enumerate(zip(noise, shapes)):
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if arr.shape != shape:
                raise ValueError(f"noise[{j}] has shape {arr.shape}; expected {shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"noise[{j}] contains NaN or infinite values")
            out.append(arr)
        return out

    # ------------------------------------------------------------------ tokens
    def encode_tokens(
        self, audio: np.ndarray, layout: TokenLayout | str = "interleaved", sample_rate: int | None = None
    ) -> np.ndarray:
        """Encode PCM to flat token ids; see :mod:`snac_onnx.layouts` for ``layout``.

        Returns int64 ``(frames * frame_size,)`` for 1-D audio, ``(batch, ...)`` otherwise.
        """
        return codes_to_tokens(self.encode(audio, sample_rate=sample_rate), self.vq_strides, layout)

    def decode_tokens(
        self,
        tokens: np.ndarray | Sequence[int],
        layout: TokenLayout | str = "interleaved",
        *,
        length: int | None = None,
        noise: NoiseArg = True,
        seed: int | None = None,
    ) -> np.ndarray:
        """Decode flat token ids (a whole number of frames) to PCM; arguments as :meth:`decode`."""
        codes = tokens_to_codes(tokens, self.vq_strides, self.codebook_size, layout)
        return self.decode(codes, length=length, noise=noise, seed=seed)

    # ------------------------------------------------------------------ streaming
    def stream(
        self,
        *,
        chunk_frames: int | None = None,
        left_context: int | None = None,
        lookahead: int | None = None,
        layout: TokenLayout | str = "interleaved",
        noise: bool = False,
        seed: int | None = None,
    ) -> StreamDecoder:
        """A new streaming decoder over this model; see :class:`~snac_onnx.streaming.StreamDecoder`.

        ``push(codes or tokens)`` returns audio that is final; ``flush()`` the rest.
        With the default context the concatenated output equals :meth:`decode`
        of the whole sequence (noise off).
        """
        return StreamDecoder(
            self,
            chunk_frames=chunk_frames,
            left_context=left_context,
            lookahead=lookahead,
            layout=layout,
            noise=noise,
            seed=seed,
        )

    def orpheus_stream(self, *, end_of_speech: int = END_OF_SPEECH, **stream_args: object) -> OrpheusStream:
        """A stream that takes Orpheus LLM output (ids or ``<custom_token_N>`` text); see :mod:`snac_onnx.orpheus`.

        ``stream_args`` go to :meth:`stream` (``chunk_frames``, ``lookahead``, ``noise``, ``seed``...).
        """
        return OrpheusStream(self, end_of_speech=end_of_speech, **stream_args)
