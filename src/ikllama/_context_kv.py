"""KV-cache editing for :class:`ikllama.Context`: clear, drop, truncate, cut.

``cut`` closes the gap it leaves in one of two ways. By default it re-encodes: truncate at the cut
and decode the kept tail again at its new positions, which gives exactly what a fresh context fed
the edited sequence holds (measured: bit-identical logits for F16/Q8_0/Q6_0 caches). Shifting in
place (``llama_kv_cache_seq_add``, ``reencode=False``) re-applies RoPE to the cached keys: much
cheaper for a long tail but inexact (F16 re-rounding, requantization of a quantized K), and wrong
with a Hadamard-rotated K, where ik's K-shift ropes the rotated values; it is refused there.
"""

from __future__ import annotations

from typing import Any

from ._handle import exclusive
from ._lib import ffi, lib
from .batch import Pos
from .errors import ContextError, UnsupportedConfigError


class KvEditMixin:
    """Methods that edit the KV cache and keep the per-sequence token record in step."""

    _h: Any
    _seqs: list[list[int]]
    _outputs: list[int]

    def _check_pos(self, pos: Pos, what: str) -> list[int]:
        self._check_fork(pos.fork_id)  # type: ignore[attr-defined]
        seq = self._seqs[pos.fork_id]
        if not 0 <= pos.token_pos <= len(seq):
            raise ValueError(f"{what}: token_pos {pos.token_pos} is outside fork {pos.fork_id}, "
                             f"which holds positions 0..{len(seq)} (inclusive end)")
        return seq

    @property
    def can_shift_in_place(self) -> bool:
        """False when ik's in-place K-shift would corrupt the cache (Hadamard-rotated K)."""
        return not self.config.kv.effective_k_hadamard  # type: ignore[attr-defined]

    @exclusive
    def clear(self) -> None:
        """Empty the whole KV cache, every sequence (wraps ``llama_kv_cache_clear``)."""
        with self._rpc_section():  # type: ignore[attr-defined]  (clearing a peer's KV goes over its connection)
            lib.llama_kv_cache_clear(self._h)
        for seq in self._seqs:
            seq.clear()
        self._outputs = []
        self._forget_samplers(range(len(self._seqs)))

    @exclusive
    def drop(self, fork_id: int) -> None:
        """Remove sequence ``fork_id`` from the cache; the other forks are untouched."""
        self._check_fork(fork_id)  # type: ignore[attr-defined]
        if not lib.llama_kv_cache_seq_rm(self._h, fork_id, -1, -1):
            raise ContextError(f"ik refused to remove fork {fork_id}")
        self._seqs[fork_id].clear()
        self._forget_rows(fork_id, 0)
        self._forget_samplers([fork_id])

    def _forget_samplers(self, forks: Any) -> None:
        """A fork that starts over also starts a fresh sampler (penalty history, grammar)."""
        samplers = getattr(self, "_samplers", {})
        for fork in forks:
            sampler = samplers.pop(fork, None)
            if sampler is not None:
                sampler.close()

    @exclusive
    def copy_fork(self, src: int, dst: int) -> None:
        """Make fork ``dst`` hold what fork ``src`` holds, sharing the cells (wraps ``llama_kv_cache_seq_cp``).

        ``dst`` is emptied first. Both forks can then continue independently: a cheap way to
        branch a conversation or to sample several answers to one prompt.
        """
        self._check_fork(src)  # type: ignore[attr-defined]
        self._check_fork(dst)  # type: ignore[attr-defined]
        if src == dst:
            return
        if self.model.is_recurrent:  # type: ignore[attr-defined]
            raise ContextError("copy_fork needs a KV cache; a recurrent model keeps one state per fork")
        lib.llama_kv_cache_seq_rm(self._h, dst, -1, -1)
        lib.llama_kv_cache_seq_cp(self._h, src, dst, -1, -1)
        self._seqs[dst] = list(self._seqs[src])
        self._forget_rows(dst, 0)
        self._forget_samplers([dst])

    @exclusive
    def truncate(self, pos: Pos) -> Pos:
        """Remove everything from ``pos`` on in its fork; returns where the next token goes."""
        seq = self._check_pos(pos, "truncate")
        if pos.token_pos < len(seq):
            if not lib.llama_kv_cache_seq_rm(self._h, pos.fork_id, pos.token_pos, -1):
                raise ContextError(f"ik refused to truncate fork {pos.fork_id} at {pos.token_pos}")
            del seq[pos.token_pos:]
            self._forget_rows(pos.fork_id, pos.token_pos)
        return Pos(len(seq), pos.fork_id)

    def _forget_rows(self, fork: int, from_pos: int) -> None:
        """Output rows of removed tokens have no logits any more; other rows keep theirs."""
        forks, positions = self._row_forks, self._row_pos  # type: ignore[attr-defined]
        self._outputs = [r for r in self._outputs if forks.get(r) != fork or positions.get(r, 0) < from_pos]

    @exclusive
    def cut(self, start_pos: Pos, end_pos: Pos, reencode: bool = True) -> Pos:
        """Remove positions ``[start, end)`` of one fork and close the gap; returns the new tail position.

        ``reencode=False`` shifts the tail in place instead of decoding it again: faster for long
        tails, approximate, and refused for a Hadamard-rotated K cache (see the module docstring).
        """
        if start_pos.fork_id != end_pos.fork_id:
            raise ValueError("cut: start and end must be in the same fork")
        seq = self._check_pos(start_pos, "cut")
        self._check_pos(end_pos, "cut")
        s, e, fork = start_pos.token_pos, end_pos.token_pos, start_pos.fork_id
        if s > e:
            raise ValueError(f"cut: start {s} is after end {e}")
        if s == e:
            return Pos(len(seq), fork)
        if not reencode and not self.can_shift_in_place:
            raise UnsupportedConfigError(
                "cut(reencode=False) would corrupt a Hadamard-rotated K cache: ik's K-shift re-applies RoPE to "
                "the rotated keys. Fix: keep the default reencode=True.")
        if reencode and self.model.is_recurrent:  # type: ignore[attr-defined]
            raise ContextError("a recurrent model cannot re-encode part of its state; clear and decode again")
        tail = seq[e:]
        self._outputs = []
        if not reencode:
            if not lib.llama_kv_cache_seq_rm(self._h, fork, s, e):
                raise ContextError(f"ik refused to cut fork {fork} at [{s}, {e})")
            lib.llama_kv_cache_seq_add(self._h, fork, e, -1, s - e)
            lib.llama_kv_cache_update(self._h)
            seq[s:] = tail
            return Pos(len(seq), fork)
        if not lib.llama_kv_cache_seq_rm(self._h, fork, s, -1):
            raise ContextError(f"ik refused to cut fork {fork} at {s}")
        del seq[s:]
        self._reencode(tail, fork)
        return Pos(len(seq), fork)

    def _reencode(self, tokens: list[int], fork: int) -> None:
        """Decode ``tokens`` after the current end of ``fork`` in n_batch chunks, without logits."""
        step = self.n_batch  # type: ignore[attr-defined]
        for start in range(0, len(tokens), step):
            chunk = tokens[start:start + step]
            n = len(chunk)
            base = len(self._seqs[fork])
            arr_tok = ffi.new("llama_token[]", chunk)
            batch = lib.llama_batch_get_one(arr_tok, n, base, fork)
            entries = [(t, base + k, fork) for k, t in enumerate(chunk)]
            self._decode_raw(batch, entries)  # type: ignore[attr-defined]
