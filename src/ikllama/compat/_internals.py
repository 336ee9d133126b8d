"""llama-cpp-python's ``_internals``: thin objects over a model and a context.

``LlamaModel`` and ``LlamaContext`` here wrap :class:`ikllama.Model` and :class:`ikllama.Context`
(the typed API) instead of ctypes pointers; they exist so that code reaching for
``llama._model`` / ``llama._ctx`` finds the usual methods.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LlamaModel", "LlamaContext"]


class LlamaModel:
    """A loaded model (``llama_model``): vocabulary and metadata calls. Lifetime: the ``ikllama.Model``'s."""

    def __init__(self, model: Any):
        self.model = model

    def n_vocab(self) -> int:
        """``llama_n_vocab``."""
        return self.model.n_vocab

    def n_ctx_train(self) -> int:
        """``llama_n_ctx_train``."""
        return self.model.n_ctx_train

    def n_embd(self) -> int:
        """``llama_n_embd``."""
        return self.model.n_embd

    def desc(self) -> str:
        """``llama_model_desc``."""
        return self.model.description

    def size(self) -> int:
        """``llama_model_size`` in bytes."""
        return self.model.size

    def n_params(self) -> int:
        """``llama_model_n_params``."""
        return self.model.n_params

    def token_bos(self) -> int:
        """``llama_token_bos`` (-1 if none)."""
        return -1 if self.model.token_bos is None else self.model.token_bos

    def token_eos(self) -> int:
        """``llama_token_eos`` (-1 if none)."""
        return -1 if self.model.token_eos is None else self.model.token_eos

    def add_bos_token(self) -> bool:
        """Whether the vocabulary adds BOS."""
        return self.model.add_bos

    def token_get_text(self, token: int) -> str:
        """``llama_token_get_text``."""
        return self.model.token_text(token)

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """``llama_token_to_piece``."""
        return self.model.token_to_piece(token, special)

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        """``llama_tokenize``."""
        return self.model.tokenize(text, add_bos, special)

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        """``llama_token_to_piece`` of each token, concatenated."""
        return b"".join(self.model.token_to_piece(t, special) for t in tokens)

    def metadata(self) -> dict[str, str]:
        """The GGUF's key/value metadata."""
        return dict(self.model.metadata)

    def close(self) -> None:
        """Free the model (``llama_free_model``)."""
        self.model.close()


class LlamaContext:
    """A context (``llama_context``). Lifetime: the ``ikllama.Context``'s."""

    def __init__(self, ctx: Any):
        self.ctx = ctx

    def n_ctx(self) -> int:
        """``llama_n_ctx``."""
        return self.ctx.n_ctx

    def kv_cache_clear(self) -> None:
        """``llama_kv_cache_clear``."""
        self.ctx.clear()

    def get_logits_ith(self, i: int) -> Any:
        """``llama_get_logits_ith`` as a numpy copy."""
        return self.ctx.logits(i)

    def close(self) -> None:
        """Free the context (``llama_free``)."""
        self.ctx.close()
