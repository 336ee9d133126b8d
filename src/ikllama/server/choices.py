"""One choice of one request inside the engine: its sequence, sampler and text pipeline.

Text goes token bytes → :class:`~ikllama.streaming.Utf8Decoder` → :class:`~ikllama.answer.StopStrings`,
the same pipeline ``SimpleInference`` uses, so a stop string split across tokens never leaks and a
character split across tokens is never sent half.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..answer import StopStrings
from ..batch import Pos
from ..sampling import Sampler
from ..streaming import Utf8Decoder
from .jobs import FinishEvent, GenRequest, TokenEvent

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["Choice", "Job"]


class Choice:
    """Choice ``index`` of a job, decoded in sequence ``seq`` with its own sampler (closed by :meth:`close`)."""

    def __init__(self, job: Job, index: int, seq: int, sampler: Sampler):
        self.job = job
        self.index = index
        self.seq = seq
        self.sampler = sampler
        self.decoder = Utf8Decoder()
        self.stops = StopStrings(job.request.stop)
        self.tokens: list[int] = []
        self.pending: int | None = None  # sampled, not yet in the KV cache: the next step decodes it
        self.finish_reason: str | None = None
        self.last_emit = 0.0

    def close(self) -> None:
        self.sampler.close()

    def take(self, ctx: Context, row: int, engine: Any) -> None:
        """Sample from output ``row`` (``ikl_sampler_next``), emit its text, and decide whether it ends here."""
        req = self.job.request
        token = self.sampler.sample(ctx, row)
        if not req.ignore_eos and engine.is_eog(token):
            self.finish(engine, "stop")
            return
        self.tokens.append(token)
        self.pending = token
        text = self.stops.feed(self.decoder.feed(engine.piece(token)))
        logprob = _logprob_entry(ctx, row, token, req.logprobs, engine) if req.logprobs is not None else None
        now = time.monotonic()
        engine.observe_token(self.job, now - self.last_emit if self.last_emit else None)
        self.last_emit = now
        if text or logprob is not None:
            req.sink(TokenEvent(self.index, text, token, logprob))
        if self.stops.matched is not None:
            self.finish(engine, "stop")
        elif req.max_tokens is not None and len(self.tokens) >= req.max_tokens:
            self.finish(engine, "length")
        elif len(ctx._seqs[self.seq]) >= ctx.n_ctx:  # no position left for the pending token
            self.finish(engine, "length")

    def take_verified(self, ctx: Context, rows: list[int], draft: list[int], engine: Any) -> None:
        """Sample the pending token's row and its draft's rows in order while the draft is confirmed, as
        :meth:`take` would one step at a time; then drop the rejected drafts from the cache."""
        start = len(ctx._seqs[self.seq]) - len(rows)  # position of the pending token
        kept = 1
        for i, row in enumerate(rows):
            self.take(ctx, row, engine)
            if self.finish_reason is not None or i >= len(draft) or self.pending != draft[i]:
                break
            kept += 1
        self.job.drafted += len(draft)
        self.job.accepted += kept - 1
        if self.finish_reason is None and len(ctx._seqs[self.seq]) > start + kept:
            ctx.truncate(Pos(start + kept, self.seq))

    def finish(self, engine: Any, reason: str) -> None:
        """End this choice: flush held-back text, report the reason, hand the sequence back."""
        if self.finish_reason is not None:
            return
        self.finish_reason = reason
        self.pending = None
        if self.stops.matched is None:
            tail = self.stops.feed(self.decoder.flush())
            tail += self.stops.flush()
            if tail:
                self.job.request.sink(TokenEvent(self.index, tail, -1, None))
        self.job.request.sink(FinishEvent(self.index, reason, len(self.tokens)))
        engine.release(self)


class Job:
    """A request admitted to the engine: its choices, timings and how much of its prompt is decoded."""

    def __init__(self, request: GenRequest):
        self.request = request
        self.choices: list[Choice] = []
        self.reserved: list[int] = []  # sequences for choices 1..n-1, filled when the prompt is decoded
        self.extra_samplers: list[Sampler] = []  # their samplers, built at admission (a bad grammar fails early)
        self.prompt_done = 0  # prompt tokens in the primary sequence's KV
        self.cached = 0  # of those, reused from the cache instead of decoded
        self.admitted = 0.0
        self.prefill_ended = 0.0
        self.drafted = 0  # prompt-lookup tokens verified, and how many of them were confirmed
        self.accepted = 0

    @property
    def primary(self) -> int:
        return self.choices[0].seq

    @property
    def prefilling(self) -> bool:
        return self.prompt_done < len(self.request.prompt)

    @property
    def finished(self) -> bool:
        return bool(self.choices) and all(c.finish_reason is not None for c in self.choices) and not self.reserved


def _logprob_entry(ctx: Context, row: int, token: int, k: int, engine: Any) -> tuple[str, float, list]:
    """Log-probability of ``token`` and the ``k`` likeliest tokens at ``row``, from the model's raw logits."""
    logits = ctx.logits(row, copy=False).astype(np.float64)
    top = logits.max()
    logz = top + np.log(np.exp(logits - top).sum())
    alts: list[tuple[str, float]] = []
    if k > 0:
        best = np.argpartition(-logits, k - 1)[:k]
        best = best[np.argsort(-logits[best])]
        alts = [(engine.token_text(int(t)), float(logits[t] - logz)) for t in best]
    return engine.token_text(token), float(logits[token] - logz), alts
