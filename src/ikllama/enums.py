"""Public enums. Values come from the compiled headers (``lib``), so they track the vendored tree."""

from __future__ import annotations

import enum

from ._lib import lib

__all__ = ["SplitMode", "KvType", "GgmlType", "EditLevel", "PoolingType", "RopeScalingType", "AttentionType"]


class SplitMode(enum.IntEnum):
    """How a model is spread over several GPUs (ik's numbering, which differs from mainline's).

    ``ROW`` and ``TENSOR`` are the slm_ikllama names of ``ATTN`` and ``GRAPH``.
    """

    NONE = lib.LLAMA_SPLIT_MODE_NONE    #: one GPU (``main_gpu``)
    LAYER = lib.LLAMA_SPLIT_MODE_LAYER  #: whole layers and their KV per GPU (default)
    ATTN = lib.LLAMA_SPLIT_MODE_ATTN    #: attention row-split over all GPUs, FFN per GPU
    GRAPH = lib.LLAMA_SPLIT_MODE_GRAPH  #: tensor parallel: attention, FFN and KV split
    ROW = lib.LLAMA_SPLIT_MODE_ATTN
    TENSOR = lib.LLAMA_SPLIT_MODE_GRAPH


class GgmlType(enum.IntEnum):
    """The ggml tensor types that ik accepts for the KV cache."""

    F32 = lib.GGML_TYPE_F32
    F16 = lib.GGML_TYPE_F16
    BF16 = lib.GGML_TYPE_BF16
    Q8_0 = lib.GGML_TYPE_Q8_0
    Q6_0 = lib.GGML_TYPE_Q6_0
    Q5_0 = lib.GGML_TYPE_Q5_0
    Q5_1 = lib.GGML_TYPE_Q5_1
    Q4_0 = lib.GGML_TYPE_Q4_0
    Q4_1 = lib.GGML_TYPE_Q4_1
    IQ4_NL = lib.GGML_TYPE_IQ4_NL
    Q8_KV = lib.GGML_TYPE_Q8_KV

    @property
    def is_quantized(self) -> bool:
        return self not in (GgmlType.F32, GgmlType.F16, GgmlType.BF16)


class KvType(enum.Enum):
    """slm_inference's KV-cache kinds, mapped as slm_ikllama maps them.

    Q4/Q5/Q6/Q8 select Q4_0/Q5_0/Q6_0/Q8_0 *with* the Hadamard transform on that cache; RAW_Q8 is
    Q8_0 without it; F16 and F32 are unrotated.
    """

    Q4 = (GgmlType.Q4_0, True)
    Q5 = (GgmlType.Q5_0, True)
    Q6 = (GgmlType.Q6_0, True)
    Q8 = (GgmlType.Q8_0, True)
    RAW_Q8 = (GgmlType.Q8_0, False)
    F16 = (GgmlType.F16, False)
    F32 = (GgmlType.F32, False)

    @property
    def ggml_type(self) -> GgmlType:
        return self.value[0]

    @property
    def hadamard(self) -> bool:
        return self.value[1]


class EditLevel(enum.IntEnum):
    """How a context can edit its KV cache, ordered as slm_inference orders them."""

    DUMP_RESTORE = 0  #: only whole-state dump/restore
    CUT = 1           #: can remove a range from the middle
    TRUNCATE = 2      #: can also roll back to any position (every edit supported)


class PoolingType(enum.IntEnum):
    UNSPECIFIED = lib.LLAMA_POOLING_TYPE_UNSPECIFIED
    NONE = lib.LLAMA_POOLING_TYPE_NONE
    MEAN = lib.LLAMA_POOLING_TYPE_MEAN
    CLS = lib.LLAMA_POOLING_TYPE_CLS
    LAST = lib.LLAMA_POOLING_TYPE_LAST


class RopeScalingType(enum.IntEnum):
    UNSPECIFIED = lib.LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED
    NONE = lib.LLAMA_ROPE_SCALING_TYPE_NONE
    LINEAR = lib.LLAMA_ROPE_SCALING_TYPE_LINEAR
    YARN = lib.LLAMA_ROPE_SCALING_TYPE_YARN
    LONGROPE = lib.LLAMA_ROPE_SCALING_TYPE_LONGROPE


class AttentionType(enum.IntEnum):
    UNSPECIFIED = lib.LLAMA_ATTENTION_TYPE_UNSPECIFIED
    CAUSAL = lib.LLAMA_ATTENTION_TYPE_CAUSAL
    NON_CAUSAL = lib.LLAMA_ATTENTION_TYPE_NON_CAUSAL
