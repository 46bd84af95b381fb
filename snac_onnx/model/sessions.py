"""Loading: a model's graph files become checked onnxruntime sessions.

:func:`load_session` turns (location, manifest, role, precision, providers, settings, verify)
into a :class:`LoadedSession`: the graph fetched (hub models) and its sha256 checked against
the manifest, session options from :class:`SessionSettings` (or the caller's own
``onnxruntime.SessionOptions``), the fused Snake kernel registered where it applies, the
providers in use compared with those asked for, and the graph's input/output names compared
with the contract. :class:`ModelSessions` holds the sessions of one model, built lazily and
once per role, thread-safe.

Providers are given in onnxruntime's own forms: a name (``"CUDAExecutionProvider"``), a
``(name, options)`` pair, or a list of those. A requested provider that is not in use is
logged as a warning (a classic cause: ``onnxruntime`` and ``onnxruntime-gpu`` installed side
by side, which silently gives CPU only).

onnxruntime is imported on first use, not with this module, so ``import snac_onnx`` works
without it; :func:`onnxruntime` raises :class:`MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import functools
import logging
import platform
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import forks
from ..errors import (
    InvalidArgumentError,
    KernelUnavailableError,
    MissingDependencyError,
    ModelFormatError,
    ModelNotFoundError,
    ProviderError,
    StreamClosedError,
    install_hint,
)
from . import kernels
from .contract import check_graph
from .hub import ModelLocation
from .manifest import Manifest, sha256_file

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "ROLES",
    "ProviderSpec",
    "SessionSettings",
    "LoadedSession",
    "ModelSessions",
    "load_session",
    "check_threads",
    "onnxruntime",
    "normalize_providers",
    "provider_names",
    "conflicting_runtime_packages",
    "fused_snake_library",
]

logger = logging.getLogger(__name__)

ProviderSpec = str | tuple[str, dict[str, Any]]
ROLES = ("encoder", "decoder", "stream")

_CPU = "CPUExecutionProvider"
_LEVELS = ("all", "extended", "basic", "disable")
MAX_THREADS_PER_CPU = 8  # more intra-op threads than this per usable CPU only thrash (1000 on 2 cores hung)


def onnxruntime() -> Any:
    """The ``onnxruntime`` module, or :class:`MissingDependencyError` saying which extra installs it."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError(
            f"snac_onnx needs onnxruntime: {install_hint('cpu')}; or 'snac-onnx[gpu]' for onnxruntime-gpu "
            f"(never both) ({exc})"
        ) from exc
    return ort


def check_threads(name: str, value: object) -> int:
    """``value`` as a thread count (0: onnxruntime chooses), or :class:`InvalidArgumentError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int >= 0 (0 lets onnxruntime choose), got {value!r}")
    limit = MAX_THREADS_PER_CPU * kernels.default_threads()
    if not 0 <= value <= limit:
        raise InvalidArgumentError(
            f"{name}={value} is outside [0, {limit}]: this process may use {kernels.default_threads()} CPU(s), "
            f"and more than {MAX_THREADS_PER_CPU} threads per CPU only thrash; 0 lets onnxruntime choose"
        )
    return value


@dataclass(frozen=True)
class SessionSettings:
    """Session options chosen on purpose for a codec fed variable lengths; checked when made.

    Attributes:
        intra_op_threads: threads inside one operator; 0 lets onnxruntime pick (one per
            physical core). At most :data:`MAX_THREADS_PER_CPU` per usable CPU.
        inter_op_threads: threads across operators (sequential mode uses 1).
        graph_optimization: ``"all"``, ``"extended"``, ``"basic"`` or ``"disable"``.
        memory_pattern: onnxruntime's memory-pattern planner. Off by default: it plans for one
            input shape and re-plans (growing memory) when lengths vary, which is the normal
            case for a codec.
        cpu_arena: onnxruntime's CPU memory arena. On by default (fast re-use of buffers);
            turn off to return memory to the OS between calls.
        memory_reuse: onnxruntime's planned re-use of one tensor's buffer for a later tensor
            of the same shape (``enable_mem_reuse``). None (default): off for a decoder whose
            high-rate tail runs in time tiles (the manifest's ``graphs.decoder.tail_tiles`` >
            1), on otherwise. The planner pairs tensors of equal shape across tiles and keeps
            each buffer from the first tile until the last, which defeats the tiling (see the
            docs' exporting page). The encoder keeps it.
        fused_snake: use the fused Snake kernel (:mod:`snac_onnx.model.kernels`). None (default):
            as the environment variable ``SNAC_ONNX_FUSED_SNAKE`` says (``auto``, ``require`` or
            ``off``); unset or ``auto``: when it is installed and the session runs on the CPU
            execution provider only, with one WARNING per process when a CPU session runs
            without it. True: require it (an error if it is not installed or another provider
            is asked for). False: never, and no warning; the graphs then run Snake as plain ONNX
            nodes (same results within float rounding, slower on CPU).

    Raises:
        InvalidArgumentError: a value of the wrong type or outside its range.
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    memory_pattern: bool = False
    cpu_arena: bool = True
    memory_reuse: bool | None = None
    fused_snake: bool | None = None

    def __post_init__(self) -> None:
        check_threads("intra_op_threads", self.intra_op_threads)
        check_threads("inter_op_threads", self.inter_op_threads)
        if not isinstance(self.graph_optimization, str) or self.graph_optimization not in _LEVELS:
            raise InvalidArgumentError(
                f"graph_optimization must be one of {list(_LEVELS)}, got {self.graph_optimization!r}"
            )
        for name in ("memory_pattern", "cpu_arena"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("memory_reuse", "fused_snake"):
            if not (getattr(self, name) is None or isinstance(getattr(self, name), bool)):
                raise InvalidArgumentError(f"{name} must be None, True or False, got {getattr(self, name)!r}")

    def to_session_options(self, tiled: bool = False) -> ort.SessionOptions:
        """onnxruntime options for these settings; ``tiled``: the graph runs part of itself in time tiles."""
        ort = onnxruntime()
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
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
        ProviderError: a malformed entry, or an empty list.
    """
    if providers is None:
        return [_CPU]
    entries: Sequence[object]
    if isinstance(providers, str) or (
        isinstance(providers, tuple) and len(providers) == 2 and isinstance(providers[1], dict)
    ):
        entries = [providers]
    elif isinstance(providers, (list, tuple)):
        entries = providers
    else:
        raise ProviderError(
            f"providers must be a name, a (name, options) pair or a list of them, got {type(providers).__name__}"
        )
    out: list[ProviderSpec] = []
    for entry in entries:
        if isinstance(entry, str) and entry:
            out.append(entry)
        elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict):
            out.append((entry[0], dict(entry[1])))
        else:
            raise ProviderError(
                f"provider {entry!r} is not a name or a (name, options) pair, such as 'CPUExecutionProvider' or "
                "('CUDAExecutionProvider', {'device_id': 0})"
            )
    if not out:
        raise ProviderError("providers is empty; pass None for CPU")
    return out


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


def fused_snake_library(wanted: bool | None, providers: Sequence[str], *, warn: bool = True) -> Path | None:
    """The kernel library to register for a session on ``providers``, or None (see SessionSettings.fused_snake).

    ``wanted`` None defers to ``SNAC_ONNX_FUSED_SNAKE`` (:func:`kernels.requested_by_environment`). On the CPU
    provider alone, with the kernel wanted automatically but not installed, ``warn`` logs
    :func:`kernels.warn_unfused`'s warning (once per process).

    Raises:
        KernelUnavailableError: the kernel is required (``wanted`` True, or ``SNAC_ONNX_FUSED_SNAKE=require``)
            but the library is not installed or a provider other than CPU is asked for.
        InvalidArgumentError: ``SNAC_ONNX_FUSED_SNAKE`` has an unknown value.
    """
    source = "fused_snake=True"
    if wanted is None:
        wanted = kernels.requested_by_environment()
        source = f"{kernels.POLICY_ENV}=require"
    if wanted is False:
        return None
    cpu_only = all(name == _CPU for name in providers)
    library = kernels.snake_library()
    if wanted is True:
        if library is None:
            raise KernelUnavailableError(
                f"{source}, but the fused Snake kernel (snac_onnx._snake) is not installed: install a snac-onnx wheel "
                "built for this platform, or reinstall snac-onnx from source with a C compiler present "
                "(SNAC_ONNX_REQUIRE_KERNEL=1 makes that build fail loudly instead of skipping the kernel)"
            )
        if not cpu_only:
            raise KernelUnavailableError(
                f"{source} needs the CPU execution provider alone; providers are {list(providers)}"
            )
    elif library is None and cpu_only and warn:
        kernels.warn_unfused()
    return library if cpu_only else None


@dataclass(frozen=True)
class LoadedSession:
    """A checked onnxruntime session of one graph.

    Attributes:
        role: ``"encoder"`` or ``"decoder"``.
        session: the onnxruntime session.
        path: the graph file it was built from.
        fused_snake: whether the fused Snake kernel is registered for it.
        providers: the execution providers it runs on (``session.get_providers()``).
    """

    role: str
    session: ort.InferenceSession
    path: Path
    fused_snake: bool
    providers: tuple[str, ...]


_WITH_KERNELS: weakref.WeakSet[ort.SessionOptions] = weakref.WeakSet()  # options with the kernel library registered


def _options(
    settings: SessionSettings, session_options: ort.SessionOptions | None, tiled: bool, library: Path | None
) -> tuple[ort.SessionOptions, Path | None]:
    options = settings.to_session_options(tiled) if session_options is None else session_options
    if library is None:
        return options, None
    if options in _WITH_KERNELS:  # the caller's options, already used for another graph or codec
        return options, library
    try:
        options.register_custom_ops_library(str(library))  # twice on one object: "Domain already set"
        _WITH_KERNELS.add(options)
    except Exception as exc:
        required = settings.fused_snake if settings.fused_snake is not None else kernels.requested_by_environment()
        if required:
            raise KernelUnavailableError(f"could not load the fused Snake kernel {str(library)!r}: {exc}") from exc
        logger.warning("fused Snake kernel %s not loaded (%s); running unfused", library, exc)
        if session_options is not None:
            raise KernelUnavailableError(
                f"could not register the fused Snake kernel {str(library)!r} on the given session_options: {exc}; "
                "pass SessionSettings(fused_snake=False)"
            ) from exc
        return settings.to_session_options(tiled), None
    return options, library


def load_session(
    location: ModelLocation,
    manifest: Manifest,
    role: str,
    *,
    precision: str,
    providers: Sequence[ProviderSpec],
    settings: SessionSettings,
    verify: bool,
    session_options: ort.SessionOptions | None = None,
) -> LoadedSession:
    """Fetch, check and load ``role``'s graph; see the module docstring for what is checked.

    Raises:
        ModelNotFoundError: the graph file is missing (or cannot be fetched).
        ModelFormatError: its sha256 differs from the manifest's, onnxruntime cannot load it,
            or its input/output names differ from the contract.
        KernelUnavailableError: ``settings.fused_snake`` is True and the kernel cannot be used.
    """
    ort = onnxruntime()
    manifest.graph_io(role)  # a missing stream graph is named before anything is fetched
    entry = manifest.file_entry(role, precision)
    path = location.fetch(str(entry["path"]))
    if not path.is_file():
        raise ModelNotFoundError(f"graph file {str(path)!r} is missing; re-export or re-download the model")
    if verify:
        actual, expected = sha256_file(path), str(entry["sha256"])
        if actual != expected:
            raise ModelFormatError(
                f"{str(path)!r} has sha256 {actual[:16]}..., the manifest expects {expected[:16]}...: "
                "the file is corrupt or from another export; re-export or re-download the model"
            )
    requested = provider_names(providers)
    available = ort.get_available_providers()
    usable = [p for p in providers if (p if isinstance(p, str) else p[0]) in available] or [_CPU]
    tiled = role == "decoder" and manifest.decoder_tail_tiles > 1
    library = fused_snake_library(settings.fused_snake, provider_names(usable))
    options, library = _options(settings, session_options, tiled, library)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=usable)
    except Exception as exc:
        raise ModelFormatError(
            f"onnxruntime could not load {str(path)!r}: {exc}. The file may be truncated or corrupt; "
            "re-export or re-download it"
        ) from exc
    used = tuple(session.get_providers())
    missing = [name for name in requested if name not in used]
    if missing:
        runtimes = conflicting_runtime_packages()
        hint = (
            f" Several onnxruntime packages are installed ({', '.join(runtimes)}); keep only one."
            if len(runtimes) > 1
            else ""
        )
        logger.warning(
            "requested execution provider(s) %s are not in use for %s; running on %s (available: %s).%s",
            missing,
            path.name,
            list(used),
            available,
            hint,
        )
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    expected_inputs, expected_outputs = manifest.graph_io(role)
    if sorted(inputs) != sorted(expected_inputs) or sorted(outputs) != sorted(expected_outputs):
        raise ModelFormatError(
            f"{str(path)!r} has inputs {inputs} and outputs {outputs}; the manifest promises "
            f"inputs {list(expected_inputs)} and outputs {list(expected_outputs)}. "
            "The graph and manifest come from different exports"
        )
    check_graph(session, role, manifest.config, path, manifest.stream.step_frames if manifest.stream else None)
    if precision == "int8" and role != "encoder" and "CPUExecutionProvider" in used and not _int8_products_exact():
        logger.warning(
            "%s runs int8 on an x86 CPU without VNNI (AVX-512 VNNI or AVX-VNNI): there onnxruntime's uint8 x int8 "
            "products can saturate, so the audio may differ from the int8 export's; use precision='fp32' on this CPU",
            path.name,
        )
    logger.debug(
        "session %s (%s, %s): providers %s, fused Snake kernel %s, tiled tail %s",
        role,
        path.name,
        precision,
        list(used),
        "yes" if library is not None else "no",
        tiled,
    )
    return LoadedSession(role=role, session=session, path=path, fused_snake=library is not None, providers=used)


@functools.cache
def _int8_products_exact() -> bool:
    """False on an x86-64 Linux CPU without VNNI, where onnxruntime multiplies uint8 by int8 with 16-bit intermediate
    sums that can saturate; True elsewhere (with VNNI, or where this cannot be told)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), None)
    except OSError:
        return True
    return flags is None or "avx512_vnni" in flags or "avx_vnni" in flags


class ModelSessions:
    """The sessions of one model, one per role, built on first use (or by :meth:`load`) and once.

    Thread-safe and fork-safe: in a child forked after sessions were built, the next use builds
    them anew (the parent's are kept, never destroyed there; see :mod:`snac_onnx.forks`).
    Arguments as :func:`load_session`.
    """

    def __init__(
        self,
        location: ModelLocation,
        manifest: Manifest,
        *,
        precision: str,
        providers: Sequence[ProviderSpec],
        settings: SessionSettings,
        verify: bool,
        session_options: ort.SessionOptions | None = None,
    ) -> None:
        self.location = location
        self.manifest = manifest
        self.precision = precision
        self.providers = list(providers)
        self.settings = settings
        self.verify = verify
        self.session_options = session_options
        self._built: dict[str, LoadedSession] = {}
        self._lock = threading.Lock()
        self._closed = False
        forks.register(self)

    def after_fork_in_child(self) -> None:
        """Forget the parent's sessions (their onnxruntime threads are gone); rebuild on next use."""
        for loaded in self._built.values():
            forks.keep_forever(loaded.session)
        self._built = {}
        self._lock = threading.Lock()

    def get(self, role: str) -> LoadedSession:
        """The session of ``role``, built now if needed."""
        loaded = self._built.get(role)
        if loaded is not None:
            return loaded
        if role not in ROLES:
            raise InvalidArgumentError(f"role must be one of {list(ROLES)}, got {role!r}")
        with self._lock:
            if self._closed:
                raise StreamClosedError("this model was closed; create a new SnacOnnx")
            loaded = self._built.get(role)
            if loaded is None:
                loaded = load_session(
                    self.location,
                    self.manifest,
                    role,
                    precision=self.precision,
                    providers=self.providers,
                    settings=self.settings,
                    verify=self.verify,
                    session_options=self.session_options,
                )
                self._built[role] = loaded
        return loaded

    def run_options(self, *, shrink_arena: bool) -> ort.RunOptions:
        """``RunOptions`` for a call; ``shrink_arena``: give the CPU arena's unused memory back to the system at the
        end of the call (onnxruntime's ``memory.enable_memory_arena_shrinkage``)."""
        options = onnxruntime().RunOptions()
        if shrink_arena:
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return options

    @property
    def built(self) -> dict[str, LoadedSession]:
        """The sessions built so far, by role."""
        return dict(self._built)

    def predicted_fused_snake(self) -> bool:
        """Whether sessions built now would use the fused kernel (what :func:`fused_snake_library` says)."""
        try:
            library = fused_snake_library(self.settings.fused_snake, provider_names(self.providers), warn=False)
        except (KernelUnavailableError, InvalidArgumentError):
            return False
        return library is not None

    def close(self) -> None:
        """Drop the sessions (onnxruntime frees them when the last reference goes); later use is an error."""
        with self._lock:
            self._closed = True
            self._built = {}
