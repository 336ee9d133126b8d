"""``Builder``: configures a context on a model (``llama_context_params``) and builds it.

Every ``with_*`` method returns a new Builder, so a half-configured builder can be reused.
``build()`` validates the whole configuration against what ik would abort on, then calls
``llama_init_from_model``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .enums import AttentionType, GgmlType, KvType, PoolingType, RopeScalingType
from .kvrules import KvCacheSpec
from .sampling import SamplerConfig

if TYPE_CHECKING:
    from .context import Context
    from .model import Model

__all__ = ["Builder", "ContextConfig", "default_threads"]

MAX_SEQUENCES = 256


def default_threads() -> int:
    """Threads for a new context: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ContextConfig:
    """Everything a context is built from. Built by :class:`Builder`; exposed as ``Context.config``."""

    n_ctx: int = 4096
    n_batch: int = 2048
    n_ubatch: int = 512
    n_seq_max: int = 1
    n_threads: int = field(default_factory=default_threads)
    n_threads_batch: int | None = None
    flash_attn: bool = True
    embeddings: bool = False
    pooling: PoolingType = PoolingType.UNSPECIFIED
    attention: AttentionType = AttentionType.UNSPECIFIED
    rope_scaling: RopeScalingType = RopeScalingType.UNSPECIFIED
    rope_freq_base: float = 0.0
    rope_freq_scale: float = 0.0
    yarn_ext_factor: float = -1.0
    yarn_attn_factor: float = -1.0
    yarn_beta_fast: float = -1.0
    yarn_beta_slow: float = -1.0
    yarn_orig_ctx: int = 0
    seed: int | None = None
    mla_attn: int = 3
    fused_moe: bool = True
    attn_max_batch: int = 0
    offload_kqv: bool = True
    kv: KvCacheSpec = KvCacheSpec()
    sampling: SamplerConfig | None = None
    mtp: bool = False
    mtp_op: int = 0  # llama_mtp_op_type of an MTP-side context (ikllama.mtp builds those)

    @property
    def sampling_config(self) -> SamplerConfig | None:
        """``sampling`` with the context's seed filled in where it names none."""
        if self.sampling is None or self.sampling.seed is not None or self.seed is None:
            return self.sampling
        return dataclasses.replace(self.sampling, seed=self.seed)

    def validate(self) -> None:
        """Raise ValueError naming the field that is out of range."""
        if not 1 <= self.n_ctx <= 1 << 24:
            raise ValueError(f"n_ctx={self.n_ctx}: must be 1..{1 << 24}")
        if not 1 <= self.n_batch <= 1 << 20:
            raise ValueError(f"n_batch={self.n_batch}: must be >= 1")
        if not 1 <= self.n_ubatch <= self.n_batch:
            raise ValueError(f"n_ubatch={self.n_ubatch}: must be 1..n_batch ({self.n_batch})")
        if not 1 <= self.n_seq_max <= min(MAX_SEQUENCES, self.n_ctx):
            raise ValueError(f"n_seq_max={self.n_seq_max}: must be 1..{min(MAX_SEQUENCES, self.n_ctx)} "
                             "(and at most n_ctx)")
        if not 1 <= self.n_threads <= 1024:
            raise ValueError(f"n_threads={self.n_threads}: must be 1..1024")
        if self.n_threads_batch is not None and not 1 <= self.n_threads_batch <= 1024:
            raise ValueError(f"n_threads_batch={self.n_threads_batch}: must be 1..1024")
        if not 0 <= self.mla_attn <= 3:
            raise ValueError(f"mla_attn={self.mla_attn}: must be 0..3")
        if self.attn_max_batch < 0:
            raise ValueError(f"attn_max_batch={self.attn_max_batch}: must be >= 0 (0 = no limit)")
        if self.seed is not None and not 0 <= self.seed < 0xFFFFFFFF:
            raise ValueError(f"seed={self.seed}: must be 0..2**32-2 (None picks one from the clock)")
        for name in ("type_k", "type_v"):
            if not isinstance(getattr(self.kv, name), GgmlType):
                raise ValueError(f"{name} must be an ikllama.GgmlType, not {getattr(self.kv, name)!r}")
        if self.sampling is not None:
            if not isinstance(self.sampling, SamplerConfig):
                raise ValueError(f"sampling must be an ikllama.SamplerConfig, not {type(self.sampling).__name__}")
            self.sampling.validate()


class Builder:
    """Fluent configuration of a :class:`Context` on ``model`` (slm_inference's ContextBuilder)."""

    def __init__(self, model: Model, config: ContextConfig | None = None):
        self.model = model
        self.config = config or ContextConfig()

    def _with(self, **changes: object) -> Builder:
        return Builder(self.model, dataclasses.replace(self.config, **changes))

    def with_n_ctx(self, n_ctx: int) -> Builder:
        """Context length in tokens (shared by all sequences)."""
        return self._with(n_ctx=n_ctx)

    def with_n_batch(self, n_batch: int) -> Builder:
        """Most tokens one ``decode`` accepts."""
        return self._with(n_batch=n_batch, n_ubatch=min(self.config.n_ubatch, n_batch))

    def with_n_ubatch(self, n_ubatch: int) -> Builder:
        """Physical micro-batch size ik splits a batch into."""
        return self._with(n_ubatch=n_ubatch)

    def with_n_seq_max(self, n_seq_max: int) -> Builder:
        """Number of parallel sequences (fork ids 0..n_seq_max-1)."""
        return self._with(n_seq_max=n_seq_max)

    def with_threads(self, n_threads: int, n_threads_batch: int | None = None) -> Builder:
        """Threads for generation and (optionally different) for prompt batches."""
        return self._with(n_threads=n_threads, n_threads_batch=n_threads_batch)

    def with_flash_attn(self, on: bool = True) -> Builder:
        return self._with(flash_attn=on)

    def with_embeddings(self, on: bool = True) -> Builder:
        return self._with(embeddings=on)

    def with_pooling(self, pooling: PoolingType) -> Builder:
        return self._with(pooling=PoolingType(pooling))

    def with_attention(self, attention: AttentionType) -> Builder:
        return self._with(attention=AttentionType(attention))

    def with_rope(self, freq_base: float = 0.0, freq_scale: float = 0.0,
                  scaling: RopeScalingType = RopeScalingType.UNSPECIFIED) -> Builder:
        """RoPE overrides; 0 / UNSPECIFIED keep the model's values."""
        return self._with(rope_freq_base=freq_base, rope_freq_scale=freq_scale, rope_scaling=RopeScalingType(scaling))

    def with_yarn(self, ext_factor: float = -1.0, attn_factor: float = -1.0, beta_fast: float = -1.0,
                  beta_slow: float = -1.0, orig_ctx: int = 0) -> Builder:
        """YaRN overrides; negative / 0 keep the model's values."""
        return self._with(yarn_ext_factor=ext_factor, yarn_attn_factor=attn_factor, yarn_beta_fast=beta_fast,
                          yarn_beta_slow=beta_slow, yarn_orig_ctx=orig_ctx)

    def with_seed(self, seed: int | None) -> Builder:
        """Seed of the context's RNG (used by sampling); None draws one from the clock."""
        return self._with(seed=seed)

    def with_mla_attn(self, mla_attn: int) -> Builder:
        """ik's MLA implementation (0-3) for DeepSeek-style models; ignored elsewhere."""
        return self._with(mla_attn=mla_attn)

    def with_fused_moe(self, on: bool = True) -> Builder:
        return self._with(fused_moe=on)

    def with_attn_max_batch(self, n: int) -> Builder:
        """Cap the attention batch (ik's ``-amb``) to bound compute memory; 0 = no cap."""
        return self._with(attn_max_batch=n)

    def with_offload_kqv(self, on: bool = True) -> Builder:
        return self._with(offload_kqv=on)

    def with_sampler(self, temperature: float, top_k: int, top_p: float) -> Builder:
        """slm_ikllama's sampler: greedy when temperature <= 0, else top-k -> top-p -> temperature
        (the C sampler with nothing else on; the seed is ``with_seed``'s)."""
        return self._with(sampling=SamplerConfig(temperature=temperature, top_k=top_k, top_p=top_p, min_p=0.0))

    def with_sampling(self, config: SamplerConfig) -> Builder:
        """The full C sampling pipeline for ``Context.sample`` (see :class:`ikllama.SamplerConfig`)."""
        if not isinstance(config, SamplerConfig):
            raise ValueError(f"with_sampling takes an ikllama.SamplerConfig, not {type(config).__name__}")
        config.validate()
        return self._with(sampling=config)

    def with_gen_type_kv(self, k: KvType, v: KvType) -> Builder:
        """KV-cache types as slm_ikllama maps them (Q4/Q5/Q6/Q8 switch the Hadamard transform on)."""
        if not isinstance(k, KvType) or not isinstance(v, KvType):
            raise ValueError("with_gen_type_kv takes ikllama.KvType values (use with_kv_cache for ggml types)")
        return self._with(kv=KvCacheSpec(k.ggml_type, v.ggml_type, k.hadamard, v.hadamard))

    def with_kv_cache(self, type_k: GgmlType = GgmlType.F16, type_v: GgmlType = GgmlType.F16,
                      k_hadamard: bool = False, v_hadamard: bool = False) -> Builder:
        """Full control of the KV cache: any ik KV type and each Hadamard switch."""
        return self._with(kv=KvCacheSpec(GgmlType(type_k), GgmlType(type_v), k_hadamard, v_hadamard))

    def with_mtp(self, on: bool = True) -> Builder:
        """Main context of an MTP pair (the model must be loaded with ``ModelConfig(mtp=True)``)."""
        return self._with(mtp=on)

    def build(self) -> Context:
        """Create the context (wraps ``llama_init_from_model``); close it or use ``with``."""
        from .context import Context

        return Context._create(self.model, self.config)
