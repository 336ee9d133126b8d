"""``Model``: a loaded GGUF model, its metadata and its tokenizer.

A model is shared by the contexts built from it; each context keeps it alive. ``close()`` stops
new contexts at once and frees the weights when the last open context closes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _log, _params
from ._handle import NativeHandle
from ._lib import ffi, lib
from .backend import ensure_init
from .errors import ClosedError, ModelLoadError, RpcPeerError, with_native
from .rpc import guard as _rpc_guard
from .rpc import placement as _placement
from .rpc.usage import DeviceUsage, device_usage
from .vocab import Vocab

if TYPE_CHECKING:
    from .builder import Builder
    from .config import ModelConfig

__all__ = ["Model"]

_GGUF_MAGIC = b"GGUF"


def _check_gguf_file(path: Path) -> None:
    """Cheap checks before ik sees the file: exists, readable, GGUF magic, not cut short."""
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"model file is not readable: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[:4] != _GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (magic {head[:4]!r}, expected b'GGUF')")
    from .modelfile.check import check_gguf

    check_gguf(path)


def _read_str(fn: Any, *args: Any) -> str | None:
    """Call a ``(…, char *buf, size_t n) -> int32 length`` getter with a buffer that fits (None if absent)."""
    size = 256
    while True:
        buf = ffi.new("char[]", size)
        n = fn(*args, buf, size)
        if n < 0:
            return None
        if n < size:
            return ffi.string(buf, n).decode("utf-8", "replace")
        size = n + 1


class Model(NativeHandle):
    """A loaded model (owns a ``llama_model *``, freed by :meth:`close` / ``with``)."""

    _kind = "model"

    def __init__(self, handle: Any, path: Path, config: ModelConfig,
                 rpc: _rpc_guard.RpcAttachment | None = None):
        super().__init__(handle)
        self._rpc = rpc  # the RPC peers this model uses (None: all local)
        self.path = path
        self.config = config
        self._contexts: weakref.WeakSet[Any] = weakref.WeakSet()
        self._closing = False
        self._lock = threading.Lock()
        self._vocab = lib.llama_model_get_vocab(handle)
        self.n_vocab: int = lib.llama_n_vocab(handle)
        self._tok_impl = Vocab(handle, self._vocab, self.n_vocab)

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def _load(cls, path: Path, config: ModelConfig) -> Model:
        config.validate()
        _check_gguf_file(path)
        if config.untrusted:
            from .modelfile.untrusted import probe_in_child

            probe_in_child(path)
        ensure_init()
        placement = _placement.plan(config)  # probes RPC peers; refuses what ik would abort on
        params = _params.ModelParams(config, placement)
        mark = _log.mark()
        rpc_failures = _rpc_guard.failures() if placement.uses_rpc else 0
        with _rpc_guard.LOCK if placement.uses_rpc else contextlib.nullcontext():
            if placement.uses_rpc:
                _rpc_guard.set_timeouts(_placement.PROBE_TIMEOUT, config.rpc_timeout)
            with params.progress_scope():
                ptr = lib.llama_model_load_from_file(os.fsencode(path), params.c)
            if params.progress_error is not None:
                if ptr != ffi.NULL:
                    lib.llama_free_model(ptr)
                raise params.progress_error
        if ptr == ffi.NULL:
            if params.cancelled:
                raise ModelLoadError(f"loading {path.name} was cancelled by the progress callback")
            if placement.uses_rpc:
                failed = _rpc_guard.failures() != rpc_failures
                raise RpcPeerError(with_native(
                    f"ik_llama.cpp could not load {path.name} over RPC peers {list(placement.addresses)}"
                    + (f": {_rpc_guard.last_error()}" if failed else " (a peer out of memory, or gone)"),
                    _log.since(mark)), _rpc_guard.failed_peer(_rpc_guard.last_error()) if failed else None)
            raise ModelLoadError(with_native(
                f"ik_llama.cpp could not load {path} (truncated, corrupt or an unsupported architecture?)",
                _log.since(mark)))
        rpc = _rpc_guard.RpcAttachment.register(placement.addresses) if placement.uses_rpc else None
        model = cls(ffi.gc(ptr, lib.llama_free_model), path, config, rpc)
        if rpc is not None and _rpc_guard.failures() != rpc_failures:
            rpc.lost = _rpc_guard.last_error()
            model.close()
            raise RpcPeerError(f"an RPC peer failed while {path.name} loaded: {rpc.lost}",
                               _rpc_guard.failed_peer(rpc.lost))
        return model

    # -- lifetime ---------------------------------------------------------------------------------
    def _attach(self, context: Any, while_closing: bool = False) -> Any:
        """Register a new user (context or sampler); returns the raw pointer it may use.

        Refused once closing, unless ``while_closing`` and an open user still keeps the weights
        (a sampler for a context that outlives ``Model.close()``).
        """
        with self._lock:
            alive = self._h is not None and (not self._closing or (while_closing and any(
                not c.closed for c in self._contexts)))
            if not alive:
                raise ClosedError("this model is closed; load it again to build new contexts")
            self._contexts.add(context)
            return self._h

    def _detach(self, context: Any) -> None:
        with self._lock:
            self._contexts.discard(context)
            free_now = self._closing and not self._contexts
        if free_now:
            self._free()

    def _free(self) -> None:
        if self._rpc is None:
            super()._free()
            return
        with _rpc_guard.LOCK:  # frees remote buffers over the shared connection (a lost one: no network)
            super()._free()
        self._rpc.forget()

    def devices(self) -> list[DeviceUsage]:
        """Where the weights and the open contexts' KV caches are, per device (local, GPU or RPC peer).

        Wraps ``llama_model_buffer_info`` / ``llama_kv_cache_buffer_info`` (local bookkeeping, no network).
        Returns a new list of :class:`ikllama.rpc.DeviceUsage` snapshots, in ik's buffer order.
        """
        from .context import Context

        h = self._ptr()
        with self._lock:
            contexts = [c._h for c in self._contexts if isinstance(c, Context) and not c.closed]
        return device_usage(h, contexts)

    def close(self) -> None:
        """Free the weights now, or as soon as the last open context built from it closes."""
        with self._lock:
            self._closing = True
            if any(not c.closed for c in self._contexts):
                return
        super().close()

    @property
    def closed(self) -> bool:
        return self._h is None or self._closing

    def _ptr(self) -> Any:
        if self._closing:
            raise ClosedError("this model is closed; load it again")
        return super()._ptr()

    def context(self) -> Builder:
        """A :class:`Builder` for a new context on this model."""
        from .builder import Builder

        self._ptr()
        return Builder(self)

    # -- metadata ---------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """One GGUF metadata value as a string, or None (wraps ``llama_model_meta_val_str``)."""
        return _read_str(lib.llama_model_meta_val_str, self._ptr(), key.encode())

    @cached_property
    def metadata(self) -> dict[str, str]:
        """All scalar GGUF metadata as strings (ik does not expose arrays)."""
        h = self._ptr()
        out = {}
        for i in range(lib.llama_model_meta_count(h)):
            key = _read_str(lib.llama_model_meta_key_by_index, h, i)
            if key is not None:
                out[key] = _read_str(lib.llama_model_meta_val_str_by_index, h, i) or ""
        return out

    @cached_property
    def architecture(self) -> str:
        return self.meta("general.architecture") or ""

    @property
    def description(self) -> str:
        """ik's one-line description, e.g. ``llama 135M Q4_1`` (wraps ``llama_model_desc``)."""
        return _read_str(lib.llama_model_desc, self._ptr()) or ""

    @property
    def n_params(self) -> int:
        return int(lib.llama_model_n_params(self._ptr()))

    @property
    def size(self) -> int:
        """Bytes of all weights (wraps ``llama_model_size``)."""
        return int(lib.llama_model_size(self._ptr()))

    @property
    def n_ctx_train(self) -> int:
        return int(lib.llama_n_ctx_train(self._ptr()))

    @property
    def n_embd(self) -> int:
        return int(lib.llama_model_n_embd(self._ptr()))

    @property
    def n_layer(self) -> int:
        """Layer count, NextN/MTP layers included (wraps ``llama_n_layer``)."""
        return int(lib.llama_n_layer(self._ptr()))

    def _meta_int(self, suffix: str) -> int | None:
        value = self.meta(f"{self.architecture}.{suffix}")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:  # a per-layer array rendered as text: take the largest entry
            numbers = [int(x) for x in value.strip("[]").replace(",", " ").split() if x.lstrip("-").isdigit()]
            return max(numbers) if numbers else None

    @cached_property
    def n_head(self) -> int:
        """Attention heads (GGUF ``<arch>.attention.head_count``; ik has no getter)."""
        return self._meta_int("attention.head_count") or 0

    @cached_property
    def n_head_kv(self) -> int:
        """KV heads (``<arch>.attention.head_count_kv``, defaulting to ``n_head``)."""
        return self._meta_int("attention.head_count_kv") or self.n_head

    @cached_property
    def head_dim(self) -> int:
        """K head size (``<arch>.attention.key_length``, else n_embd / n_head)."""
        k = self._meta_int("attention.key_length")
        if k:
            return k
        return self.n_embd // self.n_head if self.n_head else 0

    @cached_property
    def head_dim_v(self) -> int:
        """V head size (``<arch>.attention.value_length``, else :attr:`head_dim`)."""
        return self._meta_int("attention.value_length") or self.head_dim

    @property
    def is_recurrent(self) -> bool:
        return bool(lib.llama_model_is_recurrent(self._ptr()))

    @property
    def n_nextn_layer(self) -> int:
        """NextN (MTP) layers in the file (wraps ``llama_model_n_nextn_layer``)."""
        return int(lib.llama_model_n_nextn_layer(self._ptr()))

    def chat_template(self, name: str | None = None) -> str | None:
        """The GGUF chat template (Jinja source), or None (wraps ``llama_model_chat_template``)."""
        p = lib.llama_model_chat_template(self._ptr(), name.encode() if name else ffi.NULL)
        return None if p == ffi.NULL else ffi.string(p).decode("utf-8", "replace")

    # -- special tokens ---------------------------------------------------------------------------
    def _tok(self, fn: Any) -> int | None:
        t = int(fn(self._ptr()))
        return None if t < 0 else t

    @property
    def token_bos(self) -> int | None:
        return self._tok(lib.llama_token_bos)

    @property
    def token_eos(self) -> int | None:
        return self._tok(lib.llama_token_eos)

    @property
    def token_eot(self) -> int | None:
        return self._tok(lib.llama_token_eot)

    @property
    def token_nl(self) -> int | None:
        return self._tok(lib.llama_token_nl)

    @property
    def token_pad(self) -> int | None:
        return self._tok(lib.llama_token_pad)

    @property
    def token_sep(self) -> int | None:
        return self._tok(lib.llama_token_sep)

    @property
    def add_bos(self) -> bool:
        return bool(lib.llama_vocab_get_add_bos(self._vocab_ptr()))

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, …) (wraps ``llama_vocab_is_eog``)."""
        self._ptr()
        return self._tok_impl.is_eog(token)

    def token_text(self, token: int) -> str:
        """The vocabulary entry of ``token`` (wraps ``llama_token_get_text``)."""
        self.check_token(token)
        return ffi.string(lib.llama_token_get_text(self._ptr(), token)).decode("utf-8", "replace")

    # -- tokenizer (the work is done by .vocab.Vocab, which contexts also use) ---------------------
    def _vocab_ptr(self) -> Any:
        self._ptr()
        return self._vocab

    def check_token(self, token: int) -> None:
        self._tok_impl.check_token(token)

    def tokenize(self, text: str | bytes, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Text to token ids (wraps ``llama_tokenize``).

        ``add_special`` adds BOS/EOS as the model wants; ``parse_special`` turns special-token text
        such as ``<|im_start|>`` into its id instead of spelling it out.
        """
        self._ptr()
        return self._tok_impl.tokenize(text, add_special, parse_special)

    def token_to_piece(self, token: int, special: bool = False, lstrip: int = 0) -> bytes:
        """The bytes of one token (wraps ``llama_token_to_piece``); may be part of a UTF-8 character."""
        self._ptr()
        return self._tok_impl.token_to_piece(token, special, lstrip)

    def detokenize(self, tokens: list[int], remove_special: bool = False, unparse_special: bool = False) -> str:
        """Token ids back to text (wraps ``llama_detokenize``)."""
        self._ptr()
        return self._tok_impl.detokenize(tokens, remove_special, unparse_special)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.architecture}, {self.n_params / 1e6:.0f}M params"
        return f"<ikllama.Model {self.path.name} ({state})>"
