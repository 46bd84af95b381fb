"""SnacOnnx: the public face of a model; checks arguments and inputs, then hands them to the runner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from .audio import check_sample_rate, prepare_audio
from .codes import NoiseArg, PreparedCodes, check_int, check_seed, prepare_codes, prepare_noise
from .config import ModelConfig
from .errors import InvalidArgumentError, InvalidCodesError
from .layouts import TokenLayout, codes_to_tokens, resolve_layout, tokens_to_codes
from .model.hub import DEFAULT_MODEL, ModelLocation, resolve_model
from .model.manifest import Manifest, load_manifest, warn_random_weights
from .model.sessions import (
    ROLES,
    ModelSessions,
    ProviderSpec,
    SessionSettings,
    check_threads,
    normalize_providers,
    onnxruntime,
)
from .noise import NoiseSource
from .planner import Chunk, Run, check_seconds
from .runner import Runner
from .stream.decoder import StreamDecoder
from .stream.orpheus import END_OF_SPEECH, OrpheusStream
from .stream.presets import PresetStream, TokenPreset, get_preset

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = ["SnacOnnx"]

Codes = list[np.ndarray]


def _check_model(model: object) -> str | Path:
    if isinstance(model, (str, Path)) and str(model):
        return model
    raise InvalidArgumentError(
        f"model must be a folder path, a short name (e.g. 'snac_24khz') or a hub repo id, got {model!r}"
    )


class SnacOnnx:
    """A SNAC codec running on onnxruntime, without torch.

    Args:
        model: a folder of an exported model (``encoder.onnx``, ``decoder.onnx``,
            ``manifest.json``, as written by ``python -m export``); a short name
            (``snac_24khz``, ``snac_32khz``, ``snac_44khz``; see
            :data:`snac_onnx.model.hub.MODEL_REPOS`); or a Hugging Face repo id. Hub
            files come from the local cache first, then the network.
        providers: onnxruntime execution providers, in onnxruntime's forms: a
            name, a ``(name, options)`` pair, or a list of them, in order of
            preference. None means ``["CPUExecutionProvider"]``. A requested
            provider that onnxruntime does not use is reported with a warning on
            the ``snac_onnx.model.sessions`` logger; :attr:`active_providers` tells what runs.
        threads: onnxruntime intra-op threads; 0 lets onnxruntime choose.
            Ignored when ``settings`` is given.
        parallel: graph runs at once (a thread pool); a long input is split into
            at least this many chunks with exact context, a batch or a list of
            items into its planned runs. Default 1.
        max_chunk_seconds: the most audio one graph run holds, summed over its
            batch, in seconds. Longer inputs are split into chunks with exact
            context (the receptive field; same result), and batches into runs of
            fewer items, so memory stays bounded whatever the input's length and
            batch size. Default 5 s (see the docs' performance page). None:
            never split.
        settings: full session settings (threads, graph optimisation, memory
            pattern, arena, fused kernel); see :class:`~snac_onnx.model.sessions.SessionSettings`.
        session_options: your own ``onnxruntime.SessionOptions`` (profiling, logging,
            custom ops...), used for every session instead of those ``settings``
            makes; ``settings.fused_snake`` still decides whether the fused kernel
            is registered on it.
        verify: check each graph file's sha256 against the manifest before its
            session is built (about 0.1-0.5 s per file).
        precision: ``"fp32"`` (default) or a variant the export holds
            (``"int8"`` for CPU, ``"fp16"`` for GPU; see ``manifest.precisions``
            and the measured error and speed in ``manifest.raw["variants"]``).
        revision: hub revision (branch, tag or commit) to pin.
        offline: never use the network (None follows ``HF_HUB_OFFLINE``).
        cache_dir: huggingface_hub cache folder (None: its default).

    Sessions are created lazily and separately (a decode-only user never loads or downloads the
    encoder), or now with :meth:`load`. One instance may be shared by threads; it holds no
    per-call state. :meth:`close` (or ``with SnacOnnx(...) as codec:``) frees the sessions and
    the thread pool. A model with seeded random weights (``manifest.random_init``: its audio is
    meaningless) is logged as one WARNING per model and process; see
    :func:`~snac_onnx.model.manifest.warn_random_weights`.

    Raises:
        InvalidArgumentError: an argument of the wrong type or outside its range.
        MissingDependencyError: onnxruntime is not installed.
        ModelNotFoundError, ModelFormatError: the model cannot be found or read.
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
        session_options: ort.SessionOptions | None = None,
        verify: bool = True,
        precision: str = "fp32",
        revision: str | None = None,
        offline: bool | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        ort = onnxruntime()  # fail now, with the extra to install, not at the first call
        model = _check_model(model)
        parallel = check_int("parallel", parallel, 1)
        max_chunk_seconds = check_seconds("max_chunk_seconds", max_chunk_seconds)
        if settings is None:
            settings = SessionSettings(intra_op_threads=check_threads("threads", threads))
        elif not isinstance(settings, SessionSettings):
            raise InvalidArgumentError(f"settings must be a SessionSettings, got {type(settings).__name__}")
        if session_options is not None and not isinstance(session_options, ort.SessionOptions):
            raise InvalidArgumentError(
                f"session_options must be an onnxruntime.SessionOptions, got {type(session_options).__name__}"
            )
        if not isinstance(precision, str):
            raise InvalidArgumentError(f"precision must be a string such as 'fp32', got {precision!r}")
        normalized = normalize_providers(providers)
        self._location: ModelLocation = resolve_model(model, revision=revision, offline=offline, cache_dir=cache_dir)
        self._manifest = load_manifest(self._location.folder)
        self._manifest.file_entry("decoder", precision)  # raises if the export lacks this precision
        warn_random_weights(self._manifest)  # once per model and process
        self._sessions = ModelSessions(
            self._location,
            self._manifest,
            precision=precision,
            providers=normalized,
            settings=settings,
            verify=bool(verify),
            session_options=session_options,
        )
        self._runner = Runner(self._sessions, parallel=parallel, max_chunk_seconds=max_chunk_seconds)

    # ------------------------------------------------------------------ lifecycle
    def load(self, *roles: str) -> SnacOnnx:
        """Build (and check) the sessions of ``roles`` now (default: every graph of the export); returns self.

        Use it to warm up a server or to check a model folder: each graph's sha256 is verified,
        its names compared with the contract, its providers and kernel decided.
        """
        default = [role for role in ROLES if role != "stream" or self._manifest.stream is not None]
        for role in roles or default:
            self._sessions.get(role)
        return self

    def session(self, role: str) -> ort.InferenceSession:
        """The onnxruntime session of ``role`` (``"encoder"``, ``"decoder"`` or ``"stream"``), built now if needed."""
        return self._sessions.get(role).session

    def close(self) -> None:
        """Free the sessions and the thread pool; using the codec afterwards is an error."""
        self._runner.close()
        self._sessions.close()

    def __enter__(self) -> SnacOnnx:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

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
    def max_chunk_seconds(self) -> float | None:
        """The most audio one graph run holds, summed over its batch (s); None: no bound."""
        return self._runner.max_chunk_seconds

    @property
    def fused_snake(self) -> bool:
        """Whether Snake runs on snac_onnx's fused kernel (:mod:`snac_onnx.model.kernels`).

        For sessions already built, what they do; before that, what they will do
        given ``settings.fused_snake``, the providers and the installed library.
        """
        built = self._sessions.built
        if built:
            return all(s.fused_snake for s in built.values())
        return self._sessions.predicted_fused_snake()

    @property
    def model_id(self) -> str:
        """The model's identity (:attr:`Manifest.model_id`): the same for every export of the same weights."""
        return self._manifest.model_id

    @property
    def precision(self) -> str:
        """The precision of the graphs in use (``fp32``, ``int8``, ``fp16``)."""
        return self._sessions.precision

    @property
    def config(self) -> ModelConfig:
        """The model's configuration and every count derived from it."""
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
        return self.config.samples_per_frame

    @property
    def active_providers(self) -> dict[str, list[str]]:
        """Providers in use per created session (``{"encoder": [...], ...}``)."""
        return {role: list(s.providers) for role, s in self._sessions.built.items()}

    # ------------------------------------------------------------------ encode
    @overload
    def encode(self, audio: list[np.ndarray], sample_rate: int | None = None) -> list[Codes]: ...
    @overload
    def encode(self, audio: np.ndarray, sample_rate: int | None = None) -> Codes: ...

    def encode(self, audio: Any, sample_rate: int | None = None) -> Codes | list[Codes]:
        """Encode PCM to codes.

        Args:
            audio: mono PCM at :attr:`sample_rate`: ``(samples,)``, ``(batch, samples)``,
                ``(batch, 1, samples)``, or a list of 1-D arrays of different lengths; float
                in [-1, 1] (float32; float64/float16 converted) or int16/int32 (scaled). Each
                item is right-padded with zeros to :attr:`padding_unit` like SNAC's
                ``preprocess``; decode with ``length=`` to trim back.
            sample_rate: the audio's rate in Hz, checked against the model's. Without it the
                caller is trusted to pass audio at :attr:`sample_rate`.

        Returns:
            One int64 array per codebook, coarse first: ``(frames_i,)`` for 1-D input,
            ``(batch, frames_i)`` for a batch; for a list of items, a list of such 1-D code
            lists, each equal to what encoding the item alone returns.
        """
        check_sample_rate(sample_rate, self.sample_rate)
        prepared = prepare_audio(audio, self.padding_unit)
        items = self._runner.encode(prepared.items)
        if prepared.form == "list":
            return items
        if prepared.form == "single":
            return items[0]
        return [np.stack([item[i] for item in items]) for i in range(self.num_codebooks)]

    def encode_window(self, audio: np.ndarray, keep: tuple[int, int]) -> Codes:
        """Encode one window of a longer signal and return the codes of the padding units it keeps.

        Args:
            audio: float32 mono PCM ``(samples,)`` of the window, a whole number of :attr:`padding_unit` (zeros
                only where a one-shot encode of the whole signal has them too: past its end).
            keep: ``(first, stop)``, the padding units of the window whose codes are returned; the units around
                them are its context (see :mod:`snac_onnx.windowed`, which plans the windows).

        Returns:
            One int64 array per codebook, coarse first, ``(stop - first) * frames_per_unit * codes_per_frame_i``
            long.
        """
        unit = self.padding_unit
        if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1 or audio.size % unit:
            raise InvalidArgumentError(f"a window is float32 (samples,) in whole units of {unit} samples")
        units = audio.size // unit
        first, stop = keep
        if not 0 <= first < stop <= units:
            raise InvalidArgumentError(f"keep={keep!r} must be (first, stop) with 0 <= first < stop <= {units}")
        (codes,) = self._runner.encode([audio], batches=[[Run(0, Chunk(first, stop, 0, units))]])
        return codes

    # ------------------------------------------------------------------ decode
    def noise_shapes(self, batch: int, coarse_frames: int) -> list[tuple[int, int, int]]:
        """Shapes of the decoder's noise inputs for ``batch`` items of ``coarse_frames`` frames."""
        return [(batch, 1, n) for n in self.config.noise_lengths(coarse_frames)]

    def decode(
        self,
        codes: Sequence[Any],
        *,
        length: int | None = None,
        lengths: Sequence[int | None] | None = None,
        noise: NoiseArg = True,
        seed: int | None = None,
    ) -> Any:
        """Decode codes to PCM.

        Args:
            codes: one integer array per codebook, coarse first, each ``(frames_i,)`` or
                ``(batch, frames_i)``; or a list of items of different lengths, each such a
                list of 1-D arrays. Values in ``[0, codebook_size)``;
                ``frames_i = frames_0 * vq_strides[0] / vq_strides[i]``.
            length: trim the output to this many samples (the original length given to
                :meth:`encode`); None keeps the padded length ``frames_0 * samples_per_frame``.
            lengths: for a list of items, one such length (or None) per item.
            noise: SNAC's decoder adds Gaussian noise in each NoiseBlock. True (default, the
                official behaviour): fresh noise, from ``seed`` when given (for a list of
                items, item ``i``'s from ``default_rng([seed, i])``). False: no noise,
                deterministic output. Arrays (shapes from :meth:`noise_shapes`; for a list,
                one list per item): that noise. See :func:`snac_onnx.codes.prepare_noise`.
            seed: seed for the noise when ``noise`` is True.

        Returns:
            float32 PCM in [-1, 1]: ``(samples,)`` for 1-D codes, ``(batch, samples)`` for a
            batch, a list of 1-D arrays for a list of items (each equal to decoding it alone).
        """
        prepared = prepare_codes(codes, self.config)
        return self._decode(prepared, length, lengths, noise, seed)

    def _decode(
        self,
        prepared: PreparedCodes,
        length: int | None,
        lengths: Sequence[int | None] | None,
        noise: NoiseArg,
        seed: int | None,
    ) -> Any:
        spf = self.samples_per_frame
        if prepared.form == "list":
            if length is not None:
                raise InvalidArgumentError("a list of items takes lengths=[...] (one per item), not length=")
            if lengths is None:
                lengths = [None] * prepared.batch_size
            if (
                isinstance(lengths, (str, bytes))
                or not isinstance(lengths, Sequence)
                or len(lengths) != prepared.batch_size
            ):
                raise InvalidArgumentError(
                    f"lengths must be a list of {prepared.batch_size} ints (or None), got {lengths!r}"
                )
            trims = [
                _check_length(n, f * spf, f"lengths[{i}]")
                for i, (n, f) in enumerate(zip(lengths, prepared.frames, strict=True))
            ]
        else:
            if lengths is not None:
                raise InvalidArgumentError("lengths= is for a list of items; pass length= for one item or a batch")
            trims = [_check_length(length, prepared.frames[0] * spf, "length")] * prepared.batch_size
        noise_items = prepare_noise(noise, seed, prepared, self.config)
        audio = self._runner.decode(prepared.items, noise_items)
        trimmed = [a[:n] for a, n in zip(audio, trims, strict=True)]
        if prepared.form == "list":
            return trimmed
        if prepared.form == "single":
            return trimmed[0]
        return np.stack(trimmed)

    # ------------------------------------------------------------------ tokens
    def encode_tokens(
        self, audio: np.ndarray, layout: TokenLayout | str = "interleaved", sample_rate: int | None = None
    ) -> np.ndarray:
        """Encode PCM to flat token ids; see :mod:`snac_onnx.layouts` for ``layout``.

        Returns int64 ``(frames * frame_size,)`` for 1-D audio, ``(batch, ...)`` otherwise.
        """
        layout = resolve_layout(layout)
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
        result: np.ndarray = self._decode(
            prepare_codes(codes, self.config, check_values=False), length, None, noise, seed
        )
        return result

    # ------------------------------------------------------------------ streaming
    def stream(
        self,
        *,
        mode: str = "auto",
        chunk_frames: int | None = None,
        left_context: int | None = None,
        lookahead: int | None = None,
        steps_per_call: int = 1,
        layout: TokenLayout | str = "interleaved",
        noise: bool = False,
        seed: int | None = None,
        deferred: bool = False,
    ) -> StreamDecoder:
        """A new streaming decoder over this model; see :class:`~snac_onnx.stream.decoder.StreamDecoder`.

        ``push(codes or tokens)`` returns audio that is final; ``flush()`` the rest. The
        concatenated output equals :meth:`decode` of the whole sequence (noise off; with noise,
        :meth:`decode` given :meth:`stream_noise` of the stream's seed). ``mode``: ``"stateful"``
        (the export's stream graph: first audio at the decoder's physical minimum, no recompute),
        ``"window"`` (chunks with context), or ``"auto"``. ``deferred``: the steps are run by a scheduler
        (:class:`~snac_onnx.stream.pool.StreamPool` does, through :func:`~snac_onnx.stream.decoder.run_steps`).
        """
        return StreamDecoder(
            self._runner,
            mode=mode,
            chunk_frames=chunk_frames,
            left_context=left_context,
            lookahead=lookahead,
            steps_per_call=steps_per_call,
            layout=layout,
            noise=noise,
            seed=seed,
            deferred=deferred,
        )

    def stream_noise(self, frames: int, seed: int) -> list[np.ndarray]:
        """The noise a stream with ``noise=True, seed=seed`` adds over ``frames`` coarse frames, in the shapes
        :meth:`decode` takes (``noise=``): ``decode(codes, noise=codec.stream_noise(n, seed))`` equals the stream."""
        frames = check_int("frames", frames, 1)
        checked = check_seed(seed)
        if checked is None:
            raise InvalidArgumentError("seed must be a non-negative int (the stream's seed attribute)")
        return [n[None, None, :] for n in NoiseSource(self.config, checked).frames(0, frames)]

    def orpheus_stream(self, *, end_of_speech: int = END_OF_SPEECH, **stream_args: Any) -> OrpheusStream:
        """A stream of Orpheus LLM output (ids or ``<custom_token_N>`` text); see :mod:`snac_onnx.stream.orpheus`.

        ``stream_args`` go to :meth:`stream` (``chunk_frames``, ``lookahead``, ``noise``, ``seed``...).
        """
        return OrpheusStream(self.stream(layout="orpheus", **stream_args), end_of_speech=end_of_speech)

    def preset_stream(self, preset: TokenPreset | str, **stream_args: Any) -> PresetStream:
        """A stream of one TTS model's output ids (``"orpheus"``...); see :mod:`snac_onnx.stream.presets`.

        ``stream_args`` go to :meth:`stream` (``chunk_frames``, ``lookahead``, ``noise``, ``seed``...).
        """
        chosen = get_preset(preset)
        return PresetStream(self.stream(layout=chosen.layout, **stream_args), chosen)


def _check_length(length: object, total: int, name: str) -> int:
    if length is None:
        return total
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 0 < int(length) <= total:
        raise InvalidCodesError(
            f"{name} must be an int in [1, {total}] (the samples these codes decode to), got {length!r}"
        )
    return int(length)
