"""Draft models for ``Llama(draft_model=...)`` (llama-cpp-python's ``llama_speculative``).

``LlamaPromptLookupDecoding`` is run by ik's own prompt-lookup session
(:class:`ikllama.PromptLookupSession`) in plain completions; calling it directly gives the
draft tokens for an ``input_ids`` array, as llama-cpp-python's does.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

__all__ = ["LlamaDraftModel", "LlamaPromptLookupDecoding"]


class LlamaDraftModel(abc.ABC):
    """Proposes tokens to verify: ``draft(input_ids) -> array of token ids``."""

    @abc.abstractmethod
    def __call__(self, input_ids: np.ndarray, /, **kwargs: Any) -> np.ndarray:
        """The drafted token ids to verify after ``input_ids``."""


class LlamaPromptLookupDecoding(LlamaDraftModel):
    """Drafts the tokens that followed the latest earlier occurrence of the last n-gram (n from
    ``max_ngram_size`` down to 1), at most ``num_pred_tokens`` of them."""

    def __init__(self, max_ngram_size: int = 2, num_pred_tokens: int = 10):
        if max_ngram_size < 1 or num_pred_tokens < 1:
            raise ValueError("max_ngram_size and num_pred_tokens must be >= 1")
        self.max_ngram_size = max_ngram_size
        self.num_pred_tokens = num_pred_tokens

    def __call__(self, input_ids: np.ndarray, /, **kwargs: Any) -> np.ndarray:
        ids = np.asarray(input_ids, dtype=np.intc).ravel()
        n_ids = ids.size
        for n in range(min(self.max_ngram_size, n_ids - 1), 0, -1):
            tail = ids[n_ids - n:]
            windows = np.lib.stride_tricks.sliding_window_view(ids[:n_ids - 1], n)
            hits = np.flatnonzero((windows == tail).all(axis=1))
            hits = hits[hits + n < n_ids]
            if hits.size:
                start = int(hits[-1]) + n
                return ids[start:start + self.num_pred_tokens].copy()
        return np.array([], dtype=np.intc)
