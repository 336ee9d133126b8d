"""Speculative decoding: sessions that guess the next tokens, verified by the main model in one batch.

Generation (``SimpleInference.generate(..., speculative=session)``, ``generate_parallel``,
``LLM.create_*``) decodes ``[last, d0, ..., dk-1]`` in one batch, samples at each row with the
fork's own sampler, and keeps drafts while the sampled token equals them. Every emitted token is
sampled from the main model's distribution exactly where plain generation would sample it, with
the same sampler and RNG draws in the same order, so the output is the same as without
speculation (greedy and seeded sampling alike); the drafts only decide how many tokens one decode
verifies. One caveat is ik's, not the method's: a verification batch computes several query rows
at once, and ik's kernels then sum in another order than for one row; the logits can differ in the
last bits, which flips the rare step where the model itself is at a near-tie (measured on SmolLM2:
one divergence in 192 tokens, at a top-2 margin of 0.15 logits). Sessions:

- :class:`PromptLookupSession`: n-gram lookup in the fork's own tokens (code, lists, quotes).
- :class:`DraftModelSession`: a smaller model with the same vocabulary drafts greedily.
- :class:`ikllama.mtp.MtpSession`: the model's own NextN (MTP) layer.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import Pos, common_prefix

if TYPE_CHECKING:
    from .context import Context
    from .model import Model

__all__ = ["SpeculativeSession", "SpeculativeStats", "PromptLookupSession", "DraftModelSession",
           "check_same_vocab"]


@dataclass
class SpeculativeStats:
    """Counters of one session: drafted and accepted tokens, verification batches, generated tokens."""

    drafted: int = 0
    accepted: int = 0
    batches: int = 0
    generated: int = 0
    seconds: float = 0.0
    draft_seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_batch(self) -> float:
        return self.generated / self.batches if self.batches else 0.0


class SpeculativeSession(abc.ABC):
    """Base of the sessions: ``draft`` proposes tokens; the hooks let a session follow the main cache.

    ``n_draft_max`` caps a draft; drafts shorter than ``n_min`` are not worth a wider batch and are
    dropped; ``p_min`` (model-based sessions) stops drafting at a token the drafter is less sure of.
    """

    def __init__(self, n_draft_max: int = 8, n_min: int = 0, p_min: float = 0.0):
        if not 1 <= n_draft_max <= 64:
            raise ValueError(f"n_draft_max={n_draft_max} must be 1..64")
        if not 0 <= n_min <= n_draft_max:
            raise ValueError(f"n_min={n_min} must be 0..n_draft_max")
        if not 0.0 <= p_min <= 1.0:
            raise ValueError(f"p_min={p_min} must be in [0, 1]")
        self.n_draft_max = n_draft_max
        self.n_min = n_min
        self.p_min = p_min
        self.stats = SpeculativeStats()

    def attach(self, ctx: Context) -> None:
        """Called when generation starts on ``ctx``; raises ValueError if the session cannot serve it."""

    @abc.abstractmethod
    def draft(self, ctx: Context, fork: int, last: int, limit: int) -> list[int]:
        """Up to ``limit`` tokens expected after ``last``, which goes at position ``ctx.n_past(fork)``."""

    def prefilled(self, ctx: Context, fork: int, start: int, n: int) -> None:
        """The main context decoded ``n`` prompt tokens of ``fork`` from position ``start``."""

    def verified(self, ctx: Context, fork: int, start: int, rows: list[int], n_kept: int) -> None:
        """A verification batch put ``fork``'s tokens at positions ``start``.. (output rows ``rows``);
        the first ``n_kept`` stay in the cache, the rest were removed."""

    def close(self) -> None:
        """Free what the session owns."""

    def __enter__(self) -> SpeculativeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PromptLookupSession(SpeculativeSession):
    """Drafts by finding the latest earlier occurrence of the last ``ngram_max``..``ngram_min`` tokens
    in the fork and proposing what followed it (prompt lookup decoding)."""

    def __init__(self, n_draft_max: int = 8, ngram_min: int = 2, ngram_max: int = 4, n_min: int = 1):
        super().__init__(n_draft_max, n_min)
        if not 1 <= ngram_min <= ngram_max <= 16:
            raise ValueError(f"need 1 <= ngram_min ({ngram_min}) <= ngram_max ({ngram_max}) <= 16")
        self.ngram_min = ngram_min
        self.ngram_max = ngram_max

    def draft(self, ctx: Context, fork: int, last: int, limit: int) -> list[int]:
        t0 = time.perf_counter()
        history = ctx._seqs[fork] + [last]
        n_hist = len(history)
        out: list[int] = []
        for n in range(min(self.ngram_max, n_hist - 1), self.ngram_min - 1, -1):
            tail = history[n_hist - n:]
            first = tail[0]
            # Latest earlier match first: recent context predicts best.
            for i in range(n_hist - n - 1, -1, -1):
                if history[i] == first and history[i:i + n] == tail:
                    out = history[i + n:i + n + min(limit, self.n_draft_max)]
                    break
            if out:
                break
        self.stats.draft_seconds += time.perf_counter() - t0
        return out


def check_same_vocab(main: Model, draft: Model) -> None:
    """ValueError unless ``draft`` tokenizes like ``main`` (size, special tokens, a sample of pieces)."""
    if main.n_vocab != draft.n_vocab:
        raise ValueError(f"the draft model's vocabulary has {draft.n_vocab} tokens, the main model's "
                         f"{main.n_vocab}: speculative decoding needs the same vocabulary")
    for name in ("token_bos", "token_eos"):
        if getattr(main, name) != getattr(draft, name):
            raise ValueError(f"the draft model's {name} differs from the main model's: not the same vocabulary")
    step = max(1, main.n_vocab // 257)
    for t in range(0, main.n_vocab, step):
        if main.token_to_piece(t, True) != draft.token_to_piece(t, True):
            raise ValueError(f"token {t} reads {main.token_to_piece(t, True)!r} in the main model but "
                             f"{draft.token_to_piece(t, True)!r} in the draft model: not the same vocabulary")


class DraftModelSession(SpeculativeSession):
    """A second (smaller) model with the same vocabulary drafts greedily on its own context.

    Its context follows each fork of the main context: before drafting, it is trimmed to the
    longest common prefix with the main fork and fed what it is missing.
    """

    def __init__(self, draft_model: Model, n_draft_max: int = 8, p_min: float = 0.0, n_min: int = 0,
                 n_ctx: int = 4096, n_seq_max: int = 1, n_threads: int | None = None):
        super().__init__(n_draft_max, n_min, p_min)
        self.draft_model = draft_model
        b = draft_model.context().with_n_ctx(n_ctx).with_n_seq_max(n_seq_max)
        if n_threads is not None:
            b = b.with_threads(n_threads)
        self.ctx = b.build()
        self._step: Any = None

    def attach(self, ctx: Context) -> None:
        check_same_vocab(ctx.model, self.draft_model)
        if ctx.n_seq_max > self.ctx.n_seq_max:
            raise ValueError(f"the draft context serves {self.ctx.n_seq_max} forks; the main one has "
                             f"{ctx.n_seq_max}: build DraftModelSession with n_seq_max={ctx.n_seq_max}")

    def _sync(self, tokens: list[int], fork: int) -> None:
        d = self.ctx
        keep = common_prefix(d._seqs[fork], tokens)
        if keep == len(tokens):
            keep -= 1  # decode the last token again: its logits start the draft
        d.truncate(Pos(keep, fork))
        rest = tokens[keep:]
        for i in range(0, len(rest), d.n_batch):
            chunk = rest[i:i + d.n_batch]
            batch = d.new_batch(len(chunk))
            batch.add_sequence(chunk, Pos(keep + i, fork))
            d.decode(batch)

    def draft(self, ctx: Context, fork: int, last: int, limit: int) -> list[int]:
        t0 = time.perf_counter()
        d = self.ctx
        target = ctx._seqs[fork] + [last]
        limit = min(limit, self.n_draft_max, d.n_ctx - len(target) - 1)
        out: list[int] = []
        if limit > 0:
            self._sync(target, fork)  # leaves logits for `last`
            row = d._outputs[-1]
            while True:
                logits = d.logits(row, copy=False)
                token = int(np.argmax(logits))
                if self.p_min > 0:
                    top = float(logits[token])
                    p = 1.0 / float(np.exp(logits - top).sum())
                    if p < self.p_min:
                        break
                if d.vocab.is_eog(token):
                    break
                out.append(token)
                if len(out) >= limit:
                    break
                d.decode_steps([(token, fork)])
                row = 0
        self.stats.draft_seconds += time.perf_counter() - t0
        return out

    def close(self) -> None:
        self.ctx.close()
