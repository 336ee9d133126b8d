"""ikllama: the Python way to run ik_llama.cpp.

Importing this package has no side effects: the native backend is initialized, and its log routed
to ``logging.getLogger("ikllama.native")``, on first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__

logging.getLogger("ikllama").addHandler(logging.NullHandler())

# Public names, resolved lazily so that `import ikllama` loads nothing native.
_EXPORTS = {
    "ModelConfig": "config",
    "Model": "model",
    "Builder": "builder",
    "ContextConfig": "builder",
    "Context": "context",
    "Timings": "context",
    "Batch": "batch",
    "Token": "batch",
    "Pos": "batch",
    "SplitMode": "enums",
    "KvType": "enums",
    "GgmlType": "enums",
    "EditLevel": "enums",
    "PoolingType": "enums",
    "RopeScalingType": "enums",
    "AttentionType": "enums",
    "system_info": "backend",
    "SystemInfo": "backend",
    "default_model": "models",
    "kv_cache_bytes": "kvcache",
    "KvCacheSize": "kvcache",
    "perplexity": "perplexity",
    "PerplexityResult": "perplexity",
    "SamplerConfig": "sampling",
    "Sampler": "sampling",
    "GrammarError": "sampling",
    "SimpleInference": "inference",
    "Checkpoint": "inference",
    "TextStream": "inference",
    "Answer": "answer",
    "AnswerStatus": "answer",
    "Brake": "answer",
    "StopStrings": "answer",
    "token_limit": "answer",
    "Role": "chat",
    "Message": "chat",
    "Formatter": "chat",
    "DynamicFormatter": "chat",
    "split_thinking": "chat",
    "SimpleOracle": "oracle",
    "LLM": "llm",
    "Embedder": "embeddings",
    "embed": "embeddings",
    "json_schema_to_gbnf": "json_grammar",
    "JSON_GBNF": "json_grammar",
    "MtpSession": "mtp",
    "DraftModelSession": "speculative",
    "PromptLookupSession": "speculative",
    "SpeculativeStats": "speculative",
    "IncrementalPrefill": "incremental",
    "IkLlamaError": "errors",
    "ModelLoadError": "errors",
    "ModelFetchError": "errors",
    "ContextError": "errors",
    "DecodeError": "errors",
    "KvCacheFullError": "errors",
    "DecodeAbortedError": "errors",
    "TokenizationError": "errors",
    "TemplateError": "errors",
    "StateError": "errors",
    "ClosedError": "errors",
    "UnsupportedConfigError": "errors",
    "ConcurrentUseError": "errors",
    "RpcError": "errors",
    "RpcPeerError": "errors",
    "RpcConnectionLostError": "errors",
    "DeviceError": "errors",
    "check_gguf": "modelfile.check",
    "GGUFSummary": "modelfile.check",
    "GGUFFormatError": "modelfile.rules",
    "FileType": "modelfile.quantize",
    "QuantizeError": "modelfile.quantize",
    "QuantizeResult": "modelfile.quantize",
    "quantize": "modelfile.quantize",
    "inspect": "modelfile.info",
    "ModelInfo": "modelfile.info",
    "GGUFReadError": "modelfile.info",
    "split_gguf": "modelfile.split",
    "merge_gguf": "modelfile.split",
    "hf_file": "modelfile.hf",
    "LoraAdapter": "modelfile.lora",
    "LoraError": "modelfile.lora",
    "load_lora": "modelfile.lora",
    "set_lora": "modelfile.lora",
    "remove_lora": "modelfile.lora",
    "clear_loras": "modelfile.lora",
    "load_control_vector": "modelfile.lora",
    "set_control_vector": "modelfile.lora",
    "clear_control_vector": "modelfile.lora",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ikllama' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from .answer import Answer, AnswerStatus, Brake, StopStrings, token_limit
    from .backend import SystemInfo, system_info
    from .chat import DynamicFormatter, Formatter, Message, Role, split_thinking
    from .embeddings import Embedder, embed
    from .inference import Checkpoint, SimpleInference, TextStream
    from .json_grammar import JSON_GBNF, json_schema_to_gbnf
    from .incremental import IncrementalPrefill
    from .llm import LLM
    from .mtp import MtpSession
    from .speculative import DraftModelSession, PromptLookupSession, SpeculativeStats
    from .oracle import SimpleOracle
    from .sampling import GrammarError, Sampler, SamplerConfig
    from .batch import Batch, Pos, Token
    from .builder import Builder, ContextConfig
    from .config import ModelConfig
    from .context import Context, Timings
    from .enums import AttentionType, EditLevel, GgmlType, KvType, PoolingType, RopeScalingType, SplitMode
    from .errors import (ClosedError, ConcurrentUseError, ContextError, DecodeAbortedError, DecodeError, DeviceError,
                         IkLlamaError, KvCacheFullError, ModelFetchError, ModelLoadError, StateError,
                         TemplateError, TokenizationError, UnsupportedConfigError)
    from .errors import RpcConnectionLostError, RpcError, RpcPeerError
    from .kvcache import KvCacheSize, kv_cache_bytes
    from .model import Model
    from .models import default_model
    from .perplexity import PerplexityResult, perplexity
    from .modelfile.check import GGUFSummary, check_gguf
    from .modelfile.info import GGUFReadError, ModelInfo, inspect
    from .modelfile.rules import GGUFFormatError
    from .modelfile.hf import hf_file
    from .modelfile.lora import (LoraAdapter, LoraError, clear_control_vector, clear_loras, load_control_vector,
                                 load_lora, remove_lora, set_control_vector, set_lora)
    from .modelfile.quantize import FileType, QuantizeError, QuantizeResult, quantize
    from .modelfile.split import merge_gguf, split_gguf
