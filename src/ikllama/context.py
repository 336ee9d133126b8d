"""``Context``: a KV cache on a model, decoding batches and sampling (slm_inference's context).

A context remembers the tokens each sequence (fork) holds. That lets it check every batch before
ik sees it (ik aborts on out-of-order positions and other slips), roll the cache back when a
decode fails, and re-encode instead of shifting when ik's K-shift would be wrong (Hadamard K).
One thread at a time: a second thread gets :class:`ConcurrentUseError` instead of a crash.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _log
from ._context_kv import KvEditMixin
from ._context_state import StateMixin
from ._handle import NativeHandle, exclusive
from ._lib import ffi, lib
from .batch import Batch, Pos, Token
from .builder import ContextConfig
from .enums import EditLevel
from .errors import (ContextError, DecodeAbortedError, DecodeError, KvCacheFullError, RpcConnectionLostError,
                     UnsupportedConfigError, with_native)
from .kvcache import KvCacheSize, kv_cache_bytes, parse_measured
from .kvrules import check_kv_config
from .rpc import guard as _rpc_guard

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Context", "Timings"]


@dataclass(frozen=True)
class Timings:
    """ik's performance counters for a context (``llama_get_timings``); times in milliseconds."""

    t_start_ms: float
    t_end_ms: float
    t_load_ms: float
    t_sample_ms: float
    t_p_eval_ms: float
    t_eval_ms: float
    n_sample: int
    n_p_eval: int
    n_eval: int

    @property
    def prompt_tokens_per_second(self) -> float:
        return 1e3 * self.n_p_eval / self.t_p_eval_ms if self.t_p_eval_ms > 0 else 0.0

    @property
    def eval_tokens_per_second(self) -> float:
        return 1e3 * self.n_eval / self.t_eval_ms if self.t_eval_ms > 0 else 0.0


def _uses_cpu_attention(model: Model, config: ContextConfig) -> bool:
    """Whether attention runs on the CPU backend, whose flash-attention rules then apply."""
    gpu_built = any(getattr(lib, f"ggml_cpu_has_{b}")() for b in ("cuda", "vulkan", "metal"))
    remote = bool(model.config.rpc_servers)
    return model.config.n_gpu_layers == 0 or not config.offload_kqv or not (gpu_built or remote)


def _rpc_lock(model: Model) -> Any:
    """The process-wide RPC lock when ``model`` uses peers (their connections are shared), else a no-op."""
    return _rpc_guard.LOCK if model._rpc is not None else contextlib.nullcontext()


def _check_rpc_usable(rpc: _rpc_guard.RpcAttachment) -> None:
    _rpc_guard.sync()
    if rpc.lost is not None:
        raise RpcConnectionLostError(f"this model lost an RPC peer earlier ({rpc.lost}); close it and its contexts "
                                     "and load the model again.", _rpc_guard.failed_peer(rpc.lost))


def _context_params(config: ContextConfig, abort_flag: Any) -> Any:
    p = lib.llama_context_default_params()
    p.seed = 0xFFFFFFFF if config.seed is None else config.seed
    p.n_ctx = config.n_ctx
    p.n_batch = config.n_batch
    p.n_ubatch = config.n_ubatch
    p.n_seq_max = config.n_seq_max
    p.n_threads = config.n_threads
    p.n_threads_batch = config.n_threads_batch or config.n_threads
    p.rope_scaling_type = int(config.rope_scaling)
    p.pooling_type = int(config.pooling)
    p.attention_type = int(config.attention)
    p.rope_freq_base = config.rope_freq_base
    p.rope_freq_scale = config.rope_freq_scale
    p.yarn_ext_factor = config.yarn_ext_factor
    p.yarn_attn_factor = config.yarn_attn_factor
    p.yarn_beta_fast = config.yarn_beta_fast
    p.yarn_beta_slow = config.yarn_beta_slow
    p.yarn_orig_ctx = config.yarn_orig_ctx
    p.type_k = int(config.kv.type_k)
    p.type_v = int(config.kv.type_v)
    p.k_cache_hadamard = config.kv.effective_k_hadamard
    p.v_cache_hadamard = config.kv.effective_v_hadamard
    p.embeddings = config.embeddings or config.mtp
    p.offload_kqv = config.offload_kqv
    p.flash_attn = config.flash_attn
    p.mla_attn = config.mla_attn
    p.attn_max_batch = config.attn_max_batch
    p.fused_moe_up_gate = config.fused_moe
    p.mtp = config.mtp
    p.mtp_op_type = config.mtp_op
    p.abort_callback = ffi.addressof(lib, "ikl_abort_flag_cb")
    p.abort_callback_data = abort_flag
    return p


class Context(KvEditMixin, StateMixin, NativeHandle):
    """A decoding context (owns a ``llama_context *``; keeps its :class:`Model` alive)."""

    _kind = "context"

    def __init__(self, model: Model, handle: Any, config: ContextConfig, abort_flag: Any):
        super().__init__(handle)
        self.model = model
        self.config = config
        self._abort_flag = abort_flag
        self.n_ctx = int(lib.llama_n_ctx(handle))
        self.n_batch = int(lib.llama_n_batch(handle))
        self.n_ubatch = int(lib.llama_n_ubatch(handle))
        self.n_seq_max = config.n_seq_max  # llama_n_seq_max reports the KV size in ik, not this
        self.n_vocab = model.n_vocab
        self._seqs: list[list[int]] = [[] for _ in range(self.n_seq_max)]
        self._outputs: list[int] = []  # batch rows of the last decode that have logits
        self._decode_serial = 0  # bumped by every successful decode: tells callers whether logits are fresh
        self._row_forks: dict[int, int] = {}  # output row -> fork of the last decode
        self._row_pos: dict[int, int] = {}  # output row -> position of its token
        self._samplers: dict[int, Any] = {}  # fork -> Sampler, when built with_sampling
        raw = ffi.new("struct llama_batch *", lib.llama_batch_init(config.n_seq_max, 0, 1))
        self._steps = ffi.gc(raw, lambda b: lib.llama_batch_free(b[0]))  # one token per fork, all with logits
        for i in range(config.n_seq_max):
            self._steps.n_seq_id[i] = 1
            self._steps.logits[i] = 1
        self.vocab = model._tok_impl  # usable while this context is open, even after model.close()
        self._fp = self._fingerprint()
        kv = config.kv
        self._kv_size = kv_cache_bytes(model, self.n_ctx, kv.type_k, kv.type_v, config.flash_attn)
        self.kv_size_reported: KvCacheSize | None = None

    @classmethod
    def _create(cls, model: Model, config: ContextConfig) -> Context:
        config.validate()
        model._ptr()
        if model.config.vocab_only:
            raise UnsupportedConfigError("this model was loaded with vocab_only=True: it has no weights to "
                                         "decode with. Fix: load it without vocab_only.")
        kv = config.kv
        check_kv_config(kv, flash_attn=config.flash_attn, head_dim_k=model.head_dim, head_dim_v=model.head_dim_v,
                        cpu_attention=_uses_cpu_attention(model, config),
                        has_avx512_bf16=bool(lib.ggml_cpu_has_avx512_bf16()),
                        cuda=bool(lib.ggml_cpu_has_cuda()), vulkan=bool(lib.ggml_cpu_has_vulkan()))
        for which, t, dim in (("K", kv.type_k, model.head_dim), ("V", kv.type_v, model.head_dim_v)):
            block = int(lib.ggml_blck_size(int(t)))
            if dim and dim % block:
                raise UnsupportedConfigError(f"{which} cache type {t.name} packs {block} values per block, which "
                                             f"does not divide this model's head size {dim}. Fix: pick another type.")
        if config.mtp and model.architecture != "glm4moe":
            raise UnsupportedConfigError(f"MTP runs only for glm4moe models in ik; this one is {model.architecture!r}")
        # ik asserts in llama_decode (src/llama.cpp:4095, 4139) on these combinations: refuse them here.
        if model.config.mtp and not config.mtp:
            raise UnsupportedConfigError("this model was loaded with ModelConfig(mtp=True): ik decodes it only in "
                                         "MTP contexts. Fix: build with with_mtp(True), or load it without mtp.")
        if model.n_nextn_layer > 0 and config.embeddings and not config.mtp:
            raise UnsupportedConfigError("ik cannot extract embeddings from a model with NextN (MTP) layers outside "
                                         "an MTP context. Fix: build with with_mtp(True) (embeddings come with it).")
        abort_flag = ffi.new("int *")
        params = _context_params(config, abort_flag)
        model_ptr = model._ptr()
        rpc = model._rpc
        if rpc is not None:
            _check_rpc_usable(rpc)
        mark = _log.mark()
        captured = _log.capture_start()
        try:
            with _rpc_lock(model):
                ptr = lib.llama_init_from_model(model_ptr, params)
        finally:
            _log.capture_stop()
        if ptr == ffi.NULL:
            raise ContextError(with_native("ik_llama.cpp could not create the context "
                                           "(out of memory, or an unsupported parameter)", _log.since(mark)))
        # The destructor keeps the model's cdata alive so that the model can never be freed first.
        handle = ffi.gc(ptr, lambda p, _m=model_ptr: lib.llama_free(p))
        ctx = cls(model, handle, config, abort_flag)
        ctx.kv_size_reported = parse_measured(captured)
        try:
            if rpc is not None:
                with _rpc_guard.LOCK:
                    _rpc_guard.claim(rpc.addresses, ctx)
            model._attach(ctx)
        except BaseException:
            _rpc_guard.release(ctx)
            with _rpc_lock(model):
                ffi.release(handle)
            raise
        return ctx

    def _free(self) -> None:
        for sampler in self._samplers.values():
            sampler.close()
        self._samplers.clear()
        with _rpc_lock(self.model):  # frees a peer's KV and compute buffers over the shared connection
            super()._free()
            _rpc_guard.release(self)
        self.model._detach(self)

    # -- slm_inference protocol -------------------------------------------------------------------
    def new_batch(self, tokens: int, sequences: int | None = None) -> Batch:
        """A batch for up to ``tokens`` tokens over fork ids below ``sequences`` (default: n_seq_max)."""
        self._ptr()
        sequences = self.n_seq_max if sequences is None else sequences
        if not 1 <= tokens <= self.n_batch:
            raise ValueError(f"a batch holds 1..{self.n_batch} tokens (n_batch); asked for {tokens}")
        if not 1 <= sequences <= self.n_seq_max:
            raise ValueError(f"sequences={sequences}: this context has n_seq_max={self.n_seq_max}")
        return Batch(tokens, sequences, self.n_vocab)

    @property
    def max_batch_len(self) -> int:
        """Most tokens one :meth:`decode` takes (``n_batch``)."""
        return self.n_batch

    @property
    def edit_level(self) -> EditLevel:
        """TRUNCATE: truncate, cut, drop and dump/restore all work (DUMP_RESTORE for recurrent models)."""
        return EditLevel.DUMP_RESTORE if self.model.is_recurrent else EditLevel.TRUNCATE

    def _validate_batch(self, entries: list[tuple[int, int, int]]) -> None:
        if not entries:
            raise ValueError("the batch is empty")
        if len(entries) > self.n_batch:
            raise ValueError(f"the batch has {len(entries)} tokens; this context takes {self.n_batch} (n_batch)")
        expected = {}
        for token, pos, fork in entries:
            if fork >= self.n_seq_max:
                raise ValueError(f"fork_id {fork} out of range (n_seq_max={self.n_seq_max})")
            want = expected.get(fork, len(self._seqs[fork]))
            if pos != want:
                raise ValueError(f"fork {fork}: position {pos} is out of order; the next position is {want} "
                                 "(truncate first to overwrite)")
            if pos >= self.n_ctx:
                raise KvCacheFullError(f"position {pos} is beyond the context (n_ctx={self.n_ctx})", 1)
            expected[fork] = pos + 1
        used = self.kv_cells_used
        if used + len(entries) > self.n_ctx:
            raise KvCacheFullError(f"the KV cache holds {used} of {self.n_ctx} cells; {len(entries)} more do not "
                                   "fit. Fix: truncate, cut or drop, or build with a larger n_ctx.", 1)

    def _rollback(self, entries: list[tuple[int, int, int]]) -> None:
        for fork in {f for _, _, f in entries}:
            lib.llama_kv_cache_seq_rm(self._h, fork, len(self._seqs[fork]), -1)

    def _rpc_section(self) -> Any:
        """The process-wide RPC lock when this context's model uses peers (their connections are shared)."""
        return _rpc_lock(self.model)

    def _decode_raw(self, batch_struct: Any, entries: list[tuple[int, int, int]]) -> None:
        """llama_decode with rollback on failure; updates the sequences on success."""
        rpc = self.model._rpc
        if rpc is None:
            return self._decode_native(batch_struct, entries)
        with _rpc_guard.LOCK:
            _check_rpc_usable(rpc)
            before = _rpc_guard.failures()
            try:
                self._decode_native(batch_struct, entries)
            except DecodeError as exc:
                if _rpc_guard.failures() == before:
                    raise
                _rpc_guard.sync()
                rpc.lost = rpc.lost or _rpc_guard.last_error()
                raise RpcConnectionLostError(
                    f"{rpc.lost}. This context and its model are unusable now (their remote weights and KV are "
                    "gone): close them and load the model again.", _rpc_guard.failed_peer(rpc.lost), exc.code) from None

    def _decode_native(self, batch_struct: Any, entries: list[tuple[int, int, int]]) -> None:
        h = self._h
        if self._abort_flag[0]:  # a stale abort; the read spares a native call (a GIL hand-over) per step
            lib.ikl_flag_set(self._abort_flag, 0)
        self._outputs = []
        mark = _log.mark()
        rc = lib.llama_decode(h, batch_struct)
        if rc == 1:  # no contiguous slot: defragment once and retry
            self._rollback(entries)
            lib.llama_kv_cache_defrag(h)
            lib.llama_kv_cache_update(h)
            rc = lib.llama_decode(h, batch_struct)
        aborted = self._abort_flag[0] != 0
        if rc != 0 or aborted:
            lib.ikl_flag_set(self._abort_flag, 0)
            self._rollback(entries)
            if aborted:
                raise DecodeAbortedError("decode aborted by Context.abort(); the batch was not kept", rc)
            if rc == 1:
                raise KvCacheFullError(with_native("no KV-cache slot for the batch", _log.since(mark)), rc)
            raise DecodeError(with_native(f"llama_decode failed with code {rc}", _log.since(mark)), rc)
        for token, _pos, fork in entries:
            self._seqs[fork].append(token)
        self._decode_serial += 1

    @property
    def kv_cells_used(self) -> int:
        """KV cells in use (``llama_get_kv_cache_used_cells``): a cell shared by forks counts once."""
        return int(lib.llama_get_kv_cache_used_cells(self._ptr()))

    @exclusive
    def decode(self, batch: Batch) -> None:
        """Run the model on ``batch`` (wraps ``llama_decode``); logits of its marked rows become sampleable.

        Raises:
            ValueError: empty or oversized batch, positions that do not continue their sequence.
            KvCacheFullError: the cache has no room (nothing was kept).
            DecodeAbortedError: :meth:`abort` was called meanwhile (nothing was kept).
        """
        entries = batch._entries()
        self._validate_batch(entries)
        self._decode_raw(batch._struct(), entries)
        self._outputs = batch._output_rows()
        self._row_forks = {row: entries[row][2] for row in self._outputs}
        self._row_pos = {row: entries[row][1] for row in self._outputs}

    @exclusive
    def decode_steps(self, steps: list[tuple[int, int]]) -> None:
        """Append one token to each of several forks and decode them as one batch, all with logits.

        ``steps`` holds ``(token, fork_id)`` pairs with distinct forks; row ``i`` of the outputs belongs
        to ``steps[i]``. This is the generation loop's call: it skips building a :class:`Batch`.
        """
        n = len(steps)
        if not 1 <= n <= self.n_seq_max:
            raise ValueError(f"decode_steps takes 1..{self.n_seq_max} (token, fork_id) pairs; got {n}")
        b = self._steps[0]
        entries = []
        for i, (token, fork) in enumerate(steps):
            if not 0 <= token < self.n_vocab:
                raise ValueError(f"token id {token} is outside the vocabulary (0..{self.n_vocab - 1})")
            if not 0 <= fork < self.n_seq_max:
                raise ValueError(f"fork_id {fork} out of range (n_seq_max={self.n_seq_max})")
            pos = len(self._seqs[fork])
            b.token[i] = token
            b.pos[i] = pos
            b.seq_id[i][0] = fork
            entries.append((token, pos, fork))
        if n > 1 and len({f for _, f in steps}) != n:
            raise ValueError("decode_steps: each fork may appear once")
        # The forks' lengths bound the cells in use (shared cells count once there): ask C only when near full.
        bound = sum(map(len, self._seqs))
        used = self.kv_cells_used if bound + n > self.n_ctx else bound
        if used + n > self.n_ctx or max(p for _, p, _ in entries) >= self.n_ctx:
            raise KvCacheFullError(f"the KV cache holds {used} of {self.n_ctx} cells; {n} more do not fit. "
                                   "Fix: truncate, cut or drop, or build with a larger n_ctx.", 1)
        b.n_tokens = n
        self._decode_raw(b, entries)
        self._outputs = list(range(n))
        self._row_forks = {i: f for i, (_, f) in enumerate(steps)}
        self._row_pos = {i: p for i, (_, p, _) in enumerate(entries)}

    def _check_output(self, logit_idx: int) -> None:
        if logit_idx not in self._outputs:
            if not self._outputs:
                raise ValueError("no logits available: decode a batch with logits=True on some token first")
            raise ValueError(f"batch row {logit_idx} has no logits; rows with logits: {self._outputs}")

    @exclusive
    def sample(self, logit_idx: int) -> Token | None:
        """Sample from batch row ``logit_idx``; None at end of generation.

        Uses the builder's :class:`SamplerConfig` (``with_sampling`` / ``with_sampler``; greedy
        without one): one C sampler per fork, created on first use and kept until the context closes.
        """
        self._check_output(logit_idx)
        fork = self._row_forks[logit_idx]
        sampler = self._samplers.get(fork)
        if sampler is None:
            from .sampling import Sampler, SamplerConfig

            config = self.config.sampling_config or SamplerConfig.greedy()
            sampler = self._samplers[fork] = Sampler.create(config, self.model)
        token = sampler.sample(self, logit_idx)
        return None if self.vocab.is_eog(token) else Token(token)

    def inference(self, prompt: str, max_tokens: int = 256, fork_id: int = 0) -> str:
        """Complete ``prompt`` from an empty fork: the blanket helper of slm_inference.

        Uses ``with_sampling``'s config (greedy when none) through :class:`ikllama.SimpleInference`;
        stops at end of generation or after ``max_tokens``. The fork keeps the conversation.
        """
        from .inference import SimpleInference

        self.drop(fork_id)
        with SimpleInference(self) as inf:
            inf.prefill(prompt, fork_id)
            return inf.generate(max_tokens, fork_id).text

    def token_to_bytes(self, token: int, special: bool = False, lstrip: int | None = None) -> bytes:
        """The bytes of ``token`` (wraps ``llama_token_to_piece``)."""
        self._ptr()
        return self.vocab.token_to_piece(token, special, lstrip or 0)

    def str_to_tokens(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[Token]:
        """Tokenize ``text`` (wraps ``llama_tokenize``)."""
        self._ptr()
        return [Token(t) for t in self.vocab.tokenize(text, add_special, parse_special)]

    # -- outputs ----------------------------------------------------------------------------------
    @exclusive
    def logits(self, logit_idx: int, copy: bool = True) -> np.ndarray:
        """Logits of batch row ``logit_idx`` (wraps ``llama_get_logits_ith``).

        ``copy=False`` returns a zero-copy view that is valid only until the next decode.
        """
        self._check_output(logit_idx)
        ptr = lib.llama_get_logits_ith(self._h, logit_idx)
        if ptr == ffi.NULL:
            raise DecodeError(f"no logits for row {logit_idx}")
        view = np.frombuffer(ffi.buffer(ptr, 4 * self.n_vocab), dtype=np.float32)
        return view.copy() if copy else view

    @exclusive
    def embeddings(self, logit_idx: int) -> np.ndarray:
        """Hidden state of batch row ``logit_idx`` (wraps ``llama_get_embeddings_ith``; needs with_embeddings)."""
        self._need_embeddings()
        self._check_output(logit_idx)
        ptr = lib.llama_get_embeddings_ith(self._h, logit_idx)
        if ptr == ffi.NULL:
            raise DecodeError(f"no embeddings for row {logit_idx} (pooled context? use pooled_embeddings)")
        return np.frombuffer(ffi.buffer(ptr, 4 * self.model.n_embd), dtype=np.float32).copy()

    @exclusive
    def pooled_embeddings(self, fork_id: int = 0) -> np.ndarray:
        """The pooled embedding of a sequence (wraps ``llama_get_embeddings_seq``; needs a pooling type)."""
        self._need_embeddings()
        self._check_fork(fork_id)
        ptr = lib.llama_get_embeddings_seq(self._h, fork_id)
        if ptr == ffi.NULL:
            raise DecodeError(f"no pooled embedding for fork {fork_id}: build with with_pooling(MEAN/CLS/LAST) "
                              "and decode that sequence first")
        return np.frombuffer(ffi.buffer(ptr, 4 * self.model.n_embd), dtype=np.float32).copy()

    def _need_embeddings(self) -> None:
        if not (self.config.embeddings or self.config.mtp):
            raise ValueError("this context does not extract embeddings: build it with with_embeddings(True)")

    # -- threads, abort, timings ------------------------------------------------------------------
    @exclusive
    def set_threads(self, n_threads: int, n_threads_batch: int | None = None) -> None:
        """Change the thread counts (wraps ``llama_set_n_threads``)."""
        for name, value in (("n_threads", n_threads), ("n_threads_batch", n_threads_batch or n_threads)):
            if not 1 <= value <= 1024:
                raise ValueError(f"{name}={value}: must be 1..1024")
        lib.llama_set_n_threads(self._h, n_threads, n_threads_batch or n_threads)

    @property
    def n_threads(self) -> int:
        return int(lib.llama_n_threads(self._ptr()))

    def abort(self) -> None:
        """Cancel a decode running in another thread (it raises DecodeAbortedError). Thread-safe."""
        if self._h is not None:
            lib.ikl_flag_set(self._abort_flag, 1)

    def timings(self) -> Timings:
        """ik's performance counters (wraps ``llama_get_timings``)."""
        t = lib.llama_get_timings(self._ptr())
        return Timings(t.t_start_ms, t.t_end_ms, t.t_load_ms, t.t_sample_ms, t.t_p_eval_ms, t.t_eval_ms,
                       t.n_sample, t.n_p_eval, t.n_eval)

    def reset_timings(self) -> None:
        lib.llama_reset_timings(self._ptr())

    def perplexity(self, text: str, n_ctx: int | None = None, n_chunks: int | None = None):
        """Perplexity of ``text`` as ik's llama-perplexity computes it (clears this context's cache).

        See :func:`ikllama.perplexity.perplexity`; returns a ``PerplexityResult``.
        """
        from .perplexity import perplexity

        return perplexity(self, text, n_ctx, n_chunks)

    # -- introspection ----------------------------------------------------------------------------
    def tokens(self, fork_id: int = 0) -> list[Token]:
        """The tokens sequence ``fork_id`` holds in the KV cache, in position order."""
        self._check_fork(fork_id)
        return [Token(t) for t in self._seqs[fork_id]]

    def n_past(self, fork_id: int = 0) -> int:
        """How many tokens sequence ``fork_id`` holds (its next position)."""
        self._check_fork(fork_id)
        return len(self._seqs[fork_id])

    def _check_fork(self, fork_id: int) -> None:
        self._ptr()
        if not 0 <= fork_id < self.n_seq_max:
            raise ValueError(f"fork_id {fork_id} out of range: n_seq_max={self.n_seq_max}")

    @property
    def kv_cache_size(self) -> KvCacheSize:
        """Bytes of this context's K and V caches, from the block geometry (see ``ikllama.kv_cache_bytes``).

        ``kv_size_reported`` holds what ik itself logged when it allocated them (to 0.01 MiB).
        """
        return self._kv_size

    def __repr__(self) -> str:
        if self.closed:
            return "<ikllama.Context (closed)>"
        return f"<ikllama.Context n_ctx={self.n_ctx} used={sum(map(len, self._seqs))} forks={self.n_seq_max}>"
