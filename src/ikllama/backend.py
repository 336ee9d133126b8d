"""Process-wide backend set-up and system information.

``ensure_init()`` runs ``llama_backend_init`` exactly once, thread-safely, after routing the native
log into ``logging``. Every public entry point that reaches ik calls it first; importing
``ikllama`` alone does nothing.
"""

from __future__ import annotations

import platform
import threading
from dataclasses import asdict, dataclass, field

from . import _log
from ._lib import build_info, ffi, lib, selection
from .devices.plugins import DeviceInfo, PluginInfo
from ._version import __version__

__all__ = ["ensure_init", "system_info", "SystemInfo", "DeviceInfo", "PluginInfo"]

_init_lock = threading.Lock()
_initialized = False


def ensure_init() -> None:
    """Initialize ik's backend once per process (wraps ``llama_backend_init``)."""
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if not _initialized:
            _log.install()
            lib.llama_backend_init()
            _initialized = True


_CPU_PROBES = ("avx", "avx_vnni", "avx2", "avx512", "avx512_vbmi", "avx512_vnni", "avx512_bf16", "fma", "f16c",
               "fp16_va", "sse3", "ssse3", "neon", "sve", "arm_fma", "matmul_int8")


@dataclass(frozen=True)
class SystemInfo:
    """What this ikllama build is and what it can run (see :func:`system_info`).

    ``device`` is the native build in use (``cpu``, ``vulkan``, ``cuda12``, ``cuda13``, or ``metal`` for a macOS
    build), chosen by ``IKLLAMA_DEVICE``; ``plugins`` lists the installed backend plugins and what became of
    each; ``gpu_devices`` the GPUs the chosen build sees, with their memory.
    """

    version: str
    upstream_commit: str
    build_type: str
    backends: tuple[str, ...]
    rpc: bool
    gpu_offload: bool
    max_devices: int
    mmap: bool
    mlock: bool
    cpu_features: dict[str, bool] = field(default_factory=dict)
    native_system_info: str = ""
    machine: str = ""
    device: str = "cpu"
    plugins: tuple[PluginInfo, ...] = ()
    gpu_devices: tuple[DeviceInfo, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


def system_info() -> SystemInfo:
    """Describe the build and the machine (wraps ``llama_print_system_info`` and ``ggml_cpu_has_*``).

    The first call may choose the native build (see ``IKLLAMA_DEVICE``); the result is a fresh snapshot.
    """
    ensure_init()
    stamp = build_info()
    chosen = selection()
    features = {name: bool(getattr(lib, f"ggml_cpu_has_{name}")()) for name in _CPU_PROBES}
    return SystemInfo(
        version=__version__,
        upstream_commit=stamp["upstream_commit"],
        build_type=stamp["build_type"],
        backends=tuple(stamp["backends"].split(",")),
        rpc=bool(lib.ggml_cpu_has_rpc()),
        gpu_offload=bool(lib.llama_supports_gpu_offload()),
        max_devices=int(lib.llama_max_devices()),
        mmap=bool(lib.llama_supports_mmap()),
        mlock=bool(lib.llama_supports_mlock()),
        cpu_features=features,
        native_system_info=ffi.string(lib.llama_print_system_info()).decode().strip(),
        machine=platform.machine(),
        device=chosen.device,
        plugins=chosen.plugins,
        gpu_devices=chosen.gpu_devices,
    )
