"""State dump/restore for :class:`ikllama.Context`, whole and per sequence, in memory or in files.

ik's state bytes carry no model identity and ik trusts them; restoring foreign or damaged bytes
can crash it. So ikllama wraps them in an envelope: a magic, a format version, a fingerprint of
the model and the KV-cache layout, the token record of each sequence, and a CRC32 over it all.
``restore`` checks the envelope before any byte reaches C, and a whole-state restore that ik
still rejects puts the previous state back.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

from ._handle import exclusive
from ._lib import ffi, lib
from .errors import StateError

MAGIC = b"IKLLAMA-STATE\x00"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<14sHI")   # magic, format version, header-json length
_TAIL = struct.Struct("<QI")      # native payload length, crc32 of header json + payload


class StateMixin:
    """dump/restore and the per-sequence and file variants."""

    _h: Any
    _seqs: list[list[int]]
    _outputs: list[int]
    _fp: dict[str, Any]

    def _fingerprint(self) -> dict[str, Any]:
        """Identity of the model and KV layout, computed while the model is open (see Context.__init__)."""
        m, kv = self.model, self.config.kv  # type: ignore[attr-defined]
        return {"arch": m.architecture, "n_vocab": m.n_vocab, "n_embd": m.n_embd, "n_layer": m.n_layer,
                "n_params": m.n_params, "type_k": kv.type_k.name, "type_v": kv.type_v.name,
                "k_hadamard": kv.effective_k_hadamard, "v_hadamard": kv.effective_v_hadamard,
                "session_version": int(lib.LLAMA_SESSION_VERSION)}

    def _pack(self, kind: str, seqs: Any, native: bytes) -> bytes:
        header = json.dumps({"kind": kind, "fingerprint": self._fp, "seqs": seqs},
                            separators=(",", ":")).encode()
        crc = zlib.crc32(native, zlib.crc32(header))
        return _HEAD.pack(MAGIC, FORMAT_VERSION, len(header)) + header + _TAIL.pack(len(native), crc) + native

    def _unpack(self, data: bytes, kind: str) -> tuple[Any, memoryview]:
        view = memoryview(bytes(data)) if not isinstance(data, (bytes, bytearray)) else memoryview(data)
        if len(view) < _HEAD.size or bytes(view[:14]) != MAGIC:
            raise StateError("not ikllama state data (bad magic); it must come from Context.dump()/dump_sequence()")
        _, version, n_header = _HEAD.unpack_from(view, 0)
        if version != FORMAT_VERSION:
            raise StateError(f"state format version {version} is not supported (this ikllama writes {FORMAT_VERSION})")
        start = _HEAD.size
        if len(view) < start + n_header + _TAIL.size:
            raise StateError("state data is truncated")
        header_bytes = bytes(view[start:start + n_header])
        n_native, crc = _TAIL.unpack_from(view, start + n_header)
        native = view[start + n_header + _TAIL.size:]
        if len(native) != n_native:
            raise StateError(f"state data is truncated or padded ({len(native)} of {n_native} payload bytes)")
        if zlib.crc32(native, zlib.crc32(header_bytes)) != crc:
            raise StateError("state data is corrupted (checksum mismatch)")
        header = json.loads(header_bytes)
        if header.get("kind") != kind:
            raise StateError(f"this is {header.get('kind')!r} state; expected {kind!r}")
        theirs, ours = header.get("fingerprint"), self._fp
        if theirs != ours:
            diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
            raise StateError(f"state was saved from another model or KV-cache layout: {diff} (saved, here)")
        return header["seqs"], native

    # -- whole context ----------------------------------------------------------------------------
    @exclusive
    def dump(self) -> bytes:
        """The whole context state as bytes (wraps ``llama_state_get_data``)."""
        return self._pack("context", self._seqs, self._native_dump())

    def _native_dump(self) -> bytes:
        size = lib.llama_state_get_size(self._h)
        buf = ffi.new("uint8_t[]", size)
        n = lib.llama_state_get_data(self._h, buf, size)
        return ffi.buffer(buf, n)[:]

    @exclusive
    def restore(self, data: bytes) -> None:
        """Restore a :meth:`dump` of this model and KV layout (wraps ``llama_state_set_data``).

        Raises StateError (and leaves the context as it was) for foreign, truncated or corrupted data.
        """
        seqs, native = self._unpack(data, "context")
        if len(seqs) > self.n_seq_max or sum(map(len, seqs)) > self.n_ctx:  # type: ignore[attr-defined]
            raise StateError(f"the state holds {sum(map(len, seqs))} tokens in {len(seqs)} sequences; this context "
                             f"has n_ctx={self.n_ctx} and n_seq_max={self.n_seq_max}")  # type: ignore[attr-defined]
        backup = self._native_dump()
        if not self._native_set(native):
            self._native_set(backup)
            raise StateError("ik_llama.cpp rejected the state (different context size?); the context is unchanged")
        self._seqs = [list(s) for s in seqs] + [[] for _ in range(self.n_seq_max - len(seqs))]  # type: ignore
        self._outputs = []

    def _native_set(self, native: Any) -> bool:
        buf = ffi.from_buffer("uint8_t[]", native)
        return lib.llama_state_set_data(self._h, buf, len(native)) == len(native)

    # -- one sequence -----------------------------------------------------------------------------
    @exclusive
    def dump_sequence(self, fork_id: int = 0) -> bytes:
        """One sequence's state (wraps ``llama_state_seq_get_data``); restore into any fork."""
        self._check_fork(fork_id)  # type: ignore[attr-defined]
        size = lib.llama_state_seq_get_size(self._h, fork_id, 0)
        buf = ffi.new("uint8_t[]", size)
        n = lib.llama_state_seq_get_data(self._h, buf, size, fork_id, 0)
        return self._pack("sequence", self._seqs[fork_id], ffi.buffer(buf, n)[:])

    @exclusive
    def restore_sequence(self, data: bytes, fork_id: int = 0) -> None:
        """Replace fork ``fork_id`` with a :meth:`dump_sequence` (wraps ``llama_state_seq_set_data``)."""
        self._check_fork(fork_id)  # type: ignore[attr-defined]
        tokens, native = self._unpack(data, "sequence")
        used_elsewhere = sum(len(s) for i, s in enumerate(self._seqs) if i != fork_id)
        if used_elsewhere + len(tokens) > self.n_ctx:  # type: ignore[attr-defined]
            raise StateError(f"the sequence holds {len(tokens)} tokens; the cache has room for "
                             f"{self.n_ctx - used_elsewhere}")  # type: ignore[attr-defined]
        lib.llama_kv_cache_seq_rm(self._h, fork_id, -1, -1)
        self._seqs[fork_id] = []
        self._outputs = []
        buf = ffi.from_buffer("uint8_t[]", native)
        if len(native) and lib.llama_state_seq_set_data(self._h, buf, len(native), fork_id, 0) != len(native):
            lib.llama_kv_cache_seq_rm(self._h, fork_id, -1, -1)
            raise StateError(f"ik_llama.cpp rejected the sequence state; fork {fork_id} is now empty")
        self._seqs[fork_id] = list(tokens)

    # -- files ------------------------------------------------------------------------------------
    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`dump` to ``path`` atomically."""
        _write_atomic(Path(path), self.dump())

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """:meth:`restore` from a file written by :meth:`save_state`."""
        self.restore(Path(path).read_bytes())

    def save_sequence(self, path: str | os.PathLike[str], fork_id: int = 0) -> None:
        """Write :meth:`dump_sequence` to ``path`` atomically."""
        _write_atomic(Path(path), self.dump_sequence(fork_id))

    def load_sequence(self, path: str | os.PathLike[str], fork_id: int = 0) -> None:
        """:meth:`restore_sequence` from a file written by :meth:`save_sequence`."""
        self.restore_sequence(Path(path).read_bytes(), fork_id)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
