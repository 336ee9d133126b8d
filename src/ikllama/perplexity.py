"""Perplexity computed the way ik's ``llama-perplexity`` computes it.

The text is tokenized with BOS as the model wants and cut into ``len(tokens) // n_ctx`` chunks
of ``n_ctx`` tokens. Each chunk is decoded from an empty cache (its first token replaced by BOS
when the model adds one), in ``n_batch`` pieces, and only the second half is scored: the
log-probability of token ``j+1`` under the logits at ``j`` for ``j`` in ``[n_ctx/2, n_ctx-1)``.
The result is ``exp(mean NLL)`` over all scored tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .batch import Pos
from .context import Context

__all__ = ["PerplexityResult", "perplexity"]


@dataclass(frozen=True)
class PerplexityResult:
    """Final perplexity, its standard error (as llama-perplexity reports it) and the per-chunk running values."""

    ppl: float
    stderr: float
    n_chunks: int
    n_ctx: int
    n_scored: int
    running: list[float] = field(default_factory=list)


def _nll_rows(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits[i])[targets[i]] in float64, as llama-perplexity's log_softmax."""
    rows = logits.astype(np.float64)
    rows -= rows.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(rows).sum(axis=1))
    return log_sum - rows[np.arange(len(targets)), targets]


def perplexity(ctx: Context, text: str, n_ctx: int | None = None, n_chunks: int | None = None) -> PerplexityResult:
    """Perplexity of ``text`` on ``ctx``'s model; the context's cache is cleared and reused per chunk.

    ``n_ctx`` defaults to the context's; it must not exceed it. ``n_chunks`` caps the chunks scored.
    """
    n_ctx = n_ctx or ctx.n_ctx
    if not 2 <= n_ctx <= ctx.n_ctx:
        raise ValueError(f"n_ctx={n_ctx} must be 2..{ctx.n_ctx} (the context's size)")
    model = ctx.model
    add_bos = model.add_bos
    tokens = ctx.vocab.tokenize(text, True, False)
    if len(tokens) < 2 * n_ctx:
        raise ValueError(f"the text has {len(tokens)} tokens; perplexity needs at least 2*n_ctx = {2 * n_ctx}")
    total = len(tokens) // n_ctx
    n_chunks = total if n_chunks is None else max(1, min(n_chunks, total))
    first = n_ctx // 2
    n_batch = ctx.max_batch_len
    nll_sum = nll2_sum = 0.0
    count = 0
    running = []
    for chunk in range(n_chunks):
        seq = list(tokens[chunk * n_ctx:(chunk + 1) * n_ctx])
        if add_bos:
            seq[0] = model.token_bos
        ctx.clear()
        rows = []
        for start in range(0, n_ctx, n_batch):
            piece = seq[start:start + n_batch]
            batch = ctx.new_batch(len(piece), 1)
            for k, t in enumerate(piece):
                batch.add(t, Pos(start + k, 0), logits=start + k >= first)
            ctx.decode(batch)
            rows.extend(ctx.logits(k, copy=False).copy() for k in range(len(piece)) if start + k >= first)
        scored = np.stack(rows[: n_ctx - 1 - first])
        targets = np.asarray(tokens[chunk * n_ctx + first + 1:(chunk + 1) * n_ctx])
        nll = _nll_rows(scored, targets)
        nll_sum += float(nll.sum())
        nll2_sum += float((nll * nll).sum())
        count += len(nll)
        running.append(float(np.exp(nll_sum / count)))
    mean = nll_sum / count
    var = nll2_sum / count - mean * mean
    err = float(np.sqrt(var / (count - 1)) * np.exp(mean)) if var > 0 else float("nan")
    return PerplexityResult(float(np.exp(mean)), err, n_chunks, n_ctx, count, running)
