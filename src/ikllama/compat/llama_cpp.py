"""llama-cpp-python's ``llama_cpp.llama_cpp`` module: the C-level constants and the few C functions
that map one to one onto ik's API.

Enum constants (``LLAMA_POOLING_TYPE_MEAN``, ``LLAMA_ROPE_SCALING_TYPE_YARN``, ``LLAMA_SPLIT_MODE_LAYER``,
``LLAMA_VOCAB_TYPE_BPE``, ``LLAMA_FTYPE_*``, ``GGML_TYPE_*``, ...) come from ik's own headers, so
their values are ik's. Raw ctypes functions are not reproduced: asking for one raises
``AttributeError`` naming the ikllama call to use instead.
"""

from __future__ import annotations

from typing import Any

LLAMA_DEFAULT_SEED = 0xFFFFFFFF
LLAMA_TOKEN_NULL = -1
LLAMA_MAX_DEVICES = 16
LLAMA_FILE_MAGIC_GGLA = 0x67676C61
LLAMA_FILE_MAGIC_GGSN = 0x6767736E
LLAMA_FILE_MAGIC_GGSQ = 0x67677371
LLAMA_SESSION_MAGIC = LLAMA_FILE_MAGIC_GGSN
LLAMA_STATE_SEQ_MAGIC = LLAMA_FILE_MAGIC_GGSQ

_PREFIXES = ("LLAMA_", "GGML_")


def _lib() -> Any:
    from .._lib import lib

    return lib


def llama_backend_init(numa: bool = False) -> None:
    """Initialize ik's backend (``llama_backend_init``, once per process; ikllama also does it on first use)."""
    from .. import backend

    backend.ensure_init()


def llama_backend_free() -> None:
    """No-op: ik's backend lives for the process."""


def llama_max_devices() -> int:
    """``llama_max_devices``."""
    return int(_lib().llama_max_devices())


def llama_supports_mmap() -> bool:
    """``llama_supports_mmap``."""
    return bool(_lib().llama_supports_mmap())


def llama_supports_mlock() -> bool:
    """``llama_supports_mlock``."""
    return bool(_lib().llama_supports_mlock())


def llama_supports_gpu_offload() -> bool:
    """``llama_supports_gpu_offload``."""
    return bool(_lib().llama_supports_gpu_offload())


def llama_print_system_info() -> bytes:
    """``llama_print_system_info`` (bytes, as llama-cpp-python returns it)."""
    from .._lib import ffi

    return ffi.string(_lib().llama_print_system_info())


def llama_time_us() -> int:
    """``llama_time_us``."""
    return int(_lib().llama_time_us())


def llama_model_default_params() -> Any:
    """``llama_model_default_params``: a cffi struct (owned by Python, freed with it)."""
    from .._lib import ffi

    return ffi.new("struct llama_model_params *", _lib().llama_model_default_params())[0]


def llama_context_default_params() -> Any:
    """``llama_context_default_params``: a cffi struct (owned by Python, freed with it)."""
    from .._lib import ffi

    return ffi.new("struct llama_context_params *", _lib().llama_context_default_params())[0]


def _model_of(obj: Any) -> Any:
    from ..model import Model

    inner = getattr(obj, "_model", obj)
    inner = getattr(inner, "model", inner) if not isinstance(inner, Model) else inner
    if not isinstance(inner, Model):
        raise TypeError("pass a Llama, an _internals.LlamaModel or an ikllama.Model (there are no ctypes pointers "
                        "in ikllama.compat)")
    return inner


def llama_n_vocab(model: Any) -> int:
    """``llama_n_vocab`` of a Llama / LlamaModel / ikllama.Model."""
    return _model_of(model).n_vocab


llama_vocab_n_tokens = llama_n_vocab


def llama_n_ctx_train(model: Any) -> int:
    """``llama_n_ctx_train``."""
    return _model_of(model).n_ctx_train


def llama_n_embd(model: Any) -> int:
    """``llama_n_embd``."""
    return _model_of(model).n_embd


def llama_token_bos(model: Any) -> int:
    """``llama_token_bos`` (-1 if none)."""
    t = _model_of(model).token_bos
    return -1 if t is None else t


def llama_token_eos(model: Any) -> int:
    """``llama_token_eos`` (-1 if none)."""
    t = _model_of(model).token_eos
    return -1 if t is None else t


llama_vocab_bos = llama_token_bos
llama_vocab_eos = llama_token_eos


def llama_token_is_eog(model: Any, token: int) -> bool:
    """``llama_token_is_eog``."""
    return _model_of(model).is_eog(int(token))


llama_vocab_is_eog = llama_token_is_eog


def __getattr__(name: str) -> Any:
    if name.startswith(_PREFIXES) and name.isupper():
        lib = _lib()
        if hasattr(lib, name):
            value = int(getattr(lib, name))
            globals()[name] = value
            return value
        raise AttributeError(f"llama_cpp.{name}: ik_llama.cpp has no such constant")
    if name.startswith(("llama_", "ggml_", "mtmd_", "llava_")):
        raise AttributeError(f"llama_cpp.{name} is a raw ctypes function that ikllama.compat does not provide; use "
                             "Llama's methods, ikllama.Model / ikllama.Context (the typed API), or the cffi "
                             f"binding ikllama._lib.lib.{name} if ik has it")
    raise AttributeError(f"module 'llama_cpp.llama_cpp' has no attribute {name!r}")
