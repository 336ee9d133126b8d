"""``Vocab``: tokenizer calls on a model handle, shared by :class:`Model` and its contexts.

It borrows the model's handle: a context keeps its model's weights alive, so the context can
tokenize through it even after ``Model.close()`` (which only stops new users).
"""

from __future__ import annotations

from typing import Any

from ._lib import ffi, lib
from .errors import TokenizationError

__all__ = ["Vocab"]


class Vocab:
    """Tokenizer of one model (borrowed ``llama_model *`` and ``llama_vocab *``)."""

    def __init__(self, model_handle: Any, vocab: Any, n_vocab: int):
        self._model = model_handle
        self._vocab = vocab
        self.n_vocab = n_vocab

    def check_token(self, token: int) -> None:
        if not 0 <= token < self.n_vocab:
            raise ValueError(f"token id {token} is outside the vocabulary (0..{self.n_vocab - 1})")

    def is_eog(self, token: int) -> bool:
        """Wraps ``llama_vocab_is_eog``."""
        self.check_token(token)
        return bool(lib.llama_vocab_is_eog(self._vocab, token))

    def tokenize(self, text: str | bytes, add_special: bool, parse_special: bool) -> list[int]:
        """Wraps ``llama_tokenize`` (growing the buffer when ik asks for more room)."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if len(data) >= 2**31 - 1:
            raise TokenizationError("text too long to tokenize in one call (2 GiB limit)")
        cap = len(data) + 8
        while True:
            buf = ffi.new("llama_token[]", cap)
            n = lib.llama_tokenize(self._model, data, len(data), buf, cap, add_special, parse_special)
            if n >= 0:
                return list(ffi.unpack(buf, n))
            if -n <= cap:
                raise TokenizationError(f"llama_tokenize failed on {len(data)} bytes")
            cap = -n

    def token_to_piece(self, token: int, special: bool, lstrip: int) -> bytes:
        """Wraps ``llama_token_to_piece``."""
        self.check_token(token)
        size = 64
        while True:
            buf = ffi.new("char[]", size)
            n = lib.llama_token_to_piece(self._model, token, buf, size, lstrip, special)
            if n >= 0:
                return ffi.buffer(buf, n)[:]
            size = -n

    def detokenize(self, tokens: list[int], remove_special: bool, unparse_special: bool) -> str:
        """Wraps ``llama_detokenize``."""
        for t in tokens:
            self.check_token(t)
        arr = ffi.new("llama_token[]", list(tokens))
        size = max(16, 8 * len(tokens))
        while True:
            buf = ffi.new("char[]", size)
            n = lib.llama_detokenize(self._vocab, arr, len(tokens), buf, size, remove_special, unparse_special)
            if n >= 0:
                return ffi.buffer(buf, n)[:].decode("utf-8", "replace")
            size = -n
