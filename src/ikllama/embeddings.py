"""Sentence embeddings: ``Embedder`` packs many texts into one decode and reads ik's pooled vectors.

How a batch of texts becomes vectors (``Embedder.embed``):

1. Every text is tokenized as the model wants (BOS/EOS). A text of no tokens is an error; one
   longer than ``max_tokens`` is an error unless ``truncate=True`` keeps its first tokens.
2. Consecutive texts are packed, in order, onto fork ids 0, 1, ... of one batch while the pack has
   at most ``n_seq_max`` texts and ``max_tokens`` tokens.
3. The cache is cleared and the pack decoded once. ik pools each sequence (mean, first token or
   last token of its rows, after the output norm) and ``llama_get_embeddings_seq`` returns it.
4. The rows are optionally L2-normalized and returned in input order.

Two properties of ik shape this. ik pools per *micro-batch* and forgets the pools of earlier
micro-batches (``embd_seq`` is cleared for each ubatch), so a pack must fit in one micro-batch:
the context is built with ``n_ubatch == n_batch`` and ``max_tokens`` is ``n_batch``. And ik's CPU
f32 matmul (``iqk_gemm_floats.cpp``, ``mul_mat_Qx_Qy_MxN``) is wrong when the inner dimension is a
multiple of 4 below one SIMD vector (4, 8, 12 with AVX-512, 4 with AVX2): its first full-width load
reads past the row and its tail loop adds the real products a second time. Mean pooling multiplies
by an ``n_tokens x n_tokens`` matrix, so a pack of exactly 4, 8 or 12 tokens came out doubled
(measured); such a pack gets one padding token on a spare fork, which changes no other mean.

ik_llama.cpp has no rank pooling (mainline's ``LLAMA_POOLING_TYPE_RANK``), so reranker heads cannot
run: :meth:`Embedder.rerank` raises :class:`~ikllama.errors.UnsupportedConfigError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import Pos
from .enums import PoolingType
from .errors import ClosedError, UnsupportedConfigError

if TYPE_CHECKING:
    from .context import Context
    from .model import Model

__all__ = ["Embedder", "embed", "similarity", "model_pooling"]

log = logging.getLogger("ikllama")

_RANK_POOLING = 4  # mainline's LLAMA_POOLING_TYPE_RANK as written in GGUF; ik does not define it
_MIN_BATCH = 16    # room for the padding token of a 4/8/12-token mean-pooled pack


def model_pooling(model: Model) -> PoolingType | None:
    """The pooling type the GGUF declares (``<arch>.pooling_type``), or None when it declares none.

    Raises:
        UnsupportedConfigError: the model declares rank pooling (a reranker), which ik cannot run.
    """
    raw = model.meta(f"{model.architecture}.pooling_type")
    if raw is None:
        return None
    value = int(raw)
    if value == _RANK_POOLING:
        raise UnsupportedConfigError(
            "this model declares rank pooling (a reranker head), and ik_llama.cpp has no rank pooling. "
            "Fix: pass pooling=PoolingType.MEAN/CLS/LAST to get hidden-state embeddings instead.")
    pooling = PoolingType(value)
    return None if pooling == PoolingType.UNSPECIFIED else pooling


def _normalized(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)  # a zero vector stays zero


def similarity(a: Any, b: Any) -> Any:
    """Cosine similarity: a float for two vectors, an ``(len(a), len(b))`` matrix for 2-D inputs."""
    x = np.asarray(a, dtype=np.float32)
    y = np.asarray(b, dtype=np.float32)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"dimension mismatch: {x.shape[-1]} vs {y.shape[-1]}")
    out = np.atleast_2d(_normalized(x)) @ np.atleast_2d(_normalized(y)).T
    if x.ndim == 1 and y.ndim == 1:
        return float(out[0, 0])
    if x.ndim == 1:
        return out[0]
    if y.ndim == 1:
        return out[:, 0]
    return out


class Embedder:
    """Embeds texts with one context of ``model`` (owns that context; close it or use ``with``).

    Args:
        model: a loaded :class:`~ikllama.Model`; it must stay open while the Embedder is used.
        pooling: MEAN, CLS, LAST or NONE. None takes the model's own (``<arch>.pooling_type``), else
            MEAN. NONE gives per-token vectors only (:meth:`embed_tokens`); :meth:`embed` needs pooling.
        normalize: L2-normalize the rows :meth:`embed` returns (overridable per call).
        n_ctx: cache size in tokens; with ``n_batch`` it bounds one text and one pack.
        n_seq_max: most texts decoded together (one fork each).
        n_batch: most tokens per pack (default ``n_ctx``; at least 16).
        n_threads: CPU threads (default: the CPUs this process may use).
    """

    def __init__(self, model: Model, *, pooling: PoolingType | None = None, normalize: bool = True,
                 n_ctx: int = 2048, n_seq_max: int = 16, n_batch: int | None = None,
                 n_threads: int | None = None):
        if pooling is None:
            pooling = model_pooling(model) or PoolingType.MEAN
        pooling = PoolingType(pooling)
        if pooling == PoolingType.UNSPECIFIED:
            raise ValueError("pooling must be MEAN, CLS, LAST or NONE (None picks the model's)")
        n_batch = min(n_ctx, n_batch or n_ctx)
        if n_batch < _MIN_BATCH:
            raise ValueError(f"n_batch={n_batch} (and n_ctx={n_ctx}) must be at least {_MIN_BATCH}")
        if not 1 <= n_seq_max < 256:
            raise ValueError(f"n_seq_max={n_seq_max}: must be 1..255")
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.n_seq_max = n_seq_max
        self._n_threads = n_threads
        self._closed = False
        self._token_ctx: Context | None = None  # pooling NONE, for embed_tokens; built on first use
        self._token_batch: Any = None
        # One spare fork for mean pooling's padding sequence (see the module docstring).
        spare = 1 if pooling == PoolingType.MEAN else 0
        self._ctx = self._build(pooling, n_ctx, n_batch, n_seq_max + spare)
        try:
            self.max_tokens = min(self._ctx.n_batch, self._ctx.n_ubatch, self._ctx.n_ctx)
            self._batch = self._ctx.new_batch(self.max_tokens)
        except BaseException:
            self._ctx.close()
            raise

    def _build(self, pooling: PoolingType, n_ctx: int, n_batch: int, n_seq: int) -> Context:
        # n_ubatch == n_batch: ik pools per micro-batch, so a pack must be one micro-batch.
        builder = (self.model.context().with_n_ctx(n_ctx).with_n_batch(n_batch).with_n_ubatch(n_batch)
                   .with_n_seq_max(n_seq).with_embeddings(True).with_pooling(pooling))
        if self._n_threads is not None:
            builder = builder.with_threads(self._n_threads)
        return builder.build()

    @property
    def n_embd(self) -> int:
        return self.model.n_embd

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this Embedder is closed; create a new one")

    def close(self) -> None:
        """Free the contexts and batches now. Idempotent; later use raises ClosedError."""
        if self._closed:
            return
        self._closed = True
        for obj in (self._token_batch, self._token_ctx, self._batch, self._ctx):
            if obj is not None:
                obj.close()

    def __enter__(self) -> Embedder:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens ------------------------------------------------------------------------------------
    def _tokens(self, texts: Sequence[str], truncate: bool) -> list[list[int]]:
        out = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"input {i} is {type(text).__name__}, not str")
            tokens = self.model.tokenize(text, add_special=True, parse_special=False)
            if not tokens:
                raise ValueError(f"input {i} ({text!r}) tokenizes to no tokens; nothing to embed")
            if len(tokens) > self.max_tokens:
                if not truncate:
                    raise ValueError(f"input {i} is {len(tokens)} tokens long; one input takes at most "
                                     f"{self.max_tokens} (n_ctx/n_batch). Fix: pass truncate=True or use a "
                                     "larger n_ctx.")
                tokens = tokens[:self.max_tokens]
            out.append(tokens)
        return out

    def _packs(self, tokens: list[list[int]]) -> list[range]:
        """Consecutive index ranges, each at most n_seq_max inputs and max_tokens tokens."""
        packs, start, total = [], 0, 0
        for i, toks in enumerate(tokens):
            if i > start and (i - start == self.n_seq_max or total + len(toks) > self.max_tokens):
                packs.append(range(start, i))
                start, total = i, 0
            total += len(toks)
        if start < len(tokens):
            packs.append(range(start, len(tokens)))
        return packs

    # -- pooled embeddings -------------------------------------------------------------------------
    def embed(self, texts: str | Sequence[str], normalize: bool | None = None, *,
              truncate: bool = False) -> np.ndarray:
        """Embed ``texts``: a float32 array of shape ``(len(texts), n_embd)`` (``(1, n_embd)`` for a str).

        Decodes packs of whole texts on separate forks and reads ``llama_get_embeddings_seq`` per
        fork; the cache is cleared before each pack and left empty. The result is a fresh array.

        Raises:
            ValueError: a text has no tokens or is longer than ``max_tokens`` (without ``truncate``),
                or this Embedder was built with pooling NONE (use :meth:`embed_tokens`).
        """
        self._check_open()
        if self.pooling == PoolingType.NONE:
            raise ValueError("pooling NONE gives per-token vectors: use embed_tokens(), or build the "
                             "Embedder with pooling MEAN/CLS/LAST")
        items = [texts] if isinstance(texts, str) else list(texts)
        tokens = self._tokens(items, truncate)
        out = np.empty((len(tokens), self.n_embd), dtype=np.float32)
        ctx, batch = self._ctx, self._batch
        try:
            for pack in self._packs(tokens):
                ctx.clear()
                batch.clear()
                for fork, i in enumerate(pack):
                    batch.add_sequence(tokens[i], Pos(0, fork), logits_last=False)
                n = len(batch)
                if self.pooling == PoolingType.MEAN and n < _MIN_BATCH and n % 4 == 0:
                    batch.add(tokens[pack[0]][0], Pos(0, len(pack)))  # dodge ik's f32 matmul bug
                log.debug("embedding pack of %d inputs, %d tokens", len(pack), len(batch))
                ctx.decode(batch)
                for fork, i in enumerate(pack):
                    out[i] = ctx.pooled_embeddings(fork)
        finally:
            ctx.clear()
        if self.normalize if normalize is None else normalize:
            out = _normalized(out)
        return out

    def similarity(self, a: str | Any, b: str | Any) -> float:
        """Cosine similarity of two texts (or vectors)."""
        va = self.embed(a, normalize=True)[0] if isinstance(a, str) else a
        vb = self.embed(b, normalize=True)[0] if isinstance(b, str) else b
        return float(similarity(va, vb))

    def rank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        """``(index, cosine)`` of every document, most similar to ``query`` first."""
        docs = list(documents)
        if not docs:
            return []
        vectors = self.embed([query, *docs], normalize=True)
        scores = vectors[1:] @ vectors[0]
        order = np.argsort(-scores, kind="stable")
        return [(int(i), float(scores[i])) for i in order]

    def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        """Score documents with a reranker (rank) head: not available in ik_llama.cpp.

        Raises:
            UnsupportedConfigError: always; ik defines no ``LLAMA_POOLING_TYPE_RANK``.
        """
        self._check_open()
        raw = self.model.meta(f"{self.model.architecture}.pooling_type")
        which = ("this model has a rank head, but" if raw is not None and int(raw) == _RANK_POOLING
                 else "this model has no rank head, and")
        raise UnsupportedConfigError(f"{which} ik_llama.cpp has no rank pooling (LLAMA_POOLING_TYPE_RANK), so "
                                     "rerank cannot run. Fix: use rank(), which orders by embedding cosine.")

    # -- per-token embeddings ----------------------------------------------------------------------
    def embed_tokens(self, text: str, *, truncate: bool = False) -> np.ndarray:
        """Per-token hidden states of ``text`` (after the output norm): float32 ``(n_tokens, n_embd)``.

        Not normalized. Uses a second context with pooling NONE, built on first use (or the main
        one when the Embedder's pooling is NONE); its cache is left empty.
        """
        self._check_open()
        tokens = self._tokens([text], truncate)[0]
        if self.pooling == PoolingType.NONE:
            ctx, batch = self._ctx, self._batch
        else:
            if self._token_ctx is None:
                cfg = self._ctx.config
                self._token_ctx = self._build(PoolingType.NONE, cfg.n_ctx, cfg.n_batch, 1)
                self._token_batch = self._token_ctx.new_batch(self.max_tokens)
            ctx, batch = self._token_ctx, self._token_batch
        try:
            ctx.clear()
            batch.clear()
            for k, t in enumerate(tokens):
                batch.add(t, Pos(k, 0), logits=True)
            ctx.decode(batch)
            return np.stack([ctx.embeddings(k) for k in range(len(tokens))])
        finally:
            ctx.clear()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"max_tokens={self.max_tokens} n_seq_max={self.n_seq_max}"
        return f"<ikllama.Embedder {self.pooling.name} {state}>"


def embed(model: Model | str | os.PathLike[str], texts: str | Sequence[str], *, truncate: bool = False,
          **kw: Any) -> np.ndarray:
    """Embed ``texts`` with a temporary :class:`Embedder` (``kw`` are its arguments).

    ``model`` may be a loaded Model or a GGUF path (then loaded and freed here).
    """
    if isinstance(model, (str, os.PathLike)):
        from .config import ModelConfig

        with ModelConfig().load_gguf(model) as loaded, Embedder(loaded, **kw) as embedder:
            return embedder.embed(texts, truncate=truncate)
    with Embedder(model, **kw) as embedder:
        return embedder.embed(texts, truncate=truncate)
