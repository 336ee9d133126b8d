"""``check_gguf``: a bounded GGUF validator that runs before ik_llama.cpp sees a file.

ik's GGUF parser (the old C parser in ``ggml.c``) and its loaders abort the process on many
malformed inputs (see ``docs``: reliability research). This module reads the header, every
metadata entry and every tensor info through a read-only ``mmap`` — never allocating by a count
from the file before checking it against the bytes left — and then applies the metadata rules
of :mod:`ikllama.modelfile.rules`. Tensor data is never touched, so validation costs milliseconds
even for multi-GB files (most of it is walking the tokenizer's string arrays).
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .rules import (GGML_TYPE_COUNT, GGML_TYPE_I2_S, GGML_TYPES, KV, T_ARRAY, T_STRING, GGUFFormatError,
                         check_metadata)

__all__ = ["check_gguf", "GGUFFormatError", "GGUFSummary"]

log = logging.getLogger(__name__)

MAX_KV = 65536
MAX_TENSORS = 1_000_000
MAX_KEY_LEN = 65535
MAX_STRING_LEN = 1 << 30
MAX_ARRAY_LEN = 1 << 30
GGML_MAX_NAME = 64
GGML_MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
TENSOR_ALIGNMENT = 32
INT64_MAX = (1 << 63) - 1

# fixed element sizes by GGUF value type (STRING and ARRAY are variable)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<b", 10: "<Q", 11: "<q", 12: "<d"}
_SIZE = {t: struct.calcsize(f) for t, f in _SCALAR.items()}
_DTYPE = {0: "u1", 1: "i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "u1", 10: "<u8", 11: "<i8",
          12: "<f8"}
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_I64X4 = [struct.Struct("<" + "q" * n) for n in range(GGML_MAX_DIMS + 1)]


@dataclass
class GGUFSummary:
    """What :func:`check_gguf` read: the header, the metadata (``kv``) and the tensor infos.

    Plain Python data, independent of the file once returned."""

    path: Path
    version: int
    n_kv: int
    n_tensors: int
    alignment: int
    data_offset: int
    file_size: int
    kv: dict[str, KV] = field(repr=False, default_factory=dict)
    tensors: list[tuple[str, tuple[int, ...], int, int, int]] = field(repr=False, default_factory=list)
    seconds: float = 0.0

    @property
    def architecture(self) -> str | None:
        kv = self.kv.get("general.architecture")
        return kv.value if kv is not None and kv.type == T_STRING else None


class _Reader:
    """Sequential bounded reader over a buffer; every read checks the bytes left first."""

    def __init__(self, buf: bytes | mmap.mmap, path: Path):
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise GGUFFormatError(self.path, what, f"{n} bytes",
                                  f"file is truncated: only {self.size - self.pos} bytes left", self.pos)

    def u32(self, what: str) -> int:
        self.need(4, what)
        v = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        v = _U64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return v

    def string(self, what: str, limit: int = MAX_STRING_LEN) -> bytes:
        start = self.pos
        n = self.u64(what + " length")
        if n > limit:
            raise GGUFFormatError(self.path, what + " length", n, f"must be <= {limit} bytes", start)
        self.need(n, what)
        s = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return s


def _read_value(r: _Reader, key: str, vtype: int, offset: int) -> KV:
    path = r.path
    if vtype in _SCALAR:
        r.need(_SIZE[vtype], key)
        kv = KV(vtype, offset, struct.unpack_from(_SCALAR[vtype], r.buf, r.pos)[0])
        r.pos += _SIZE[vtype]
        return kv
    if vtype == T_STRING:
        return KV(vtype, offset, r.string(key).decode("utf-8", "replace"))
    if vtype != T_ARRAY:
        raise GGUFFormatError(path, key + " (value type)", vtype, "must be a GGUF value type 0..12", offset)
    elem = r.u32(key + " array element type")
    n = r.u64(key + " array length")
    if elem == T_ARRAY:
        raise GGUFFormatError(path, key + " (array element type)", "ARRAY", "arrays of arrays are not supported",
                              offset)
    if elem != T_STRING and elem not in _SIZE:
        raise GGUFFormatError(path, key + " (array element type)", elem, "must be a GGUF value type 0..12",
                              offset)
    if n > MAX_ARRAY_LEN:
        raise GGUFFormatError(path, key + " array length", n, f"must be <= {MAX_ARRAY_LEN}", offset)
    if elem != T_STRING:
        nbytes = n * _SIZE[elem]
        r.need(nbytes, key + " array data")
        values = np.frombuffer(r.buf, dtype=_DTYPE[elem], count=n, offset=r.pos).copy()
        kv = KV(T_ARRAY, offset, elem=elem, n=n, data=r.pos, values=values)
        r.pos += nbytes
        return kv
    # every string costs at least its 8-byte length: bound the count before walking
    r.need(n * 8, key + " string array")
    buf, pos, size, unpack = r.buf, r.pos, r.size, _U64.unpack_from
    items: list[bytes] = []
    append = items.append
    try:  # tight loop; a length past the end shows as pos > size or a failed unpack
        for _ in range(n):
            ln = unpack(buf, pos)[0]
            pos += 8
            append(buf[pos:pos + ln])
            pos += ln
    except (struct.error, OverflowError):
        pos = size + 1
    if pos > size:
        _string_array_error(r, key, n)
    kv = KV(T_ARRAY, offset, elem=elem, n=n, data=r.pos, items=items)
    r.pos = pos
    return kv


def _string_array_error(r: _Reader, key: str, n: int) -> None:
    """Walk a string array that runs past the end again, with checks, to name the bad element."""
    pos, size = r.pos, r.size
    for i in range(n):
        if pos + 8 > size:
            r.pos = pos
            r.need(8, f"{key}[{i}] length")
        ln = _U64.unpack_from(r.buf, pos)[0]
        if ln > size - pos - 8:
            raise GGUFFormatError(r.path, f"{key}[{i}] length", ln,
                                  f"file is truncated: only {size - pos - 8} bytes left", pos)
        pos += 8 + ln


def _parse(buf: bytes | mmap.mmap, path: Path) -> GGUFSummary:
    r = _Reader(buf, path)
    r.need(4, "magic")
    magic = bytes(buf[0:4])
    if magic != b"GGUF":
        raise GGUFFormatError(path, "magic", magic, "is not a GGUF file (expected b'GGUF')", 0)
    r.pos = 4
    version = r.u32("version")
    if version not in (2, 3):
        rule = ("looks byte-swapped: big-endian GGUF files are not supported" if version and version & 0xFFFF == 0
                else "only GGUF versions 2 and 3 are supported")
        raise GGUFFormatError(path, "version", version, rule, 4)
    n_tensors = r.u64("n_tensors")
    n_kv = r.u64("n_kv")
    left = r.size - r.pos
    if n_tensors > MAX_TENSORS or n_tensors * 24 > left:
        raise GGUFFormatError(path, "n_tensors", n_tensors,
                              f"must be <= {MAX_TENSORS} and fit in the file (24 bytes each, {left} left)", 8)
    if n_kv > MAX_KV or n_kv * 13 > left:
        raise GGUFFormatError(path, "n_kv", n_kv,
                              f"must be <= {MAX_KV} and fit in the file (13 bytes each, {left} left)", 16)
    kvs: dict[str, KV] = {}
    for i in range(n_kv):
        offset = r.pos
        raw = r.string(f"key #{i}", MAX_KEY_LEN)
        if not raw:
            raise GGUFFormatError(path, f"key #{i}", "", "keys must not be empty", offset)
        key = raw.decode("utf-8", "replace")
        if key in kvs:
            raise GGUFFormatError(path, key, "duplicate", "each key may appear once (ik would use the first)",
                                  offset)
        vtype = r.u32(key + " value type")
        kvs[key] = _read_value(r, key, vtype, offset)
    check_alignment = kvs.get("general.alignment")
    alignment = DEFAULT_ALIGNMENT
    tensors = []
    names: set[bytes] = set()
    for i in range(n_tensors):
        offset = r.pos
        name = r.string(f"tensor #{i} name", MAX_STRING_LEN)
        label = f"tensor {name.decode('utf-8', 'replace')!r}"
        if not name or len(name) >= GGML_MAX_NAME:
            raise GGUFFormatError(path, f"tensor #{i} name", name.decode("utf-8", "replace"),
                                  f"must be 1..{GGML_MAX_NAME - 1} bytes", offset)
        if name in names:
            raise GGUFFormatError(path, label, "duplicate", "tensor names must be unique", offset)
        names.add(name)
        n_dims = r.u32(label + " n_dims")
        if n_dims > GGML_MAX_DIMS:
            raise GGUFFormatError(path, label + " n_dims", n_dims, f"must be <= {GGML_MAX_DIMS}", offset)
        r.need(8 * n_dims, label + " dimensions")
        ne = _I64X4[n_dims].unpack_from(buf, r.pos)
        r.pos += 8 * n_dims
        ttype = r.u32(label + " type")
        toff = r.u64(label + " offset")
        tensors.append((label, ne, ttype, toff, offset))
    if check_alignment is not None:
        check_metadata(path, {"general.alignment": check_alignment})
        alignment = check_alignment.value
    data_offset = -(-r.pos // alignment) * alignment
    summary = GGUFSummary(path, version, n_kv, n_tensors, alignment, data_offset, r.size, kvs)
    _check_tensors(summary, tensors)
    return summary


def _check_tensors(s: GGUFSummary, tensors: list) -> None:
    path = s.path
    if tensors and s.data_offset > s.file_size:
        raise GGUFFormatError(path, "data section", s.data_offset,
                              f"file is truncated: tensor data would start past the end ({s.file_size} bytes)")
    spans = []
    for label, ne, ttype, toff, offset in tensors:
        dims = list(ne) + [1] * (GGML_MAX_DIMS - len(ne))
        for d, v in enumerate(dims):
            if v <= 0:
                raise GGUFFormatError(path, f"{label} ne[{d}]", v, "dimensions must be >= 1", offset)
        if not (INT64_MAX // dims[1] > dims[0] and INT64_MAX // dims[2] > dims[0] * dims[1]
                and INT64_MAX // dims[3] > dims[0] * dims[1] * dims[2]):
            raise GGUFFormatError(path, f"{label} shape", tuple(ne), "element count overflows int64", offset)
        if ttype >= GGML_TYPE_COUNT or ttype not in GGML_TYPES:
            rule = (f"must be < {GGML_TYPE_COUNT}" if ttype >= GGML_TYPE_COUNT
                    else "is a gap in ik's ggml_type list (removed or never defined)")
            raise GGUFFormatError(path, f"{label} type", ttype, rule, offset)
        tname, blck, tsize, meta = GGML_TYPES[ttype]
        if dims[0] % blck:
            raise GGUFFormatError(path, f"{label} ne[0]", dims[0],
                                  f"must be a multiple of the {tname} block size {blck}", offset)
        row = meta + tsize * dims[0] // blck
        nbytes = row * dims[1] * dims[2] * dims[3]
        if ttype == GGML_TYPE_I2_S:
            nbytes = nbytes // 4 + 32
        if nbytes > INT64_MAX:
            raise GGUFFormatError(path, f"{label} byte size", nbytes, "overflows int64", offset)
        if toff % s.alignment:
            raise GGUFFormatError(path, f"{label} offset", toff,
                                  f"must be a multiple of general.alignment ({s.alignment})", offset)
        if (s.data_offset + toff) % TENSOR_ALIGNMENT:  # ggml-backend asserts on the mmap'd pointer
            raise GGUFFormatError(path, f"{label} offset", toff, f"tensor data must start at a file offset that "
                                  f"is a multiple of {TENSOR_ALIGNMENT} (data section at {s.data_offset})", offset)
        end = s.data_offset + toff + nbytes
        if end > s.file_size:
            raise GGUFFormatError(path, f"{label} data", f"bytes {s.data_offset + toff}..{end}",
                                  f"lies past the end of the file ({s.file_size} bytes)", offset)
        spans.append((toff, len(spans), toff + nbytes, label))
        s.tensors.append((label, tuple(dims[:max(len(ne), 1)]), ttype, toff, nbytes))
    spans.sort()
    for (_, _, end, a), (start, _, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise GGUFFormatError(path, f"{b} offset", start, f"overlaps the data of {a}")


def check_gguf(path: str | os.PathLike[str]) -> GGUFSummary:
    """Validate the GGUF at ``path`` before ik_llama.cpp sees it (no C call; guards
    ``llama_model_load_from_file``).

    Reads the header, metadata and tensor infos through a read-only mmap that is closed before
    returning; tensor data is not read. Raises :class:`GGUFFormatError` (a ``ModelLoadError``)
    naming the field, its value and the rule broken. Returns a :class:`GGUFSummary` that owns
    plain Python copies of what it read.
    """
    p = Path(path)
    t0 = time.perf_counter()
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise GGUFFormatError(p, "file size", 0, "is not a GGUF file (empty)", 0)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            summary = _parse(mm, p)
            check_metadata(p, summary.kv)
    summary.seconds = time.perf_counter() - t0
    log.debug("check_gguf %s: %d kv, %d tensors in %.1f ms", p, summary.n_kv, summary.n_tensors,
              summary.seconds * 1e3)
    return summary
