"""Continuous batching over one :class:`~ikllama.context.Context`, owned by one thread.

Every step is one ``llama_decode`` that carries the pending token of every decoding sequence plus
prompt chunks of admitted requests, in arrival order, within ``prefill_budget`` tokens, so a long
prompt is spread over several steps instead of stalling everyone's next token. The KV cells are
shared: one request may use the whole context while it is alone. Finished sequences stay in the
cache (idle) so that a later request can reuse the longest common prefix of any sequence, resident
or idle (``llama_kv_cache_seq_cp`` from a donor); idle sequences are evicted least recently used
first when cells or sequences run out. Nothing here blocks on the network: the HTTP side only
posts to the inbox and reads events (see :mod:`.jobs`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..batch import Pos, common_prefix
from ..context import Context
from ..errors import DecodeError, KvCacheFullError
from ..sampling import Sampler
from .choices import Choice, Job
from .jobs import DoneEvent, ErrorEvent, GenRequest
from .promptcache import HostPromptCache

__all__ = ["Engine"]

log = logging.getLogger("ikllama.server")

_FREE, _IDLE, _BUSY = "free", "idle", "busy"
_OWN_PREFIX_SLACK = 4  # prompt tokens worth recomputing to stay contiguous


class Engine:
    """The scheduler thread; ``submit`` / ``cancel`` / ``shutdown`` are safe from any thread.

    The context must have ``n_seq_max`` sequences and stays owned by the engine until
    :meth:`shutdown` returns (then the caller closes it).
    """

    def __init__(self, ctx: Context, *, prefill_budget: int = 128, idle_cache: bool = True,
                 metrics: Any = None, host_cache: HostPromptCache | None = None):
        self.ctx = ctx
        self.model = ctx.model
        self.n_seq = ctx.n_seq_max
        self.prefill_budget = min(prefill_budget, ctx.n_ubatch, ctx.n_batch)
        self.idle_cache = idle_cache
        self.host_cache = host_cache  # evicted idle sequences go there (see .promptcache)
        self.metrics = metrics
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting: deque[GenRequest] = deque()
        self._jobs: list[Job] = []
        self._state = [_FREE] * self.n_seq
        self._last_used = [0.0] * self.n_seq
        self._owner: list[Choice | Job | None] = [None] * self.n_seq
        self._batch = ctx.new_batch(ctx.n_batch)
        self._pieces: dict[int, bytes] = {}
        self._texts: dict[int, str] = {}
        self._eog: dict[int, bool] = {}
        self._flushers: list[Callable[[], None]] = []  # see client.Mailbox: run after every turn
        self._bell = threading.Event()  # rung by every submit/call/cancel; the runner sleeps on it when idle
        self._stopped = threading.Event()
        self._runner: Any = None
        self._own_runner: Any = None
        self._accepting = True
        self._drain = False
        self.steps = 0
        self.prompt_tokens_total = 0
        self.generated_tokens_total = 0
        self.cached_tokens_total = 0

    # -- public, any thread ---------------------------------------------------------------------
    def start(self) -> None:
        """Run this engine on a thread of its own (a server with several models shares one: see :mod:`.runner`)."""
        from .runner import EngineRunner

        self._own_runner = EngineRunner().start()
        self._own_runner.add(self)

    def submit(self, request: GenRequest) -> None:
        """Queue ``request``; its events arrive through ``request.sink`` (an ErrorEvent if refused)."""
        if not self._accepting:
            request.sink(ErrorEvent(503, "the server is shutting down", "unavailable"))
            return
        self._inbox.put(request)
        self._bell.set()

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the engine thread between two steps; its result (or exception) comes in the Future.

        Every native computation of the server goes through the engine thread (embeddings too): ggml's
        OpenMP keeps one thread team per calling thread, and a second team on a machine with few cores
        turns every barrier of the decoding team into a sleep (measured: 5.5 → 16 ms per token).
        """
        future: Future = Future()
        if not self._accepting:
            future.set_exception(RuntimeError("the server is shutting down"))
        else:
            self._inbox.put(_Call(fn, future))
            self._bell.set()
        return future

    def add_flusher(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` on the engine thread after every turn (delivers the events its sinks collected)."""
        self._flushers = [*self._flushers, flush]

    def cancel(self, request: GenRequest) -> None:
        """Free ``request``'s sequences before the next step (no further events are sent)."""
        request.cancel()
        self._bell.set()

    def shutdown(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting; with ``drain`` finish what was admitted or queued, else fail it. Joins the thread."""
        self._accepting = False
        self._drain = drain
        self._inbox.put(StopIteration)
        self._bell.set()
        if self._runner is not None:
            self._stopped.wait(timeout)
        if self._own_runner is not None:
            self._own_runner.stop(timeout)

    @property
    def busy(self) -> bool:
        """Whether a step is due (admitted or waiting requests); the runner sleeps when no engine is busy."""
        return bool(self._jobs or self._waiting)

    @property
    def n_waiting(self) -> int:
        return len(self._waiting)

    @property
    def n_active(self) -> int:
        return len(self._jobs)

    def slots(self) -> list[dict[str, Any]]:
        """A snapshot for ``/slots`` (read without locking: values may be one step old)."""
        out = []
        for seq in range(self.n_seq):
            owner = self._owner[seq]
            job = owner.job if isinstance(owner, Choice) else owner
            out.append({"id": seq, "state": self._state[seq], "n_cached": len(self.ctx._seqs[seq]),
                        "request_id": job.request.id if job is not None else None,
                        "n_decoded": len(owner.tokens) if isinstance(owner, Choice) else 0,
                        "prefilling": bool(job is not None and job.prefilling)})
        return out

    # -- slots (llama-server's /slots/{id}?action=...): run on the engine thread through call() --------
    def save_slot(self, seq: int, path: Any) -> int:
        """Write sequence ``seq``'s cells to ``path`` atomically; returns the tokens saved."""
        self.ctx.save_sequence(path, seq)
        return len(self.ctx._seqs[seq])

    def restore_slot(self, seq: int, path: Any) -> int:
        """Load a saved sequence into ``seq`` (not busy); it becomes an idle prefix donor. Returns its tokens."""
        self._check_not_busy(seq)
        self.ctx.restore_sequence(path.read_bytes(), seq)
        self._state[seq] = _IDLE if self.ctx._seqs[seq] else _FREE
        self._last_used[seq] = time.monotonic()
        return len(self.ctx._seqs[seq])

    def erase_slot(self, seq: int) -> int:
        """Drop sequence ``seq`` (not busy) from the cache; returns the tokens it held."""
        self._check_not_busy(seq)
        n = len(self.ctx._seqs[seq])
        self.ctx.drop(seq)
        self._state[seq] = _FREE
        return n

    def _check_not_busy(self, seq: int) -> None:
        if self._state[seq] == _BUSY:
            raise ValueError(f"slot {seq} is processing a request; retry when it is idle")

    # -- helpers used by Choice ---------------------------------------------------------------------
    def is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = self.ctx.vocab.is_eog(token)
        return eog

    def piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.ctx.vocab.token_to_piece(token, False, 0)
        return piece

    def token_text(self, token: int) -> str:
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = self.ctx.vocab.token_to_piece(token, True, 0).decode("utf-8", "replace")
        return text

    def observe_token(self, job: Job, gap: float | None) -> None:
        self.generated_tokens_total += 1
        if self.metrics is not None:
            if gap is None:
                self.metrics.ttft.observe(time.monotonic() - job.request.arrived)
            else:
                self.metrics.itl.observe(gap)

    def release(self, choice: Choice) -> None:
        """Hand a finished choice's sequence back: idle (kept for prefix reuse) or free."""
        self._set_idle(choice.seq)
        choice.close()

    # -- the loop -----------------------------------------------------------------------------------
    def poll(self) -> bool:
        """Take new work, admit, and run at most one step (runner thread only); False once stopped."""
        try:
            return self._loop_once()
        except BaseException as exc:  # the engine must never die silently: fail everything, then stop
            log.exception("engine stopped by an unexpected error")
            self._accepting = False
            self._fail_all(500, f"engine error: {exc}")
            return False
        finally:
            for flush in self._flushers:
                flush()

    def _loop_once(self) -> bool:
        if not self._take_inbox():
            if not self._drain:
                self._fail_all(503, "the server is shutting down")
                return False
            self._accepting = False
            if not self._jobs and not self._waiting:
                return False
        self._reap_cancelled()
        self._admit()
        if self._jobs:
            self._step()
        return True

    def _take_inbox(self) -> bool:
        """Move new requests to the waiting queue; False once shutdown was asked for."""
        go_on = True
        try:
            while True:
                item = self._inbox.get_nowait()
                if item is StopIteration:
                    go_on = False
                elif isinstance(item, _Call):
                    item.run()  # between steps, like everything else the engine does
                else:
                    self._waiting.append(item)
        except queue.Empty:
            pass
        return go_on and self._accepting

    def _reap_cancelled(self) -> None:
        if any(r.cancelled for r in self._waiting):
            self._waiting = deque(r for r in self._waiting if not r.cancelled)
        for job in [j for j in self._jobs if j.request.cancelled]:
            self._end_job(job, notify=False)

    # -- admission ------------------------------------------------------------------------------------
    def _admit(self) -> None:
        while self._waiting:
            req = self._waiting[0]
            if not self._try_admit(req):
                return  # arrival order: nobody overtakes the head of the queue
            self._waiting.popleft()

    def _try_admit(self, req: GenRequest) -> bool:
        spare = [s for s in range(self.n_seq) if self._state[s] != _BUSY]
        if len(spare) < req.n:
            return False
        prompt = req.prompt
        seqs = self.ctx._seqs
        donor, reuse = None, 0
        for s in range(self.n_seq):
            p = common_prefix(seqs[s], prompt) if seqs[s] else 0
            if p > reuse:
                donor, reuse = s, p
        # Continue the donor in place when that loses nothing worth keeping: the prompt repeats or extends
        # everything the donor holds (a retry, the next chat turn). Otherwise take a free sequence, else the least
        # recently used idle one (its tail goes to the host cache), and copy the donor's prefix into it.
        lossless = donor is not None and reuse >= min(len(prompt), len(seqs[donor])) - 1
        if donor is not None and donor in spare and lossless:
            target = donor
        else:
            target = min(spare, key=lambda s: (self._state[s] != _FREE, self._last_used[s]))
        own = common_prefix(seqs[target], prompt) if seqs[target] else 0
        if donor == target or (donor is not None and own >= reuse - _OWN_PREFIX_SLACK):
            # The target's own cells start the prompt (nearly) as far: keep them rather than share the donor's, so
            # the sequence stays in one run of cells (a shared prefix elsewhere costs every decode a second run).
            donor, reuse = None, own
        found = self.host_cache.best(prompt, reuse) if self.host_cache is not None else None
        host = found[0] if found is not None else None
        if found is not None:  # a sequence evicted earlier starts the prompt further than any resident one
            donor, reuse = None, found[1]
        reuse = min(reuse, len(prompt) - 1)  # the last prompt token is decoded again for its logits
        others = sorted((s for s in spare if s != target), key=lambda s: (self._state[s] != _FREE,
                                                                          self._last_used[s]))[:req.n - 1]
        need = len(prompt) - reuse + req.n + (len(host.tokens) - reuse if host is not None else 0)
        if not self._make_room(need, keep={target, *others} | ({donor} if donor is not None else set())):
            return False
        if donor is not None and not self.ctx._seqs[donor]:
            donor = None  # alone, _make_room may have dropped the donor (or the target) to fit the prompt
        try:
            samplers = self._samplers(req)
        except ValueError as exc:
            req.sink(ErrorEvent(400, str(exc), "invalid_request_error"))
            return True
        ctx = self.ctx
        for s in others:  # the other choices' sequences are emptied below
            self._keep_on_host(s, kept=0)
        self._keep_on_host(target, kept=reuse if donor is None and host is None else 0)
        if host is not None and not self._restore_from_host(host.data, target):
            host = None
        if donor is not None:
            ctx.copy_fork(donor, target)
        reuse = min(reuse, common_prefix(ctx._seqs[target if donor is None else donor], prompt))
        ctx.truncate(Pos(reuse, target))
        job = Job(req)
        job.admitted = time.monotonic()
        job.prompt_done = job.cached = reuse
        job.choices.append(Choice(job, 0, target, samplers[0]))
        job.extra_samplers = samplers[1:]
        job.reserved = list(others)
        for s in (target, *others):
            self._state[s] = _BUSY
            self._owner[s] = job
        for s in others:
            ctx.drop(s)
        self._owner[target] = job.choices[0]
        self._jobs.append(job)
        self.cached_tokens_total += reuse
        if self.metrics is not None:
            self.metrics.queue_wait.observe(job.admitted - req.arrived)
        return True

    def _samplers(self, req: GenRequest) -> list[Sampler]:
        out: list[Sampler] = []
        try:
            for i in range(req.n):
                config = req.sampling
                if i and config.seed is not None:  # n choices of one seeded request differ, reproducibly
                    config = type(config)(**{**config.__dict__, "seed": (config.seed + i) % (1 << 64)})
                out.append(Sampler.create(config, self.model))
        except BaseException:
            for s in out:
                s.close()
            raise
        return out

    def _make_room(self, cells: int, keep: set[int]) -> bool:
        """Evict idle sequences (LRU) until ``cells`` KV cells are free; False if that is not enough."""
        ctx = self.ctx
        while ctx.n_ctx - ctx.kv_cells_used < cells:
            victims = [s for s in range(self.n_seq) if self._state[s] == _IDLE and s not in keep and ctx._seqs[s]]
            if not victims:
                loose = [s for s in keep if self._state[s] != _BUSY and ctx._seqs[s]]
                if self._jobs or not loose:
                    return False
                victims = loose  # alone: the request may have the whole context
            victim = min(victims, key=lambda s: self._last_used[s])
            self._keep_on_host(victim, kept=0)
            ctx.drop(victim)
        return True

    def _keep_on_host(self, seq: int, kept: int) -> None:
        """Before idle sequence ``seq`` loses all but ``kept`` tokens, copy its state to the host cache."""
        cache, tokens = self.host_cache, self.ctx._seqs[seq]
        if cache is None or self._state[seq] != _IDLE or not cache.wants(len(tokens) - kept):
            return
        try:
            cache.put(list(tokens), self.ctx.dump_sequence(seq))
        except Exception:  # noqa: BLE001 - a cache that cannot save must not fail the request
            log.exception("could not keep sequence %d in the host prompt cache", seq)

    def _restore_from_host(self, data: bytes, seq: int) -> bool:
        try:
            self.ctx.restore_sequence(data, seq)
            return True
        except Exception:  # noqa: BLE001 - e.g. no contiguous room: the prompt is prefilled instead
            log.warning("host prompt cache entry could not be restored; prefilling instead", exc_info=True)
            return False

    def _set_idle(self, seq: int) -> None:
        self._owner[seq] = None
        self._last_used[seq] = time.monotonic()
        if self.idle_cache and self.ctx._seqs[seq]:
            self._state[seq] = _IDLE
        else:
            self.ctx.drop(seq)
            self._state[seq] = _FREE

    # -- one step -----------------------------------------------------------------------------------
    def _step(self) -> None:
        decoding = [c for j in self._jobs if not j.prefilling for c in j.choices if c.pending is not None]
        drafts = self._drafts(decoding)
        n_rows = len(decoding) + sum(map(len, drafts))
        if decoding:  # a step's time is every decoder's inter-token gap: keep its prompt share small
            # Every decoder waits for the step's prompt share, so with more than four decoders the share shrinks
            # (the total wait, decoders x prompt time, stays about what four decoders see with the full budget).
            share = self.prefill_budget * 4 // max(4, len(decoding))
            budget = max(share - n_rows, min(32, share))
            budget = min(budget, self.ctx.n_batch - n_rows)
        else:  # nobody waits for a token: prompts go in at full speed
            budget = self.ctx.n_ubatch
        chunks: list[tuple[Job, int]] = []
        for job in self._jobs:
            if budget <= 0:
                break
            if job.prefilling:
                take = min(budget, len(job.request.prompt) - job.prompt_done)
                chunks.append((job, take))
                budget -= take
        if not decoding and not chunks:
            self._finish_done_jobs()
            return
        started = time.monotonic()
        try:
            rows = self._decode(decoding, drafts, chunks)
        except KvCacheFullError:
            self._relieve_full_cache(decoding)
            return
        except DecodeError as exc:
            log.error("decode failed: %s", exc)
            for job in {c.job for c in decoding} | {j for j, _ in chunks}:
                self._end_job(job, error=ErrorEvent(500, f"decode failed: {exc}", "decode_error"))
            return
        elapsed = time.monotonic() - started
        self.steps += 1
        n_prompt = sum(take for _, take in chunks)
        self.prompt_tokens_total += n_prompt
        if self.metrics is not None:
            self.metrics.step(n_prompt, n_rows, elapsed)
        for choice, draft, row in zip(decoding, drafts, rows):
            if draft:
                choice.take_verified(self.ctx, list(range(row, row + 1 + len(draft))), draft, self)
            else:
                choice.take(self.ctx, row, self)
        for (job, take), row in zip(chunks, rows[len(decoding):]):
            job.prompt_done += take
            if not job.prefilling:
                job.prefill_ended = time.monotonic()
                self._start_choices(job, row)
        self._finish_done_jobs()

    def _drafts(self, decoding: list[Choice]) -> list[list[int]]:
        """Prompt-lookup drafts for the decoding choices whose request asked for speculation (else [])."""
        if all(c.job.request.speculative is None for c in decoding):
            return [[] for _ in decoding]  # the common case: no C call for the free cells
        ctx = self.ctx
        out: list[list[int]] = []
        room = min(ctx.n_batch - len(decoding) - 1, (ctx.n_ctx - ctx.kv_cells_used - len(decoding)) // 2,
                   self.prefill_budget)
        for c in decoding:
            session = c.job.request.speculative
            draft: list[int] = []
            if session is not None and room > 0:
                req = c.job.request
                left = (req.max_tokens - len(c.tokens) - 1) if req.max_tokens is not None else room
                limit = min(room, left, ctx.n_ctx - len(ctx._seqs[c.seq]) - 2)
                draft = session.draft(ctx, c.seq, c.pending, limit)[:max(0, limit)] if limit > 0 else []
                if len(draft) < max(1, session.n_min):
                    draft = []
                room -= len(draft)
            out.append(draft)
        return out

    def _decode(self, decoding: list[Choice], drafts: list[list[int]], chunks: list[tuple[Job, int]]) -> list[int]:
        """One llama_decode; returns the first output row of each decoding choice (its drafts' rows
        follow it), then the row of each chunk."""
        ctx = self.ctx
        speculating = any(drafts)
        if not chunks and not speculating:
            ctx.decode_steps([(c.pending, c.seq) for c in decoding])
            return list(range(len(decoding)))
        b = self._batch
        b.clear()
        rows = []
        for c, draft in zip(decoding, drafts):
            rows.append(len(b))
            start = len(ctx._seqs[c.seq])
            b.add(c.pending, Pos(start, c.seq), True)
            for k, token in enumerate(draft, start=1):
                b.add(token, Pos(start + k, c.seq), True)
        for job, take in chunks:
            start = job.prompt_done
            tokens = job.request.prompt[start:start + take]
            last = start + take == len(job.request.prompt)
            b.add_sequence(tokens, Pos(start, job.primary), logits_last=last)
            rows.append(len(b) - 1)
        ctx.decode(b)
        return rows

    def _start_choices(self, job: Job, row: int) -> None:
        """The prompt is in: copy it to the other choices' sequences and sample every first token."""
        for i, seq in enumerate(job.reserved, start=1):
            self.ctx.copy_fork(job.primary, seq)
            choice = Choice(job, i, seq, job.extra_samplers[i - 1])
            job.choices.append(choice)
            self._owner[seq] = choice
        job.reserved = []
        job.extra_samplers = []
        for choice in list(job.choices):
            choice.take(self.ctx, row, self)

    def _relieve_full_cache(self, decoding: list[Choice]) -> None:
        """No room for this step: evict idle sequences; if none, end the newest job."""
        if self._make_room(len(decoding) + 1, keep=set()):
            return
        victim = max(self._jobs, key=lambda j: j.request.arrived)
        if victim.prefilling or victim.reserved:
            self._end_job(victim, error=ErrorEvent(400, "the KV cache is full: the prompt no longer fits beside "
                                                   "the running requests. Retry, or lower max_tokens.",
                                                   "context_length_exceeded"))
        else:
            for choice in victim.choices:
                choice.finish(self, "length")
        self._finish_done_jobs()

    # -- ending -------------------------------------------------------------------------------------
    def _finish_done_jobs(self) -> None:
        for job in [j for j in self._jobs if j.finished]:
            self._jobs.remove(job)
            now = time.monotonic()
            req = job.request
            first = job.prefill_ended or now
            req.sink(DoneEvent(len(req.prompt), job.cached, sum(len(c.tokens) for c in job.choices),
                               job.admitted - req.arrived, first - job.admitted, now - first,
                               job.drafted, job.accepted))

    def _end_job(self, job: Job, notify: bool = True, error: ErrorEvent | None = None) -> None:
        """Take ``job`` out now (cancelled or failed); its sequences keep what they hold for reuse."""
        if job in self._jobs:
            self._jobs.remove(job)
        for choice in job.choices:
            if choice.finish_reason is None:
                choice.finish_reason = "cancelled"
                self.release(choice)
        for seq in [s for s in range(self.n_seq) if self._owner[s] is job]:
            self._set_idle(seq)
        for sampler in job.extra_samplers:
            sampler.close()
        job.reserved, job.extra_samplers = [], []
        if notify and error is not None:
            job.request.sink(error)

    def _fail_all(self, status: int, message: str) -> None:
        for job in list(self._jobs):
            self._end_job(job, error=ErrorEvent(status, message, "unavailable"))
        while self._waiting:
            self._waiting.popleft().sink(ErrorEvent(status, message, "unavailable"))
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, GenRequest):
                item.sink(ErrorEvent(status, message, "unavailable"))
            elif isinstance(item, _Call):
                item.future.set_exception(RuntimeError(message))


class _Call:
    """A callable posted to the engine thread (see :meth:`Engine.call`)."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], Any], future: Future):
        self.fn, self.future = fn, future

    def run(self) -> None:
        if self.future.set_running_or_notify_cancel():
            try:
                self.future.set_result(self.fn())
            except BaseException as exc:  # the caller gets it; the engine goes on
                self.future.set_exception(exc)
