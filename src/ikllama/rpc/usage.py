"""Where a loaded model went: bytes of weights and KV cache per device (local, GPU or RPC peer)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._lib import ffi, lib

__all__ = ["DeviceUsage", "device_usage"]


@dataclass(frozen=True)
class DeviceUsage:
    """One device's share of a model: ``name`` as ik calls it (``CPU``, ``CUDA0``, ``RPC0[ip:port]``)."""

    name: str
    weights: int  #: bytes of weight buffers on the device
    kv: int  #: bytes of KV cache on the device, over the model's open contexts

    @property
    def remote(self) -> bool:
        """True for an RPC peer's device."""
        return self.name.startswith("RPC")

    @property
    def peer(self) -> str | None:
        """``ip:port`` of the peer, for an RPC device."""
        return self.name[self.name.index("[") + 1:-1] if self.remote else None


def _buffers(fn: Any, handle: Any, into: dict[str, list[int]], slot: int) -> None:
    name = ffi.new("const char **")
    size = ffi.new("size_t *")
    n = int(fn(handle, -1, ffi.NULL, ffi.NULL))
    for i in range(n):
        name[0] = ffi.NULL
        size[0] = 0
        fn(handle, i, name, size)
        if name[0] == ffi.NULL:
            continue
        key = ffi.string(name[0]).decode("utf-8", "replace")
        if key.startswith("CPU"):
            key = "CPU"  # CPU, CPU_Mapped, CPU_REPACK, ... are all host memory
        into.setdefault(key, [0, 0])[slot] += int(size[0])


def device_usage(model_handle: Any, context_handles: Iterable[Any]) -> list[DeviceUsage]:
    """Sum the model's weight buffers and its contexts' KV buffers per device.

    Wraps ``llama_model_buffer_info`` and ``llama_kv_cache_buffer_info`` (patch 0014), which read only
    local bookkeeping: no peer is contacted. The result is a snapshot; it owns no native memory.
    """
    acc: dict[str, list[int]] = {}
    _buffers(lib.llama_model_buffer_info, model_handle, acc, 0)
    for h in context_handles:
        _buffers(lib.llama_kv_cache_buffer_info, h, acc, 1)
    return [DeviceUsage(name, w, kv) for name, (w, kv) in acc.items()]
