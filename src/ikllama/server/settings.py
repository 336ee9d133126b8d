"""Server settings: one pydantic-settings model, filled from flags, ``IKLLAMA_SERVER_*`` variables or a file.

Flag names follow ik's llama-server (``-c``, ``-np``, ``-t``, ``-ctk``, ...) so that a command line
written for it mostly works here; see :mod:`ikllama.cli.serve`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServerSettings"]

_KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1", "q6_0", "q8_KV")


class ServerSettings(BaseSettings):
    """Everything ``ikllama serve`` can be told. Environment: ``IKLLAMA_SERVER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="IKLLAMA_SERVER_", extra="forbid")

    model: Path | None = Field(None, description="GGUF file to serve (default: SmolLM2-135M from PyPI)")
    alias: str | None = Field(None, description="model id clients use (default: the file name)")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_key: str | None = Field(None, description="require 'Authorization: Bearer KEY' on /v1 and native routes")
    n_ctx: int = Field(4096, ge=16, description="KV cells shared by all sequences")
    parallel: int = Field(4, ge=1, le=256, description="sequences decoded together (n_seq_max)")
    n_batch: int = Field(512, ge=16)
    n_ubatch: int = Field(512, ge=16)
    prefill_budget: int = Field(128, ge=1, description="prompt tokens per step while other sequences decode "
                                "(alone, a prompt goes in n_ubatch chunks); lower it for steadier inter-token "
                                "latency, raise it for faster prompts under load")
    threads: int | None = Field(None, ge=1)
    threads_batch: int | None = Field(None, ge=1)
    flash_attn: bool = True
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    n_gpu_layers: int = 0
    chat_template: str | None = None
    embeddings: bool = Field(True, description="serve /v1/embeddings (a second small context, built on first use)")
    max_queue: int = Field(64, ge=0, description="requests waiting for a sequence before new ones get 429")
    max_tokens_default: int | None = Field(None, ge=1, description="max_tokens when a request gives none "
                                           "(default: until the context is full)")
    max_body_bytes: int = Field(16 << 20, ge=1024)
    idle_cache: bool = Field(True, description="keep finished sequences in the KV cache for prefix reuse")
    seed: int | None = None
    log_level: str = "info"

    @field_validator("cache_type_k", "cache_type_v")
    @classmethod
    def _kv_type(cls, value: str) -> str:
        if value.lower() not in {t.lower() for t in _KV_TYPES}:
            raise ValueError(f"KV cache type {value!r}: use one of {', '.join(_KV_TYPES)}")
        return value

