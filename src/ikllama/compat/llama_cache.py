"""Prompt caches for :class:`ikllama.compat.Llama` (llama-cpp-python's ``llama_cache`` module).

A cache maps token sequences to :class:`LlamaState` snapshots; a lookup returns the state whose
tokens share the longest prefix with the key. ``LlamaRAMCache`` keeps them in memory (least
recently used evicted past ``capacity_bytes``), ``LlamaDiskCache`` in a directory of pickles.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import os
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..batch import common_prefix

__all__ = ["LlamaState", "BaseLlamaCache", "LlamaRAMCache", "LlamaDiskCache", "LlamaCache"]

logger = logging.getLogger("ikllama.compat")


@dataclass
class LlamaState:
    """A saved context: its tokens, last logits row, native state bytes and the sampling seed."""

    input_ids: np.ndarray
    scores: np.ndarray
    n_tokens: int
    llama_state: bytes
    llama_state_size: int
    seed: int


class BaseLlamaCache(abc.ABC):
    """What ``Llama.set_cache`` takes: ``cache[tokens]`` (longest-prefix lookup), ``cache[tokens] = state``,
    ``tokens in cache`` and ``cache_size`` in bytes."""

    def __init__(self, capacity_bytes: int = 2 << 30):
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes={capacity_bytes} must be > 0")
        self.capacity_bytes = capacity_bytes

    @property
    @abc.abstractmethod
    def cache_size(self) -> int:
        """Bytes the stored states take."""

    @abc.abstractmethod
    def _keys(self) -> list[tuple[int, ...]]:
        """The token tuples that have a stored state."""

    def _find_prefix_key(self, key: tuple[int, ...]) -> tuple[int, ...] | None:
        best, best_len = None, 0
        for k in self._keys():
            n = common_prefix(k, key)
            if n > best_len:
                best, best_len = k, n
        return best

    @abc.abstractmethod
    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        """The state stored for the longest cached prefix of ``key`` (KeyError if none)."""

    def __contains__(self, key: Sequence[int]) -> bool:
        return self._find_prefix_key(tuple(key)) is not None

    @abc.abstractmethod
    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        """Store ``value`` for ``key``, dropping old states to stay under ``capacity_bytes``."""


class LlamaRAMCache(BaseLlamaCache):
    """States in memory, least recently used dropped first once ``capacity_bytes`` is exceeded."""

    def __init__(self, capacity_bytes: int = 2 << 30):
        super().__init__(capacity_bytes)
        self.cache_state: OrderedDict[tuple[int, ...], LlamaState] = OrderedDict()

    @property
    def cache_size(self) -> int:
        return sum(s.llama_state_size for s in self.cache_state.values())

    def _keys(self) -> list[tuple[int, ...]]:
        return list(self.cache_state)

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        found = self._find_prefix_key(tuple(key))
        if found is None:
            raise KeyError("no cached state shares a prefix with these tokens")
        self.cache_state.move_to_end(found)
        return self.cache_state[found]

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        key = tuple(int(t) for t in key)
        self.cache_state.pop(key, None)
        self.cache_state[key] = value
        while self.cache_size > self.capacity_bytes and len(self.cache_state) > 1:
            self.cache_state.popitem(last=False)


LlamaCache = LlamaRAMCache


class LlamaDiskCache(BaseLlamaCache):
    """States pickled into ``cache_dir`` (one file each plus an index); oldest removed past capacity.

    Only load a directory you wrote yourself: the files are pickles.
    """

    def __init__(self, cache_dir: str | os.PathLike[str] = ".cache/llama_cache", capacity_bytes: int = 2 << 30):
        super().__init__(capacity_bytes)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._index_path = self.cache_dir / "index.pkl"
        self._index: OrderedDict[tuple[int, ...], str] = OrderedDict()
        if self._index_path.exists():
            with open(self._index_path, "rb") as f:
                self._index = pickle.load(f)

    def _save_index(self) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(self._index, f)
        os.replace(tmp, self._index_path)

    @property
    def cache_size(self) -> int:
        return sum((self.cache_dir / name).stat().st_size for name in self._index.values()
                   if (self.cache_dir / name).exists())

    def _keys(self) -> list[tuple[int, ...]]:
        return list(self._index)

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        found = self._find_prefix_key(tuple(key))
        if found is None:
            raise KeyError("no cached state shares a prefix with these tokens")
        with open(self.cache_dir / self._index[found], "rb") as f:
            return pickle.load(f)

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        key = tuple(int(t) for t in key)
        name = hashlib.sha256(np.asarray(key, dtype=np.int64).tobytes()).hexdigest() + ".pkl"
        with open(self.cache_dir / name, "wb") as f:
            pickle.dump(value, f)
        self._index.pop(key, None)
        self._index[key] = name
        while self.cache_size > self.capacity_bytes and len(self._index) > 1:
            _, old = self._index.popitem(last=False)
            (self.cache_dir / old).unlink(missing_ok=True)
        self._save_index()
