"""KV-cache sizes from ggml's block geometry, as ``llama_kv_cache_init`` lays the cache out.

Per layer ik allocates K as ``n_head_kv * kv_size`` rows of ``head_dim_k`` values and V as one
row of ``n_head_kv * head_dim_v * kv_size`` values, each in its ggml type; ``kv_size`` is n_ctx
padded to 256 with flash attention and to 32 without. NextN (MTP) layers get a cache only when
the model was loaded with ``mtp=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._lib import lib
from .enums import GgmlType

if TYPE_CHECKING:
    from .model import Model

__all__ = ["KvCacheSize", "kv_cache_bytes", "bytes_per_element", "padded_n_ctx"]

_MIB = 1024 * 1024
_SELF_SIZE = re.compile(r"KV self size\s*=\s*([\d.]+) MiB, K \((\w+)\):\s*([\d.]+) MiB, V \((\w+)\):\s*([\d.]+) MiB")


@dataclass(frozen=True)
class KvCacheSize:
    """Bytes of the K and V caches."""

    k_bytes: int
    v_bytes: int

    @property
    def total(self) -> int:
        return self.k_bytes + self.v_bytes

    @property
    def mib(self) -> float:
        return self.total / _MIB


def bytes_per_element(t: GgmlType) -> float:
    """Storage per value, block overhead included (wraps ``ggml_type_size`` / ``ggml_blck_size``)."""
    return lib.ggml_type_size(int(t)) / lib.ggml_blck_size(int(t))


def padded_n_ctx(n_ctx: int, flash_attn: bool = True) -> int:
    pad = 256 if flash_attn else 32
    return (n_ctx + pad - 1) // pad * pad


def kv_cache_bytes(model: Model, n_ctx: int, type_k: GgmlType = GgmlType.F16, type_v: GgmlType = GgmlType.F16,
                   flash_attn: bool = True) -> KvCacheSize:
    """Exact KV-cache size of a context with ``n_ctx`` cells (before padding) on ``model``.

    Uses ``ggml_row_size`` for the block geometry of each type, as ik's allocation does.
    """
    kv_size = padded_n_ctx(n_ctx, flash_attn)
    n_layer = model.n_layer - (0 if model.config.mtp else model.n_nextn_layer)
    n_head_kv, dk, dv = model.n_head_kv, model.head_dim, model.head_dim_v
    k_layer = lib.ggml_row_size(int(type_k), dk) * n_head_kv * kv_size
    v_layer = lib.ggml_row_size(int(type_v), n_head_kv * dv * kv_size)
    return KvCacheSize(int(k_layer) * n_layer, int(v_layer) * n_layer)


def parse_measured(lines: list[str]) -> KvCacheSize | None:
    """The sizes ik reports for a live cache ("KV self size = …"), to 0.01 MiB."""
    for line in lines:
        m = _SELF_SIZE.search(line)
        if m:
            return KvCacheSize(round(float(m.group(3)) * _MIB), round(float(m.group(5)) * _MIB))
    return None
