"""onnxruntime sessions: execution providers, session options, name checks.

Providers are given in onnxruntime's own forms: a name
(``"CUDAExecutionProvider"``), a ``(name, options)`` pair, or a list of those.
After a session is created, :func:`create_session` compares
``session.get_providers()`` with what was asked and logs a warning for every
requested provider that is not in use (a classic cause: ``onnxruntime`` and
``onnxruntime-gpu`` installed side by side, which silently gives CPU only).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "snac_onnx needs onnxruntime: pip install 'snac-onnx[cpu]' (or '[gpu]' for onnxruntime-gpu; never both)"
    ) from exc

from .errors import ModelFormatError, ModelNotFoundError, SnacOnnxError
from .kernels import set_snake_threads, snake_library

__all__ = [
    "ProviderSpec",
    "SessionSettings",
    "normalize_providers",
    "provider_names",
    "conflicting_runtime_packages",
    "create_session",
    "fused_snake_library",
    "uses_fused_snake",
]

logger = logging.getLogger("snac_onnx")

ProviderSpec = Union[str, tuple[str, dict[str, Any]]]

_CPU = "CPUExecutionProvider"
_FUSED_SESSIONS: "weakref.WeakSet[ort.InferenceSession]" = weakref.WeakSet()


@dataclass(frozen=True)
class SessionSettings:
    """Session options chosen on purpose for a codec fed variable lengths.

    Attributes:
        intra_op_threads: threads inside one operator; 0 lets onnxruntime pick
            (one per physical core).
        inter_op_threads: threads across operators (sequential mode uses 1).
        graph_optimization: ``"all"``, ``"extended"``, ``"basic"`` or ``"disable"``.
        memory_pattern: onnxruntime's memory-pattern planner. Off by default:
            it plans for one input shape and re-plans (growing memory) when
            lengths vary, which is the normal case for a codec.
        cpu_arena: onnxruntime's CPU memory arena. On by default (fast
            re-use of buffers); turn off to return memory to the OS between calls.
        memory_reuse: onnxruntime's planned re-use of one tensor's buffer for a
            later tensor of the same shape (``enable_mem_reuse``). None (default):
            off for a decoder whose high-rate tail runs in time tiles (the
            manifest's ``graphs.decoder.tail_tiles`` > 1), on otherwise. The
            planner pairs tensors of equal shape across tiles and keeps each
            buffer from the first tile until the last, which defeats the tiling:
            a 43-frame run at 24 kHz held 134 MB of tensors with re-use, 35 MB
            without (68 MB for the untiled graph either way). The encoder keeps
            it (4% faster, 8 MB more).
        fused_snake: use the fused Snake kernel (:mod:`snac_onnx.kernels`).
            None (default): when it is installed and the session runs on the
            CPU execution provider only. True: require it (an error if it is
            not installed or another provider is asked for). False: never; the
            graphs then run Snake as plain ONNX nodes (same results within
            float rounding, about 2x slower on CPU).
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    memory_pattern: bool = False
    cpu_arena: bool = True
    memory_reuse: bool | None = None
    fused_snake: bool | None = None

    def to_session_options(self, tiled: bool = False) -> ort.SessionOptions:
        """onnxruntime options for these settings; ``tiled``: the graph runs part of itself in time tiles."""
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        if self.graph_optimization not in levels:
            raise ValueError(f"graph_optimization must be one of {sorted(levels)}, got {self.graph_optimization!r}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0 (0 lets onnxruntime choose)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = self.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = levels[self.graph_optimization]
        opts.enable_mem_pattern = self.memory_pattern
        opts.enable_cpu_mem_arena = self.cpu_arena
        opts.enable_mem_reuse = (not tiled) if self.memory_reuse is None else self.memory_reuse
        opts.log_severity_level = 3  # errors only: ORT's warnings about shape inference are noise here
        return opts


def normalize_providers(providers: ProviderSpec | Sequence[ProviderSpec] | None) -> list[ProviderSpec]:
    """Return providers as a list of names or ``(name, options)`` pairs; None means CPU.

    Raises:
        SnacOnnxError (ValueError): a malformed entry.
    """
    if providers is None:
        return [_CPU]
    if isinstance(providers, str) or (
        isinstance(providers, tuple) and len(providers) == 2 and isinstance(providers[1], dict)
    ):
        providers = [providers]  # type: ignore[list-item]
    out: list[ProviderSpec] = []
    for entry in providers:  # type: ignore[union-attr]
        if isinstance(entry, str):
            out.append(entry)
        elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict):
            out.append((entry[0], dict(entry[1])))
        else:
            raise _ProviderValueError(
                f"provider {entry!r} is not a name or a (name, options) pair; "
                f"available here: {ort.get_available_providers()}"
            )
    if not out:
        raise _ProviderValueError("providers is empty; pass None for CPU")
    return out


class _ProviderValueError(SnacOnnxError, ValueError):
    pass


def provider_names(providers: Sequence[ProviderSpec]) -> list[str]:
    """The names of normalized providers."""
    return [p if isinstance(p, str) else p[0] for p in providers]


def conflicting_runtime_packages() -> list[str]:
    """Installed onnxruntime distributions; more than one means they shadow each other."""
    from importlib import metadata  # here, not at import: about 3 MB of modules only this check needs
    names = ["onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-silicon"]
    found = []
    for name in names:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


class _KernelUnavailableError(SnacOnnxError, RuntimeError):
    pass


def uses_fused_snake(session: ort.InferenceSession) -> bool:
    """True when ``session`` was created by :func:`create_session` with the fused Snake kernel registered."""
    return session in _FUSED_SESSIONS


def fused_snake_library(wanted: bool | None, providers: Sequence[str]) -> Path | None:
    """The kernel library to register for a session on ``providers``, or None (see SessionSettings.fused_snake).

    Raises:
        SnacOnnxError (RuntimeError): ``wanted`` is True but the library is not
            installed or a provider other than CPU is asked for.
    """
    if wanted is False:
        return None
    cpu_only = all(name == _CPU for name in providers)
    library = snake_library()
    if wanted is True:
        if library is None:
            raise _KernelUnavailableError(
                "fused_snake=True, but the fused Snake kernel (snac_onnx._snake) is not installed: "
                "reinstall snac-onnx from source with a C compiler present, or pass fused_snake=None"
            )
        if not cpu_only:
            raise _KernelUnavailableError(
                f"fused_snake=True needs the CPU execution provider alone; providers are {list(providers)}"
            )
    return library if cpu_only else None


def create_session(
    path: Path,
    providers: Sequence[ProviderSpec],
    settings: SessionSettings,
    expected_inputs: Sequence[str],
    expected_outputs: Sequence[str],
    tiled: bool = False,
) -> ort.InferenceSession:
    """Create a session for ``path``, then check its providers and its input/output names.

    ``tiled``: the graph runs part of itself in time tiles (see ``SessionSettings.memory_reuse``).

    Raises:
        ModelNotFoundError: ``path`` does not exist.
        ModelFormatError: onnxruntime cannot load the file, or its graph names
            differ from ``expected_inputs`` / ``expected_outputs``.
    """
    if not path.is_file():
        raise ModelNotFoundError(f"graph file {str(path)!r} is missing; re-export or re-download the model")
    requested = provider_names(providers)
    available = ort.get_available_providers()
    usable = [p for p in providers if (p if isinstance(p, str) else p[0]) in available]
    if not usable:
        usable = [_CPU]
    options = settings.to_session_options(tiled)
    library = fused_snake_library(settings.fused_snake, provider_names(usable))
    if library is not None:
        try:
            options.register_custom_ops_library(str(library))
            set_snake_threads(library, settings.intra_op_threads)
        except Exception as exc:  # a damaged or foreign build of the library
            if settings.fused_snake:
                raise _KernelUnavailableError(f"could not load the fused Snake kernel {str(library)!r}: {exc}") from exc
            logger.warning("fused Snake kernel %s not loaded (%s); running unfused", library, exc)
            options = settings.to_session_options(tiled)
            library = None
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=usable)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelFormatError(
            f"onnxruntime could not load {str(path)!r}: {exc}. The file may be truncated or corrupt; "
            "re-export or re-download it"
        ) from exc
    if library is not None:
        _FUSED_SESSIONS.add(session)
    used = session.get_providers()
    missing = [name for name in requested if name not in used]
    if missing:
        hint = ""
        runtimes = conflicting_runtime_packages()
        if len(runtimes) > 1:
            hint = f" Several onnxruntime packages are installed ({', '.join(runtimes)}); keep only one."
        logger.warning(
            "requested execution provider(s) %s are not in use for %s; running on %s (available: %s).%s",
            missing,
            path.name,
            used,
            available,
            hint,
        )
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if sorted(inputs) != sorted(expected_inputs) or sorted(outputs) != sorted(expected_outputs):
        raise ModelFormatError(
            f"{str(path)!r} has inputs {inputs} and outputs {outputs}; the manifest promises "
            f"inputs {list(expected_inputs)} and outputs {list(expected_outputs)}. "
            "The graph and manifest come from different exports"
        )
    return session
