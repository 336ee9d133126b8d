"""Server settings: one pydantic-settings model, filled from flags, ``IKLLAMA_SERVER_*`` variables or a file.

Flag names follow ik's llama-server (``-c``, ``-np``, ``-t``, ``-ctk``, ...) so that a command line
written for it mostly works here; see :mod:`ikllama.cli.serve`.
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (BaseSettings, JsonConfigSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict,
                               TomlConfigSettingsSource)

__all__ = ["ServerSettings", "ModelSpec"]

# The config file of the settings being built (see ServerSettings.load): pydantic-settings picks its
# sources per class, and a context variable lets one class read a file chosen at run time.
_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("ikllama_server_config", default=None)


class ModelSpec(BaseModel):
    """One more model to serve (``models = [...]`` in the config file, or ``-m`` given several times)."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(None, description="GGUF file (None: the default model, SmolLM2-135M)")
    alias: str | None = Field(None, description="model id clients use (default: the file name)")
    kind: Literal["auto", "generate", "embed"] = Field(
        "auto", description="embed: only /v1/embeddings (no generation context); auto: embed when the GGUF "
        "declares a pooling type (embedding models do), else generate")
    n_ctx: int | None = Field(None, ge=16, description="default: the server's -c")
    parallel: int | None = Field(None, ge=1, le=256, description="default: the server's -np")
    chat_template: str | None = None

    @property
    def id(self) -> str:
        """The model id clients send: the alias, else the file name (``SmolLM2-135M`` for the default)."""
        return self.alias or (self.path.name if self.path is not None else "SmolLM2-135M")


_KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1", "q6_0", "q8_KV")


class ServerSettings(BaseSettings):
    """Everything ``ikllama serve`` can be told. Environment: ``IKLLAMA_SERVER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="IKLLAMA_SERVER_", extra="forbid")

    model: Path | None = Field(None, description="GGUF file to serve (default: SmolLM2-135M from PyPI, unless "
                               "`models` names others)")
    alias: str | None = Field(None, description="model id clients use (default: the file name)")
    models: list[ModelSpec] = Field(default_factory=list, description="more models, chosen by the request's "
                                    "`model` (the first one served answers requests that name none)")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_key: str | None = Field(None, description="require 'Authorization: Bearer KEY' on /v1 and native routes")
    n_ctx: int = Field(4096, ge=16, description="KV cells shared by all sequences")
    parallel: int = Field(4, ge=1, le=256, description="sequences decoded together (n_seq_max)")
    n_batch: int = Field(512, ge=16)
    n_ubatch: int = Field(512, ge=16)
    prefill_budget: int = Field(128, ge=1, description="prompt tokens per step while up to four other sequences "
                                "decode (with more, the share shrinks in proportion; alone, a prompt goes in n_ubatch "
                                "chunks); lower it for steadier inter-token latency, raise it for faster prompts "
                                "under load")
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
    cache_ram_mib: int = Field(2048, ge=0, description="host memory (MiB) for the states of finished sequences "
                               "evicted from the KV cache, restored when a prompt starts the same way (0: off)")
    seed: int | None = None
    prompt_lookup: int = Field(0, ge=0, le=64, description="draft up to this many tokens by prompt lookup for "
                               "requests that do not choose (0: only requests that ask for it)")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS ('*' for any); "
                                    "empty: no CORS headers")
    slot_save_path: Path | None = Field(None, description="directory for POST /slots/{id}?action=save|restore")
    metrics: bool = Field(True, description="serve /metrics (llama-server's --metrics; on by default here)")
    log_level: str = "info"

    @classmethod
    def load(cls, config_file: str | Path | None = None, **given: Any) -> ServerSettings:
        """Settings from ``given`` (the command line), then ``IKLLAMA_SERVER_*`` variables, then
        ``config_file`` (TOML or JSON, the same field names), then the defaults, in that order."""
        path = Path(config_file) if config_file else None
        if path is not None and not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        if path is not None and path.suffix.lower() not in (".toml", ".json"):
            raise ValueError(f"config file {path}: use a .toml or .json file")
        token = _config_file.set(path)
        try:
            return cls(**given)
        finally:
            _config_file.reset(token)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple:
        path = _config_file.get()
        if path is None:
            return init_settings, env_settings
        if path.suffix.lower() == ".toml":
            return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path)
        return init_settings, env_settings, JsonConfigSettingsSource(settings_cls, json_file=path)

    def served(self) -> list[ModelSpec]:
        """Every model this server serves, in order: ``model`` (or the default model) first unless only
        ``models`` are given."""
        out = list(self.models)
        if self.model is not None or not out:
            out.insert(0, ModelSpec(path=self.model, alias=self.alias, chat_template=self.chat_template))
        return out

    @model_validator(mode="after")
    def _distinct_ids(self) -> ServerSettings:
        seen: set[str] = set()
        for spec in self.served():
            if spec.id in seen:
                raise ValueError(f"two served models are both called {spec.id!r}: give each its own alias")
            seen.add(spec.id)
        return self

    @field_validator("cache_type_k", "cache_type_v")
    @classmethod
    def _kv_type(cls, value: str) -> str:
        if value.lower() not in {t.lower() for t in _KV_TYPES}:
            raise ValueError(f"KV cache type {value!r}: use one of {', '.join(_KV_TYPES)}")
        return value

