"""Small drivers shared by the tests: greedy generation through the low-level protocol."""

from __future__ import annotations

import numpy as np

from ikllama import Context, Pos


def prefill(ctx: Context, tokens: list[int], fork: int = 0) -> int:
    """Decode ``tokens`` after what ``fork`` holds, in n_batch chunks; returns the row with logits."""
    start = ctx.n_past(fork)
    for i in range(0, len(tokens), ctx.max_batch_len):
        chunk = tokens[i:i + ctx.max_batch_len]
        batch = ctx.new_batch(len(chunk))
        batch.add_sequence(chunk, Pos(start + i, fork))
        ctx.decode(batch)
    return len(tokens[i:i + ctx.max_batch_len]) - 1


def greedy(ctx: Context, prompt: list[int], n: int, fork: int = 0) -> list[int]:
    """Greedy continuation of ``prompt`` (appended to ``fork``) for up to ``n`` tokens."""
    row = prefill(ctx, prompt, fork)
    out: list[int] = []
    step = ctx.new_batch(1)
    while len(out) < n:
        token = int(np.argmax(ctx.logits(row)))
        if ctx.vocab.is_eog(token):
            break
        out.append(token)
        step.clear()
        step.add(token, Pos(ctx.n_past(fork), fork), logits=True)
        ctx.decode(step)
        row = 0
    return out


def next_logits(ctx: Context, tokens: list[int], fork: int = 0) -> np.ndarray:
    """Logits after appending ``tokens`` to ``fork``."""
    row = prefill(ctx, tokens, fork)
    return ctx.logits(row)
