"""``Batch``, ``Token`` and ``Pos``: the token-level input of ``Context.decode``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._handle import NativeHandle
from ._lib import ffi, lib

__all__ = ["Batch", "Token", "Pos", "common_prefix"]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share (what a cache holding ``a`` can keep for ``b``)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Token(int):
    """A token id (slm_inference's ``Token``); an ``int`` with a readable repr."""

    __slots__ = ()

    def as_i32(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"Token({int(self)})"


@dataclass(frozen=True, slots=True)
class Pos:
    """A position in one sequence: ``token_pos`` within fork ``fork_id``."""

    token_pos: int
    fork_id: int = 0


class Batch(NativeHandle):
    """Up to ``n_max`` tokens for one ``decode`` (owns a ``llama_batch`` from ``llama_batch_init``).

    Built by ``Context.new_batch``; it checks each token id, fork id and capacity as it is added,
    and ``Context.decode`` checks the positions against what each sequence already holds.
    """

    _kind = "batch"

    def __init__(self, n_max: int, n_seq_max: int, n_vocab: int):
        raw = lib.llama_batch_init(n_max, 0, 1)
        holder = ffi.new("struct llama_batch *", raw)
        super().__init__(ffi.gc(holder, lambda h: lib.llama_batch_free(h[0])))
        self._b = holder[0]  # a struct copy whose pointers stay valid while the batch is open
        self.n_max = n_max
        self.n_seq_max = n_seq_max
        self.n_vocab = n_vocab
        self._n = 0
        self._outputs: list[int] = []

    @property
    def n_tokens(self) -> int:
        return self._n

    def __len__(self) -> int:
        return self._n

    def clear(self) -> None:
        """Empty the batch for reuse."""
        self._ptr()
        self._n = 0
        self._outputs = []

    def _check(self, token: int, pos: Pos, count: int = 1) -> None:
        self._ptr()
        if self._n + count > self.n_max:
            raise OverflowError(f"batch is full ({self.n_max} tokens); decode it or create a larger one")
        if not 0 <= token < self.n_vocab:
            raise ValueError(f"token id {token} is outside the vocabulary (0..{self.n_vocab - 1})")
        if not 0 <= pos.fork_id < self.n_seq_max:
            raise ValueError(f"fork_id {pos.fork_id} out of range: this context has n_seq_max={self.n_seq_max} "
                             "(build it with with_n_seq_max)")
        if pos.token_pos < 0:
            raise ValueError(f"token_pos {pos.token_pos} must be >= 0")

    def add(self, token: int, pos: Pos, logits: bool = False) -> None:
        """Append ``token`` at ``pos``; ``logits`` asks for its output row (needed to sample after it)."""
        self._check(token, pos)
        i, b = self._n, self._b
        b.token[i] = token
        b.pos[i] = pos.token_pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = pos.fork_id
        b.logits[i] = 1 if logits else 0
        if logits:
            self._outputs.append(i)
        self._n = i + 1

    def add_sequence(self, tokens: Sequence[int], start: Pos, logits_last: bool = True) -> None:
        """Append ``tokens`` at consecutive positions from ``start`` (all checked before any is added)."""
        if not tokens:
            return
        if self._n + len(tokens) > self.n_max:
            raise OverflowError(f"{len(tokens)} tokens do not fit: the batch holds {self._n} of {self.n_max}")
        for t in tokens:
            self._check(t, start)
        last = len(tokens) - 1
        for k, t in enumerate(tokens):
            self.add(t, Pos(start.token_pos + k, start.fork_id), logits_last and k == last)

    # -- what Context.decode reads ------------------------------------------------------------------
    def _struct(self) -> Any:
        b = self._b
        b.n_tokens = self._n
        return b

    def _entries(self) -> list[tuple[int, int, int]]:
        """(token, pos, fork) of every entry, for validation and bookkeeping."""
        b = self._b
        n = self._n
        return list(zip(ffi.unpack(b.token, n), ffi.unpack(b.pos, n), (b.seq_id[i][0] for i in range(n))))

    def _output_rows(self) -> list[int]:
        return list(self._outputs)

    def __repr__(self) -> str:
        return f"<ikllama.Batch {self._n}/{self.n_max} tokens>"
