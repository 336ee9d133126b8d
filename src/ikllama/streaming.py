"""Incremental detokenization that never emits a broken UTF-8 sequence."""

from __future__ import annotations

import codecs
from collections.abc import Iterator

__all__ = ["Utf8Decoder", "stream_continuation"]


class Utf8Decoder:
    """Feed token bytes, get text; bytes of a character split across tokens wait for the rest."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._dec.decode(data)

    def flush(self) -> str:
        """Whatever is left; an incomplete character at the very end becomes U+FFFD."""
        return self._dec.decode(b"", final=True)


def stream_continuation(ctx, prompt_tokens: list[int], max_tokens: int, fork_id: int = 0) -> Iterator[str]:
    """Decode ``prompt_tokens`` after what ``fork_id`` holds, then yield the text of each sampled token.

    Uses the context's own sampler (``Builder.with_sampling`` / ``with_sampler``; greedy by default) and stops at end of
    generation, after ``max_tokens`` tokens, or when the context is full. The yielded pieces never
    split a UTF-8 character.
    """
    from .batch import Pos

    if not prompt_tokens:
        raise ValueError("the prompt is empty")
    start = ctx.n_past(fork_id)
    for i in range(0, len(prompt_tokens), ctx.max_batch_len):
        chunk = prompt_tokens[i:i + ctx.max_batch_len]
        batch = ctx.new_batch(len(chunk))
        batch.add_sequence(chunk, Pos(start + i, fork_id))
        ctx.decode(batch)
    row = len(chunk) - 1
    decoder = Utf8Decoder()
    step = ctx.new_batch(1)
    for _ in range(max_tokens):
        if ctx.n_past(fork_id) >= ctx.n_ctx:
            break
        token = ctx.sample(row)
        if token is None:
            break
        piece = decoder.feed(ctx.token_to_bytes(token))
        step.clear()
        step.add(token, Pos(ctx.n_past(fork_id), fork_id), logits=True)
        ctx.decode(step)
        row = 0
        if piece:
            yield piece
    tail = decoder.flush()
    if tail:
        yield tail
