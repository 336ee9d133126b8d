"""Tokenizers for :class:`ikllama.compat.Llama` (llama-cpp-python's ``llama_tokenizer`` module)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .llama import Llama

__all__ = ["BaseLlamaTokenizer", "LlamaTokenizer", "LlamaHFTokenizer"]


class BaseLlamaTokenizer(abc.ABC):
    """``tokenize(bytes, add_bos, special) -> ids`` and ``detokenize(ids, prev_tokens, special) -> bytes``."""

    @abc.abstractmethod
    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        """The token ids of ``text``."""

    @abc.abstractmethod
    def detokenize(self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False) -> bytes:
        """The bytes of ``tokens`` (``prev_tokens`` give the context for leading spaces)."""


class LlamaTokenizer(BaseLlamaTokenizer):
    """The GGUF's own vocabulary of ``llama`` (``llama_tokenize`` / ``llama_token_to_piece``)."""

    def __init__(self, llama: Llama):
        self._llama = llama

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids of ``text`` (see :meth:`Llama.tokenize`)."""
        return self._llama.tokenize(text, add_bos=add_bos, special=special)

    def detokenize(self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False) -> bytes:
        """Bytes of ``tokens`` (see :meth:`Llama.detokenize`)."""
        return self._llama.detokenize(tokens, prev_tokens=prev_tokens, special=special)

    def encode(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids of a str."""
        return self.tokenize(text.encode("utf-8", errors="ignore"), add_bos=add_bos, special=special)

    def decode(self, tokens: list[int]) -> str:
        """Text of ``tokens`` (invalid UTF-8 dropped)."""
        return self.detokenize(tokens).decode("utf-8", errors="ignore")

    @classmethod
    def from_ggml_file(cls, path: str) -> LlamaTokenizer:
        """A tokenizer over a GGUF's vocabulary only (``vocab_only`` load; the caller owns nothing to free
        beyond this object, whose model lives as long as it does)."""
        from .llama import Llama

        return cls(Llama(model_path=path, vocab_only=True))


class LlamaHFTokenizer(BaseLlamaTokenizer):
    """A Hugging Face ``transformers`` tokenizer (needs the ``transformers`` package)."""

    def __init__(self, hf_tokenizer: Any):
        self.hf_tokenizer = hf_tokenizer

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        return self.hf_tokenizer.encode(text.decode("utf-8", errors="ignore"), add_special_tokens=special)

    def detokenize(self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False) -> bytes:
        skip = not special
        if prev_tokens is not None:
            text = self.hf_tokenizer.decode(prev_tokens + tokens, skip_special_tokens=skip)
            prev = self.hf_tokenizer.decode(prev_tokens, skip_special_tokens=skip)
            return text[len(prev):].encode("utf-8", errors="ignore")
        return self.hf_tokenizer.decode(tokens, skip_special_tokens=skip).encode("utf-8", errors="ignore")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str) -> LlamaHFTokenizer:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ImportError("LlamaHFTokenizer needs transformers: pip install transformers") from None
        return cls(AutoTokenizer.from_pretrained(pretrained_model_name_or_path))
