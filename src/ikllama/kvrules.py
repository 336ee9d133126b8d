"""Which KV-cache configurations ik can run, checked before ``llama_init_from_model``.

ik aborts the process (``GGML_ABORT``) or returns NULL on several combinations; these rules turn
them into :class:`UnsupportedConfigError` with the fix in the message. Sources in the vendored
tree: ``src/llama.cpp`` (V quantization needs flash attention), ``ggml/src/iqk/iqk_flash_attn.cpp``
(the K/V pairs CPU flash attention supports), ``ggml/src/ggml.c`` (``ggml_hadamard`` needs a
power-of-two head size), ``ggml/src/ggml-cuda/hadamard.cu`` (64..512 on CUDA). The Vulkan rule is measured
(tests/test_vulkan.py, Mesa lavapipe): F16/BF16 caches decode as on the CPU; Q8_0, Q4_0, Q4_1 and IQ4_NL caches
decode wrong tokens after the prompt, and Q6_0 and Q8_KV crash the process.
"""

from __future__ import annotations

from dataclasses import dataclass

from .enums import GgmlType
from .errors import UnsupportedConfigError

__all__ = ["KvCacheSpec", "check_kv_config", "CPU_FA_TYPES", "VULKAN_KV_TYPES"]


@dataclass(frozen=True)
class KvCacheSpec:
    """The KV-cache part of a context configuration."""

    type_k: GgmlType = GgmlType.F16
    type_v: GgmlType = GgmlType.F16
    k_hadamard: bool = False
    v_hadamard: bool = False

    @property
    def effective_k_hadamard(self) -> bool:
        """ik silently drops the transform on an unquantized cache; so do we, visibly."""
        return self.k_hadamard and self.type_k.is_quantized

    @property
    def effective_v_hadamard(self) -> bool:
        return self.v_hadamard and self.type_v.is_quantized


#: Types CPU flash attention accepts for K and V (built with GGML_IQK_FA_ALL_QUANTS=ON); BF16 is checked apart.
CPU_FA_TYPES = frozenset({GgmlType.F16, GgmlType.Q8_0, GgmlType.Q8_KV, GgmlType.Q6_0, GgmlType.Q4_0, GgmlType.Q4_1,
                          GgmlType.IQ4_NL})

#: KV-cache types ik's Vulkan backend computes correctly when attention runs on the GPU.
VULKAN_KV_TYPES = frozenset({GgmlType.F16, GgmlType.BF16})


def _is_pow2(n: int) -> bool:
    return n > 1 and (n & (n - 1)) == 0


def check_kv_config(kv: KvCacheSpec, *, flash_attn: bool, head_dim_k: int, head_dim_v: int,
                    cpu_attention: bool, has_avx512_bf16: bool, cuda: bool = False, vulkan: bool = False) -> None:
    """Raise UnsupportedConfigError for a configuration ik would refuse or abort on."""
    k, v = kv.type_k, kv.type_v
    if vulkan and not cpu_attention and not (k in VULKAN_KV_TYPES and v in VULKAN_KV_TYPES):
        raise UnsupportedConfigError(
            f"K={k.name}/V={v.name}: ik's Vulkan backend runs only F16 or BF16 KV caches (quantized caches decode "
            "wrong tokens or crash). Fix: use an F16 cache, or keep attention on the CPU (offload_kqv off).")
    if v == GgmlType.Q8_KV:
        raise UnsupportedConfigError(
            "V cache type Q8_KV aborts ik's graph (a ggml view assertion on the V cache, measured on CPU); "
            "Q8_KV works for K only. Fix: use Q8_0 for V.")
    if v not in (GgmlType.F16, GgmlType.BF16) and not flash_attn:
        raise UnsupportedConfigError(
            f"V cache type {v.name} needs flash attention (ik only reads an F16/BF16 V cache without it). "
            "Fix: with_flash_attn(True), or an F16 V cache.")
    if flash_attn and cpu_attention:
        if k == GgmlType.BF16 or v == GgmlType.BF16:
            if not (k == v == GgmlType.BF16 and has_avx512_bf16):
                raise UnsupportedConfigError(
                    f"K={k.name}/V={v.name}: CPU flash attention takes BF16 only when K and V are both BF16 "
                    "and the build has AVX512-BF16. Fix: use F16, or turn flash attention off.")
        else:
            for which, t in (("K", k), ("V", v)):
                if t not in CPU_FA_TYPES:
                    names = ", ".join(sorted(x.name for x in CPU_FA_TYPES))
                    raise UnsupportedConfigError(
                        f"{which} cache type {t.name} is not supported by ik's CPU flash attention "
                        f"(it aborts the process). Supported: {names}. Fix: pick one of those"
                        + (", or turn flash attention off (K only)." if which == "K" else "."))
    for which, on, dim in (("K", kv.effective_k_hadamard, head_dim_k), ("V", kv.effective_v_hadamard, head_dim_v)):
        if not on:
            continue
        if not _is_pow2(dim):
            raise UnsupportedConfigError(
                f"Hadamard transform on the {which} cache needs a power-of-two head size; this model's is {dim}. "
                f"Fix: switch the {which}-cache Hadamard off (e.g. KvType.RAW_Q8 instead of KvType.Q8).")
        if cuda and not cpu_attention and not 64 <= dim <= 512:
            raise UnsupportedConfigError(
                f"CUDA's Hadamard kernel takes head sizes 64..512; this model's {which} head size is {dim}.")
    if kv.effective_v_hadamard and not flash_attn:
        raise UnsupportedConfigError("the V-cache Hadamard transform is only undone by flash attention. "
                                     "Fix: with_flash_attn(True).")
