"""``MtpSession``: speculative decoding with the model's own NextN layer (GLM4-MoE multi-token prediction).

Two contexts share one model: the caller's main context (built ``with_mtp(True)``) and an MTP
context this session owns, whose KV cache holds only the NextN layer. Position ``j`` of the MTP
cache is fed ``(h[j-1], t[j])``: the main model's hidden state at the previous position and the
token at ``j`` (upstream's fixed convention; row 0 of a fork gets zeros). Drafting feeds the
MTP head its own hidden state step by step.

ik's own driver has four defects this session avoids (``docs``: ik-c-api.md §2.6):
hidden states are passed from buffers this session owns (ik keeps only the pointer and clears its
output buffer before reading it); warm-up goes in chunks of at most ``n_ubatch`` with the pointer
set per chunk (ik always reads from offset 0); main hidden rows are read from the raw embeddings
buffer (``_ith`` maps through the logits rows and returns the wrong row); and the pairing above is
used consistently for warm-up, drafts and accepted tokens.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lib import ffi, lib
from .batch import Pos, common_prefix
from .builder import ContextConfig
from .speculative import SpeculativeSession

if TYPE_CHECKING:
    from .context import Context
    from .model import Model

__all__ = ["MtpSession", "MTP_ARCHITECTURES"]

MTP_ARCHITECTURES = ("glm4moe",)


def check_mtp_model(model: Model) -> None:
    """ValueError unless ik can run MTP on ``model``."""
    if model.architecture not in MTP_ARCHITECTURES:
        raise ValueError(f"ik_llama.cpp runs MTP only for {', '.join(MTP_ARCHITECTURES)} (GLM-4.5/4.6/4.7 MoE); "
                         f"this model is {model.architecture!r}")
    if model.n_nextn_layer == 0:
        raise ValueError("this model has no NextN (MTP) layer: use a GGUF that keeps the nextn tensors")
    if not model.config.mtp:
        raise ValueError("load the model with ModelConfig(mtp=True) so that ik keeps its NextN tensors")


class MtpSession(SpeculativeSession):
    """Drafts up to ``n_draft_max`` tokens per step with the NextN head; stops early below ``p_min``.

    Use with a main context built ``model.context().with_mtp(True)...build()`` on the same model,
    as ``SimpleInference(ctx, speculative=session)`` (so that prompt decodes warm the MTP cache) or
    ``generate(..., speculative=session)``.
    """

    def __init__(self, model: Model, n_draft_max: int = 3, p_min: float = 0.0, n_min: int = 0,
                 n_ctx: int = 4096, n_seq_max: int = 1, n_ubatch: int = 256, n_threads: int | None = None):
        super().__init__(n_draft_max, n_min, p_min)
        check_mtp_model(model)
        from .builder import default_threads
        from .context import Context

        self.model = model
        config = ContextConfig(n_ctx=n_ctx, n_batch=n_ubatch, n_ubatch=n_ubatch, n_seq_max=n_seq_max,
                               n_threads=n_threads or default_threads(), embeddings=True, mtp=True,
                               mtp_op=int(lib.MTP_OP_WARMUP))
        self.ctx = Context._create(model, config)
        self.n_embd = model.n_embd
        self._hidden: dict[int, np.ndarray] = {}  # fork -> main hidden state at its last cached position
        self._keep: Any = None  # the buffer ik reads the hidden states from, alive until the next decode
        self._batch = self.ctx.new_batch(n_ubatch)

    def attach(self, ctx: Context) -> None:
        if ctx.model is not self.model:
            raise ValueError("the MTP session was built for another model: use the main context's model")
        if not ctx.config.mtp:
            raise ValueError("the main context must be built with with_mtp(True)")
        if ctx.n_seq_max > self.ctx.n_seq_max:
            raise ValueError(f"build MtpSession with n_seq_max={ctx.n_seq_max} to serve all forks")

    # -- native calls ---------------------------------------------------------------------------------
    def _main_hidden(self, ctx: Context, rows: list[int]) -> np.ndarray:
        """Hidden states of batch rows of the main context's last decode (raw buffer, batch order)."""
        base = lib.llama_get_embeddings(ctx._ptr())
        if base == ffi.NULL:
            raise RuntimeError("the main context has no hidden states: build it with with_mtp(True)")
        n = max(rows) + 1
        all_rows = np.frombuffer(ffi.buffer(base, 4 * self.n_embd * n), dtype=np.float32).reshape(n, self.n_embd)
        return all_rows[rows].copy()

    def _run(self, op: int, tokens: list[int], start: int, fork: int, hidden: np.ndarray) -> None:
        """Decode ``tokens`` at ``start``.. of ``fork`` in the MTP context with op ``op``, one hidden row each."""
        mctx = self.ctx
        h = mctx._ptr()
        step = mctx.n_ubatch
        for i in range(0, len(tokens), step):
            chunk = tokens[i:i + step]
            # A stable copy per chunk: ik reads from the pointer's offset 0 during this decode.
            self._keep = ffi.new("float[]", np.ascontiguousarray(hidden[i:i + len(chunk)]).ravel().tolist())
            lib.llama_set_draft_input_hidden_state(h, self._keep)
            lib.llama_set_mtp_op_type(h, op)
            try:
                b = self._batch
                b.clear()
                for k, t in enumerate(chunk):
                    b.add(t, Pos(start + i + k, fork), logits=True)
                mctx.decode(b)
            finally:
                lib.llama_set_mtp_op_type(h, lib.MTP_OP_NONE)

    def _trim(self, fork: int, pos: int) -> None:
        if self.ctx.n_past(fork) > pos:
            self.ctx.truncate(Pos(pos, fork))

    # -- session hooks --------------------------------------------------------------------------------
    def prefilled(self, ctx: Context, fork: int, start: int, n: int) -> None:
        hidden = self._main_hidden(ctx, list(range(n)))
        prev = self._hidden.get(fork) if start > 0 else None
        if start > 0 and (prev is None or self.ctx.n_past(fork) < start):
            self._catch_up(ctx, fork, start)
            prev = self._hidden[fork]
        shifted = np.vstack([prev if prev is not None else np.zeros(self.n_embd, np.float32), hidden[:-1]])
        self._trim(fork, start)
        self._run(int(lib.MTP_OP_WARMUP), ctx._seqs[fork][start:start + n], start, fork, shifted)
        self._hidden[fork] = hidden[-1]

    def verified(self, ctx: Context, fork: int, start: int, rows: list[int], n_kept: int) -> None:
        if fork not in self._hidden or self.ctx.n_past(fork) < start:
            self._catch_up(ctx, fork, start)
        hidden = self._main_hidden(ctx, rows[:n_kept])
        shifted = np.vstack([self._hidden[fork], hidden[:-1]])
        self._trim(fork, start)
        self._run(int(lib.MTP_OP_UPDATE_ACCEPTED), ctx._seqs[fork][start:start + n_kept], start, fork, shifted)
        self._hidden[fork] = hidden[-1]

    def _catch_up(self, ctx: Context, fork: int, upto: int) -> None:
        """The MTP cache misses main positions below ``upto`` (an edit, restore or copy of the main
        cache): decode them again in the main context to get their hidden states, and warm up."""
        main = ctx._seqs[fork]
        keep = max(0, common_prefix(self.ctx._seqs[fork], main[:upto]) - 1)  # re-derive the hidden state of the last kept position too
        tokens = main[keep:upto]
        tail = main[upto:]
        ctx.truncate(Pos(keep, fork))
        self._hidden.pop(fork, None)
        self._trim(fork, keep)
        for i in range(0, len(tokens), ctx.n_batch):
            chunk = tokens[i:i + ctx.n_batch]
            batch = ctx.new_batch(len(chunk))
            batch.add_sequence(chunk, Pos(keep + i, fork))
            ctx.decode(batch)
            hidden = self._main_hidden(ctx, list(range(len(chunk))))
            prev = self._hidden.get(fork, np.zeros(self.n_embd, np.float32))
            self._run(int(lib.MTP_OP_WARMUP), chunk, keep + i, fork, np.vstack([prev, hidden[:-1]]))
            self._hidden[fork] = hidden[-1]
        if tail:  # tokens after `upto` were decoded by the caller's batch: put them back
            batch = ctx.new_batch(len(tail))
            batch.add_sequence(tail, Pos(upto, fork))
            ctx.decode(batch)

    def draft(self, ctx: Context, fork: int, last: int, limit: int) -> list[int]:
        t0 = time.perf_counter()
        pos = ctx.n_past(fork)
        if fork not in self._hidden or self.ctx._seqs[fork] != ctx._seqs[fork][:self.ctx.n_past(fork)] \
                or self.ctx.n_past(fork) < pos:
            self._trim(fork, 0)
            self._catch_up(ctx, fork, pos)
        self._trim(fork, pos)
        out: list[int] = []
        hidden = self._hidden[fork][None, :]
        cur = last
        mh = self.ctx._ptr()
        for i in range(min(limit, self.n_draft_max)):
            if pos + i >= self.ctx.n_ctx:
                break
            self._run(int(lib.MTP_OP_DRAFT_GEN), [cur], pos + i, fork, hidden)
            logits = self.ctx.logits(0, copy=False)
            token = int(np.argmax(logits))
            if self.p_min > 0:
                p = 1.0 / float(np.exp(logits - logits[token]).sum())
                if p < self.p_min:
                    break
            if self.ctx.vocab.is_eog(token):
                break
            out.append(token)
            emb = lib.llama_get_embeddings_ith(mh, 0)
            hidden = np.frombuffer(ffi.buffer(emb, 4 * self.n_embd), dtype=np.float32)[None, :].copy()
            cur = token
        self._trim(fork, pos)  # drop the draft's own KV
        self.stats.draft_seconds += time.perf_counter() - t0
        return out

    def close(self) -> None:
        self._batch.close()
        self.ctx.close()
