"""Write GGUF files field by field, valid or deliberately broken (for the validator's tests and fuzzer).

:class:`Doc` holds a GGUF as raw fields (each metadata value pre-encoded, so that a test can set a
wrong type id, a length that lies, or a nested array); :meth:`Doc.serialize` writes it and records
the byte offset of every section boundary (for truncation cases). :func:`tiny_llama` is a valid,
fully loadable 2-layer llama with an SPM vocabulary of 259 tokens (three specials + 256 byte
tokens), small enough to write hundreds of variants per second.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Doc", "Tensor", "u32", "i32", "f32", "u64", "string", "array", "tiny_llama",
           "T_UINT8", "T_INT8", "T_UINT32", "T_INT32", "T_FLOAT32", "T_BOOL", "T_STRING", "T_ARRAY", "T_UINT64"]

T_UINT8, T_INT8, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, T_UINT64 = 0, 1, 4, 5, 6, 7, 8, 9, 10
_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def u32(v: int) -> tuple[int, bytes]:
    return T_UINT32, struct.pack("<I", v)


def i32(v: int) -> tuple[int, bytes]:
    return T_INT32, struct.pack("<i", v)


def f32(v: float) -> tuple[int, bytes]:
    return T_FLOAT32, struct.pack("<f", v)


def u64(v: int) -> tuple[int, bytes]:
    return T_UINT64, struct.pack("<Q", v)


def string(s: str | bytes) -> tuple[int, bytes]:
    return T_STRING, _str(s)


def array(elem: int, values: list, n: int | None = None) -> tuple[int, bytes]:
    """An ARRAY value of ``elem`` elements; ``n`` overrides the stored count (a lying length)."""
    body = b"".join(_str(v) for v in values) if elem == T_STRING else b"".join(
        struct.pack(_FMT[elem], v) for v in values)
    return T_ARRAY, struct.pack("<IQ", elem, len(values) if n is None else n) + body


@dataclass
class Tensor:
    name: str | bytes
    ne: tuple[int, ...]
    type: int = 0
    offset: int | None = None  # None: placed after the previous tensor, aligned
    nbytes: int = 0
    n_dims: int | None = None  # None: len(ne)


@dataclass
class Doc:
    """A GGUF as raw fields; ``kv`` values are ``(type id, encoded payload)``."""

    kv: list[tuple[str | bytes, tuple[int, bytes]]] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    version: int = 3
    magic: bytes = b"GGUF"
    n_kv: int | None = None
    n_tensors: int | None = None
    alignment: int = 32
    data: bytes | None = None  # None: zeros sized for the tensors

    def set(self, key: str, value: tuple[int, bytes]) -> Doc:
        for i, (k, _) in enumerate(self.kv):
            if k == key:
                self.kv[i] = (key, value)
                return self
        self.kv.append((key, value))
        return self

    def drop(self, key: str) -> Doc:
        self.kv = [(k, v) for k, v in self.kv if k != key]
        return self

    def serialize(self) -> tuple[bytes, dict[str, int]]:
        """The file bytes and the offsets of its section boundaries (name -> offset)."""
        out = bytearray(self.magic)
        marks = {"magic": len(out)}
        out += struct.pack("<I", self.version)
        marks["version"] = len(out)
        out += struct.pack("<Q", len(self.tensors) if self.n_tensors is None else self.n_tensors)
        marks["n_tensors"] = len(out)
        out += struct.pack("<Q", len(self.kv) if self.n_kv is None else self.n_kv)
        marks["n_kv"] = len(out)
        for i, (key, (vtype, payload)) in enumerate(self.kv):
            out += _str(key)
            marks[f"kv{i}.key"] = len(out)
            out += struct.pack("<I", vtype)
            marks[f"kv{i}.type"] = len(out)
            out += payload
            marks[f"kv{i}"] = len(out)
        pos = 0
        offsets = []
        for i, t in enumerate(self.tensors):
            off = t.offset if t.offset is not None else pos
            offsets.append(off)
            pos = max(pos, -(-(off + t.nbytes) // self.alignment) * self.alignment)
            out += _str(t.name)
            out += struct.pack("<I", len(t.ne) if t.n_dims is None else t.n_dims)
            out += b"".join(struct.pack("<q", v) for v in t.ne)
            out += struct.pack("<IQ", t.type, off)
            marks[f"tensor{i}"] = len(out)
        out += b"\0" * (-len(out) % self.alignment)
        marks["data"] = len(out)
        out += self.data if self.data is not None else b"\0" * pos
        marks["end"] = len(out)
        return bytes(out), marks

    def write(self, path) -> dict[str, int]:
        data, marks = self.serialize()
        with open(path, "wb") as f:
            f.write(data)
        return marks


def tiny_llama(n_layer: int = 2, n_embd: int = 16, n_head: int = 2, n_ff: int = 32, seed: int = 0) -> Doc:
    """A valid, loadable llama: SPM vocabulary of 259 tokens, F32 weights with small random values."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    n_vocab = len(tokens)
    doc = Doc()
    doc.set("general.architecture", string("llama"))
    doc.set("general.name", string("tiny hostile llama"))
    doc.set("general.alignment", u32(32))
    doc.set("general.file_type", u32(0))
    doc.set("llama.context_length", u32(128))
    doc.set("llama.embedding_length", u32(n_embd))
    doc.set("llama.block_count", u32(n_layer))
    doc.set("llama.feed_forward_length", u32(n_ff))
    doc.set("llama.attention.head_count", u32(n_head))
    doc.set("llama.attention.head_count_kv", u32(n_head))
    doc.set("llama.rope.dimension_count", u32(n_embd // n_head))
    doc.set("llama.attention.layer_norm_rms_epsilon", f32(1e-5))
    doc.set("llama.rope.scaling.type", string("none"))
    doc.set("tokenizer.ggml.model", string("llama"))
    doc.set("tokenizer.ggml.tokens", array(T_STRING, tokens))
    doc.set("tokenizer.ggml.scores", array(T_FLOAT32, [0.0] * n_vocab))
    doc.set("tokenizer.ggml.token_type", array(T_INT32, [2, 3, 3] + [6] * 256))
    doc.set("tokenizer.ggml.bos_token_id", u32(1))
    doc.set("tokenizer.ggml.eos_token_id", u32(2))
    doc.set("tokenizer.ggml.unknown_token_id", u32(0))
    shapes = [("token_embd.weight", (n_embd, n_vocab)), ("output_norm.weight", (n_embd,)),
              ("output.weight", (n_embd, n_vocab))]
    for i in range(n_layer):
        shapes += [(f"blk.{i}.attn_norm.weight", (n_embd,)), (f"blk.{i}.attn_q.weight", (n_embd, n_embd)),
                   (f"blk.{i}.attn_k.weight", (n_embd, n_embd)), (f"blk.{i}.attn_v.weight", (n_embd, n_embd)),
                   (f"blk.{i}.attn_output.weight", (n_embd, n_embd)), (f"blk.{i}.ffn_norm.weight", (n_embd,)),
                   (f"blk.{i}.ffn_gate.weight", (n_embd, n_ff)), (f"blk.{i}.ffn_down.weight", (n_ff, n_embd)),
                   (f"blk.{i}.ffn_up.weight", (n_embd, n_ff))]
    rng = np.random.default_rng(seed)
    blob = bytearray()
    for name, ne in shapes:
        n = int(np.prod(ne))
        off = len(blob)
        values = np.ones(n, np.float32) if name.endswith("norm.weight") else rng.normal(0, 0.2, n).astype(np.float32)
        blob += values.tobytes()
        blob += b"\0" * (-len(blob) % doc.alignment)
        doc.tensors.append(Tensor(name, ne, 0, off, 4 * n))
    doc.data = bytes(blob)
    return doc
