"""Finished sequences kept in host memory after their KV cells are needed for other work.

The engine keeps finished sequences in the KV cache (idle) for prefix reuse, but only ``parallel`` of
them and only while cells are free. When one is evicted, its state (``Context.dump_sequence``, wrapping
``llama_state_seq_get_data``) moves here instead of being lost; a later request that starts the same way
(the next turn of a conversation that was pushed out by others) gets it back with one copy instead of a
prefill. ik's llama-server does the same with ``--cache-ram`` (8 GiB by default); the limit here is
``--cache-ram`` MiB too. Bytes live in Python objects: the process's memory grows by at most the limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..batch import common_prefix

__all__ = ["HostPromptCache", "HostEntry"]


@dataclass(frozen=True, slots=True)
class HostEntry:
    tokens: tuple[int, ...]
    data: bytes  # a Context.dump_sequence of exactly these tokens


class HostPromptCache:
    """Least-recently-used sequence states, at most ``limit_bytes`` in all.

    Only sequences of at least ``min_tokens`` are kept (shorter ones are cheaper to prefill again). An entry
    whose tokens start another one's is redundant and dropped. Engine thread only, except :meth:`stats`.
    """

    def __init__(self, limit_bytes: int, min_tokens: int = 64):
        self.limit_bytes = limit_bytes
        self.min_tokens = min_tokens
        self._entries: OrderedDict[tuple[int, ...], HostEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # stats() may read from the event loop's thread
        self.hits = 0
        self.saved = 0

    def wants(self, n_tokens: int) -> bool:
        return self.limit_bytes > 0 and n_tokens >= self.min_tokens

    def put(self, tokens: list[int], data: bytes) -> None:
        """Keep ``data`` (the state of a sequence holding ``tokens``); evicts the oldest entries to fit."""
        key = tuple(tokens)
        if not self.wants(len(key)) or len(data) > self.limit_bytes:
            return
        with self._lock:
            for old in [k for k in self._entries if len(k) <= len(key) and key[:len(k)] == k]:
                self._drop(old)  # a prefix of the new entry: the new one serves everything it served
            self._entries[key] = HostEntry(key, data)
            self._bytes += len(data)
            while self._bytes > self.limit_bytes:
                self._drop(next(iter(self._entries)))
            self.saved += 1

    def best(self, prompt: list[int], better_than: int) -> tuple[HostEntry, int] | None:
        """The entry that starts ``prompt`` furthest, with that length, when restoring it beats recomputing:
        it must reach at least 16 tokens and an eighth of its own size past ``better_than``."""
        found, length = None, better_than
        with self._lock:
            for entry in self._entries.values():
                n = common_prefix(entry.tokens, prompt)
                if n > length and n - better_than >= max(16, len(entry.tokens) // 8):
                    found, length = entry, n
            if found is not None:
                self._entries.move_to_end(found.tokens)
                self.hits += 1
        return (found, length) if found is not None else None

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "limit_bytes": self.limit_bytes,
                    "hits": self.hits, "saved": self.saved}

    def _drop(self, key: tuple[int, ...]) -> None:
        self._bytes -= len(self._entries.pop(key).data)
