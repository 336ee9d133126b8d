"""``SimpleInference``: prefill, generate (streamed or whole), save / rollback, and parallel generation
on one :class:`Context` (slm_inference's ``SlmSimpleInference``).

Per token the loop makes one C call to sample (``ikl_sampler_next``), one to decode, and turns the
token into text through a per-vocabulary piece cache and an incremental UTF-8 decoder; everything
else is plain Python on short strings (scripts/bench.py measures what it costs).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .answer import Answer, AnswerStatus, Brake, BrakeFn, StopStrings
from .batch import Pos
from .enums import EditLevel
from .errors import KvCacheFullError
from .sampling import Sampler, SamplerConfig
from .speculative import SpeculativeSession
from ._lib import lib
from .streaming import Utf8Decoder

if TYPE_CHECKING:
    from .context import Context

__all__ = ["SimpleInference", "Checkpoint", "TextStream"]

GREEDY = SamplerConfig.greedy()


@dataclass(frozen=True)
class Checkpoint:
    """What :meth:`SimpleInference.save` remembers: each fork's length (or a state dump)."""

    lengths: tuple[int, ...]
    state: bytes | None = None


class TextStream:
    """Iterate to get text pieces as they are generated; ``answer`` (or ``answers``) once exhausted."""

    def __init__(self, gen: Iterator[tuple[int, str]], answers: list[Answer]):
        self._gen = gen
        self.answers = answers

    def __iter__(self) -> Iterator[str]:
        for _fork, piece in self._gen:
            yield piece

    def with_forks(self) -> Iterator[tuple[int, str]]:
        """Pieces tagged with their fork id (for parallel generation)."""
        yield from self._gen

    @property
    def answer(self) -> Answer:
        if not self.answers:
            raise RuntimeError("the stream has not finished yet: iterate it to the end first")
        return self.answers[0]


class _Run:
    """One fork's generation state."""

    def __init__(self, fork: int, sampler: Sampler, max_tokens: int, stop: Sequence[str],
                 brakes: Sequence[BrakeFn], owns_sampler: bool):
        self.fork = fork
        self.sampler = sampler
        self.owns_sampler = owns_sampler
        self.max_tokens = max_tokens
        self.stops = StopStrings(stop)
        self.brakes = brakes
        self.decoder = Utf8Decoder()
        self.tokens: list[int] = []
        self.text: list[str] = []
        self.delayed: list[str] = []
        self.status: AnswerStatus | None = None
        self.finish_reason = "stop"

    def end(self, status: AnswerStatus, reason: str) -> None:
        if self.status is None:
            self.status, self.finish_reason = status, reason


class SimpleInference:
    """Generation on ``context``; ``sampling`` is the default :class:`SamplerConfig` (greedy if None).

    Each fork gets its own C sampler, kept across calls so that penalties see the whole answer;
    ``reset_sampler(fork)`` starts it over.
    """

    def __init__(self, context: Context, sampling: SamplerConfig | None = None, formatter: Any = None,
                 speculative: SpeculativeSession | None = None):
        self.ctx = context
        self.speculative = speculative  # default session of generate(); also told about every prefill
        self.sampling = sampling or context.config.sampling_config or GREEDY
        self.sampling.validate(context.n_vocab)
        self.formatter = formatter
        self._samplers: dict[int, Sampler] = {}
        self._ready: dict[int, tuple[int, int]] = {}  # fork -> (decode serial, output row)
        self._pieces: dict[int, bytes] = {}  # the vocabulary is fixed: token -> bytes, and end-of-generation
        self._eog: dict[int, bool] = {}

    # -- prompt ---------------------------------------------------------------------------------------
    def tokenize(self, text: str, fork_id: int = 0) -> list[int]:
        """Tokens of ``text`` as a continuation of ``fork_id`` (BOS only at the start of a fork)."""
        add_special = self.ctx.n_past(fork_id) == 0
        return self.ctx.vocab.tokenize(text, add_special, True)

    def prefill(self, text_or_tokens: str | Sequence[int], fork_id: int = 0) -> int:
        """Decode a prompt after what ``fork_id`` holds (in ``n_batch`` chunks); returns its token count.

        Text is tokenized with special tokens parsed (chat templates contain them) and a BOS only
        when the fork is empty. If the cache overflows nothing of the prompt is kept.
        """
        tokens = (self.tokenize(text_or_tokens, fork_id) if isinstance(text_or_tokens, str)
                  else [int(t) for t in text_or_tokens])
        if not tokens:
            raise ValueError("the prompt is empty")
        ctx = self.ctx
        start = ctx.n_past(fork_id)
        if start + len(tokens) > ctx.n_ctx:
            raise KvCacheFullError(f"the prompt needs {len(tokens)} tokens after {start}; the context holds "
                                   f"{ctx.n_ctx}. Fix: a shorter prompt, rollback/truncate, or a larger n_ctx.", 1)
        try:
            for i in range(0, len(tokens), ctx.n_batch):
                chunk = tokens[i:i + ctx.n_batch]
                batch = ctx.new_batch(len(chunk))
                batch.add_sequence(chunk, Pos(start + i, fork_id))
                ctx.decode(batch)
                if self.speculative is not None:
                    self.speculative.prefilled(ctx, fork_id, start + i, len(chunk))
        except BaseException:
            ctx.truncate(Pos(start, fork_id))
            raise
        self._ready[fork_id] = (ctx._decode_serial, len(chunk) - 1)
        return len(tokens)

    def prefill_many(self, prompts: dict[int, str | Sequence[int]]) -> None:
        """Prefill several forks ({fork_id: text or tokens}) packed into as few decodes as possible.

        Forks whose last token lands in the final decode are ready at once; the others get their
        last token decoded again when generation starts (one token each).
        """
        ctx = self.ctx
        work = []
        for fork, prompt in prompts.items():
            tokens = self.tokenize(prompt, fork) if isinstance(prompt, str) else [int(t) for t in prompt]
            if not tokens:
                raise ValueError(f"the prompt of fork {fork} is empty")
            work.extend((t, ctx.n_past(fork) + i, fork, i == len(tokens) - 1) for i, t in enumerate(tokens))
        starts = {fork: ctx.n_past(fork) for fork in prompts}
        try:
            for i in range(0, len(work), ctx.n_batch):
                chunk = work[i:i + ctx.n_batch]
                batch = ctx.new_batch(len(chunk))
                for token, pos, fork, last in chunk:
                    batch.add(token, Pos(pos, fork), logits=last)
                ctx.decode(batch)
                for row, (_, _, fork, last) in enumerate(chunk):
                    if last:
                        self._ready[fork] = (ctx._decode_serial, row)
        except BaseException:
            for fork, start in starts.items():
                ctx.truncate(Pos(start, fork))
            raise

    def _logits_row(self, fork: int) -> int:
        """The output row holding ``fork``'s next-token logits, re-decoding its last token if stale."""
        ctx = self.ctx
        ready = self._ready.get(fork)
        if ready is not None and ready[0] == ctx._decode_serial:
            row = ready[1]
            # The row must still hold this fork's last token: a truncate since then removes it.
            if row in ctx._outputs and ctx._row_forks.get(row) == fork and \
                    ctx._row_pos.get(row) == ctx.n_past(fork) - 1:
                return row
        n = ctx.n_past(fork)
        if n == 0:
            raise ValueError(f"fork {fork} is empty: prefill a prompt first")
        last = ctx.tokens(fork)[-1]
        ctx.truncate(Pos(n - 1, fork))
        ctx.decode_steps([(last, fork)])
        self._ready[fork] = (ctx._decode_serial, 0)
        return 0

    # -- samplers -------------------------------------------------------------------------------------
    def _sampler(self, fork: int, sampling: SamplerConfig | None) -> tuple[Sampler, bool]:
        if sampling is not None and sampling is not self.sampling:
            return Sampler.create(self._fork_config(sampling, fork), self.ctx.model), True
        sampler = self._samplers.get(fork)
        if sampler is None:
            sampler = self._samplers[fork] = Sampler.create(self._fork_config(self.sampling, fork), self.ctx.model)
        return sampler, False

    @staticmethod
    def _fork_config(config: SamplerConfig, fork: int) -> SamplerConfig:
        """Fork 0 uses the seed as given; other forks a seed derived from it, so that forks sampled
        from one prompt give different answers, reproducibly."""
        if config.seed is None or fork == 0:
            return config
        return dataclasses.replace(config, seed=(config.seed + fork * 0x9E3779B97F4A7C15) % (1 << 64))

    def reset_sampler(self, fork_id: int | None = None) -> None:
        """Forget the penalty history and grammar state of one fork (or all)."""
        forks = list(self._samplers) if fork_id is None else [fork_id]
        for f in forks:
            s = self._samplers.pop(f, None)
            if s is not None:
                s.close()

    def close(self) -> None:
        """Free the samplers (the context stays open: it belongs to the caller)."""
        self.reset_sampler()

    def __enter__(self) -> SimpleInference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generation -----------------------------------------------------------------------------------
    def generate(self, max_tokens: int = 256, fork_id: int = 0, *, stop: Iterable[str] = (),
                 brakes: Iterable[BrakeFn] = (), sampling: SamplerConfig | None = None,
                 stream: bool = False, ignore_eos: bool = False,
                 speculative: SpeculativeSession | None = None) -> Answer | TextStream:
        """Generate after what ``fork_id`` holds (prefill first). Returns the :class:`Answer`, or with
        ``stream=True`` a :class:`TextStream` of text pieces whose ``answer`` is set at the end.

        Stops at an end-of-generation token, a stop string (never part of the text), ``max_tokens``,
        a brake, or a full context. ``ignore_eos`` generates through end-of-generation tokens
        (benchmarks, llama.cpp's ``--ignore-eos``). ``speculative`` (a session from
        :mod:`ikllama.speculative` or :class:`ikllama.MtpSession`) verifies drafted tokens in one
        batch; the output is the same as without it.
        """
        s = self.generate_parallel([fork_id], max_tokens, stop=stop, brakes=brakes, sampling=sampling,
                                   stream=True, ignore_eos=ignore_eos, speculative=speculative)
        if stream:
            return s
        for _ in s.with_forks():
            pass
        return s.answer

    def generate_parallel(self, fork_ids: Sequence[int], max_tokens: int = 256, *, stop: Iterable[str] = (),
                          brakes: Iterable[BrakeFn] = (), sampling: SamplerConfig | None = None,
                          stream: bool = False, ignore_eos: bool = False,
                          speculative: SpeculativeSession | None = None) -> list[Answer] | TextStream:
        """Generate for several prefilled forks at once: one decode per step carries one token of every
        fork still running; each fork has its own sampler and stop conditions.

        Returns the answers in ``fork_ids`` order, or with ``stream=True`` a :class:`TextStream`
        (use ``with_forks()`` for (fork_id, piece) pairs). Greedy answers equal generating each fork
        alone, token for token, except where the model itself is at a near-tie: interleaved KV cells
        change the order of ik's SIMD softmax sums in the last bit, which can flip such a tie.
        """
        forks = [int(f) for f in fork_ids]
        if not forks or len(set(forks)) != len(forks):
            raise ValueError("fork_ids must be distinct and not empty")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens!r} must be an int >= 1")
        stop, brakes = list(stop), list(brakes)
        if isinstance(stop, str):
            stop = [stop]
        for f in forks:
            self.ctx._check_fork(f)
            if self.ctx.n_past(f) == 0:
                raise ValueError(f"fork {f} is empty: prefill a prompt first")
        if sampling is not None:
            sampling.validate(self.ctx.n_vocab)
        answers: list[Answer] = []
        speculative = speculative if speculative is not None else self.speculative
        if speculative is not None:
            speculative.attach(self.ctx)
        gen = self._loop(forks, max_tokens, stop, brakes, sampling, answers, ignore_eos, speculative)
        s = TextStream(gen, answers)
        if stream:
            return s
        for _ in s.with_forks():
            pass
        return answers

    def _is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = self.ctx.vocab.is_eog(token)
        return eog

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.ctx.vocab.token_to_piece(token, False, 0)
        return piece

    def _loop(self, forks: list[int], max_tokens: int, stop: list[str], brakes: list[BrakeFn],
              sampling: SamplerConfig | None, answers: list[Answer], ignore_eos: bool = False,
              speculative: SpeculativeSession | None = None) -> Iterator[tuple[int, str]]:
        ctx = self.ctx
        runs = []
        for f in forks:
            sampler, owned = self._sampler(f, sampling)
            runs.append(_Run(f, sampler, max_tokens, stop, brakes, owned))
        first = {r.fork: self._logits_row(r.fork) for r in runs}
        if len(runs) > 1 and len({self._ready[r.fork][0] for r in runs}) > 1:
            first = self._refresh_rows([r.fork for r in runs])
        # Per fork: the output rows to sample from, the drafts they verify, the position of row 0.
        rows = {f: [row] for f, row in first.items()}
        drafts: dict[int, list[int]] = {f: [] for f in first}
        starts = {f: ctx.n_past(f) - 1 for f in first}
        fresh: set[int] = set()  # forks whose rows come from this loop's own decodes (not the prefill)
        is_eog = self._is_eog
        sample_next = lib.ikl_sampler_next
        ctx_h = ctx._ptr()
        stats = speculative.stats if speculative is not None else None
        t_start = time.perf_counter()
        try:
            active = runs
            while active:
                steps = []
                for run in active:
                    f = run.fork
                    accepted, token = 0, None
                    sampler_h = run.sampler._ptr()
                    for i, row in enumerate(rows[f]):
                        # The rows come from this loop's own decodes: sample without re-checking them.
                        token = sample_next(sampler_h, ctx_h, row)
                        if token < 0:
                            if token != lib.IKL_GRAMMAR_DEAD_END and token != lib.IKL_GRAMMAR_REJECTS:
                                run.sampler._raise(token, row)
                            run.end(AnswerStatus.INCOMPLETE, "grammar")
                            break
                        if not ignore_eos and is_eog(token):
                            run.end(AnswerStatus.COMPLETE, "stop")
                            break
                        run.tokens.append(token)
                        for out in self._emit(run, self._piece(token)):
                            yield f, out
                        if run.status is Brake.STOP:  # a STOP brake ends every fork
                            for other in runs:
                                other.end(AnswerStatus.PARTIAL, "stop")
                        if run.status is None and len(run.tokens) >= run.max_tokens:
                            run.end(AnswerStatus.PARTIAL, "length")
                        if run.status is not None:
                            break
                        if i < len(drafts[f]) and token == drafts[f][i]:
                            accepted += 1
                            continue
                        break
                    kept = 1 + accepted
                    if len(rows[f]) > kept:  # drop the rejected drafts from the cache
                        ctx.truncate(Pos(starts[f] + kept, f))
                    self._ready[f] = (ctx._decode_serial, rows[f][kept - 1])
                    if speculative is not None and f in fresh:
                        stats.drafted += len(drafts[f])  # type: ignore[union-attr]
                        stats.accepted += accepted  # type: ignore[union-attr]
                        speculative.verified(ctx, f, starts[f], rows[f], kept)
                    if run.status is None:
                        if ctx.n_past(f) + 1 >= ctx.n_ctx or sum(map(len, ctx._seqs)) + len(steps) >= ctx.n_ctx:
                            run.end(AnswerStatus.INCOMPLETE, "context")
                        else:
                            steps.append((token, f))
                active = [r for r in active if r.status is None]
                steps = [s for s in steps if any(r.fork == s[1] for r in active)]
                if not steps:
                    break
                self._decode_next(steps, runs, rows, drafts, starts, speculative)
                fresh.update(f for _, f in steps)
        finally:
            if stats is not None:
                stats.generated += sum(len(r.tokens) for r in runs)
                stats.seconds += time.perf_counter() - t_start
            for run in runs:
                if run.owns_sampler:
                    run.sampler.close()
            answers[:] = [self._answer(r) for r in runs]
        for run in runs:
            for out in self._finish(run):
                yield run.fork, out
        answers[:] = [self._answer(r) for r in runs]

    def _decode_next(self, steps: list[tuple[int, int]], runs: list[_Run], rows: dict[int, list[int]],
                     drafts: dict[int, list[int]], starts: dict[int, int],
                     speculative: SpeculativeSession | None) -> None:
        """Decode each fork's next token, plus the session's drafts after it, in one batch."""
        ctx = self.ctx
        for token, f in steps:
            starts[f] = ctx.n_past(f)
            drafts[f] = []
        if speculative is not None:
            free = ctx.n_ctx - sum(map(len, ctx._seqs)) - len(steps)
            left = {r.fork: r.max_tokens - len(r.tokens) - 1 for r in runs}
            for token, f in steps:
                limit = min(left[f], ctx.n_ctx - starts[f] - 2, free, ctx.n_batch - len(steps) -
                            sum(len(drafts[g]) for _, g in steps))
                d = speculative.draft(ctx, f, token, limit) if limit > 0 else []
                d = d[:max(0, limit)]
                drafts[f] = d if len(d) >= max(1, speculative.n_min) else []
                free -= len(drafts[f])
            speculative.stats.batches += 1
        if not any(drafts[f] for _, f in steps):
            ctx.decode_steps(steps)
            for i, (_, f) in enumerate(steps):
                rows[f] = [i]
        else:
            batch = ctx.new_batch(sum(1 + len(drafts[f]) for _, f in steps))
            row = 0
            for token, f in steps:
                seq = [token, *drafts[f]]
                for k, t in enumerate(seq):
                    batch.add(t, Pos(starts[f] + k, f), logits=True)
                rows[f] = list(range(row, row + len(seq)))
                row += len(seq)
            ctx.decode(batch)
        serial = ctx._decode_serial
        for _, f in steps:
            self._ready[f] = (serial, rows[f][0])

    def _refresh_rows(self, forks: list[int]) -> dict[int, int]:
        """Re-decode the last token of every fork in one batch so that all have logits together."""
        ctx = self.ctx
        last = [(ctx.tokens(f)[-1], f) for f in forks]
        for _, f in last:
            ctx.truncate(Pos(ctx.n_past(f) - 1, f))
        ctx.decode_steps(last)
        for i, (_, f) in enumerate(last):
            self._ready[f] = (ctx._decode_serial, i)
        return {f: i for i, (_, f) in enumerate(last)}

    def _emit(self, run: _Run, data: bytes) -> Iterator[str]:
        text = run.decoder.feed(data)
        if not text:
            return
        safe = run.stops.feed(text)
        if run.stops.matched is not None:
            run.end(AnswerStatus.COMPLETE, "stop")
        if not run.brakes:
            if safe:
                run.text.append(safe)
                yield safe
            return
        if not safe:
            return
        so_far = "".join(run.text)
        verdict = Brake.CONTINUE
        for brake in run.brakes:
            verdict = brake(so_far + "".join(run.delayed) + safe, safe, len(run.tokens), run.fork)
            if verdict is not Brake.CONTINUE:
                break
        if verdict is Brake.DELAY:
            run.delayed.append(safe)
            return
        if verdict in (Brake.CONTINUE, Brake.FINISH):
            out = "".join(run.delayed) + safe
            run.delayed.clear()
            run.text.append(out)
            yield out
            if verdict is Brake.FINISH:
                run.end(AnswerStatus.COMPLETE, "stop")
            return
        run.delayed.clear()
        if verdict is Brake.NEXT:
            run.end(AnswerStatus.COMPLETE, "stop")
        else:
            run.end(AnswerStatus.PARTIAL, "stop")
            run.status = Brake.STOP  # type: ignore[assignment]  # marker read by the loop, fixed in _answer

    def _finish(self, run: _Run) -> Iterator[str]:
        tail = run.decoder.flush()
        if tail and run.stops.matched is None:
            safe = run.stops.feed(tail)
            if safe:
                run.text.append(safe)
                yield safe
        rest = run.stops.flush()
        if run.delayed and run.status is not Brake.STOP:
            rest = "".join(run.delayed) + rest
            run.delayed.clear()
        if rest:
            run.text.append(rest)
            yield rest

    def _answer(self, run: _Run) -> Answer:
        status = run.status
        if status is Brake.STOP or status is None:
            status = AnswerStatus.PARTIAL
        text = "".join(run.text)
        thinking = None
        if self.formatter is not None:
            from .chat import split_thinking

            thinking, text = split_thinking(text, self.formatter)
        return Answer(text, status, run.fork, run.tokens, run.finish_reason, thinking, run.stops.matched)

    # -- branching ------------------------------------------------------------------------------------
    def save(self) -> Checkpoint:
        """Remember the cache (each fork's length; a full dump where the context cannot truncate)."""
        ctx = self.ctx
        lengths = tuple(ctx.n_past(f) for f in range(ctx.n_seq_max))
        if ctx.edit_level is EditLevel.DUMP_RESTORE:
            return Checkpoint(lengths, ctx.dump())
        return Checkpoint(lengths)

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Return to ``checkpoint``: forks are truncated back (or the dump restored); samplers restart."""
        ctx = self.ctx
        if checkpoint.state is not None:
            ctx.restore(checkpoint.state)
        else:
            for fork, n in enumerate(checkpoint.lengths):
                if ctx.n_past(fork) < n:
                    raise ValueError(f"fork {fork} holds {ctx.n_past(fork)} tokens, fewer than the checkpoint's {n}: "
                                     "it was edited below the checkpoint, which can no longer be restored")
                ctx.truncate(Pos(n, fork))
        self._ready.clear()
        self.reset_sampler()
