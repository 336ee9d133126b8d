"""Reading a GGUF file without loading it: metadata, tensor table, sizes, and the memory a context needs.

The file is parsed by the ``gguf`` package (ggml's own Python GGUF library, ``GGUFReader``) after the
same cheap checks :class:`~ikllama.Model` runs. gguf-py releases do not know ik's own tensor types
(IQ4_KS, IQ2_KT, the _R4 repacked ones), so the reader here stops before gguf-py builds tensor views
and sizes each tensor with ggml's C type traits of this build (``ggml_row_size``) instead, then checks
that every tensor lies inside the file.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._lib import ffi, lib
from ..errors import IkLlamaError

__all__ = ["GGUFReadError", "TensorInfo", "GgufFile", "ModelInfo", "KvEstimate", "read_gguf", "inspect",
           "split_paths"]

_SPLIT = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_VOCAB_TYPES = {"llama": "SPM", "gpt2": "BPE", "bert": "WPM", "t5": "UGM", "rwkv": "RWKV", "plamo2": "PLAMO2",
                "no_vocab": "none"}
_SPECIAL = ("bos", "eos", "eot", "eom", "unknown", "padding", "seperator", "cls", "mask")
_ARRAY_SHOWN = 16


class GGUFReadError(IkLlamaError, ValueError):
    """The file is not a GGUF this build can read (bad header, unknown tensor type, tensor past the end)."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in the GGUF tensor table (``shape`` in ggml order: ne0 first)."""

    name: str
    type: str
    type_id: int
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int
    offset: int


@dataclass
class GgufFile:
    """The parsed header of one GGUF file: metadata values and the tensor table."""

    path: Path
    version: int
    alignment: int
    data_offset: int
    metadata: dict[str, Any]
    types: dict[str, str]
    tensors: list[TensorInfo]


def _reader_class() -> type:
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise ImportError("reading GGUF metadata needs the gguf package: pip install 'ikllama[tools]'") from exc

    class _Reader(GGUFReader):  # type: ignore[misc, valid-type]
        """GGUFReader that keeps the raw tensor-info fields instead of building typed array views."""

        def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
            self.tensor_start = start_offs
            self.tensor_fields = fields
            self.tensors = []

    return _Reader


def _type_traits(type_id: int) -> tuple[str, int]:
    if not 0 <= type_id < lib.GGML_TYPE_COUNT or lib.ggml_blck_size(type_id) <= 0 \
            or lib.ggml_type_name(type_id) == ffi.NULL:
        raise GGUFReadError(f"tensor type {type_id} is unknown to this build of ik_llama.cpp")
    return ffi.string(lib.ggml_type_name(type_id)).decode(), lib.ggml_blck_size(type_id)


def _value(fld: Any) -> Any:
    value = fld.contents()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def read_gguf(path: str | os.PathLike[str]) -> GgufFile:
    """Parse the header of one GGUF file with gguf-py's ``GGUFReader`` (memory-maps it, reads no weights).

    Raises ``FileNotFoundError`` / :class:`GGUFReadError` for a missing or malformed file.
    Returns plain data; the file is not kept open.
    """
    from ..model import _check_gguf_file

    p = Path(path)
    try:
        _check_gguf_file(p)
    except IkLlamaError as exc:
        raise GGUFReadError(str(exc)) from None
    try:
        reader = _reader_class()(p, "r")
    except (ValueError, IndexError, OverflowError, MemoryError) as exc:
        raise GGUFReadError(f"{p} is not a readable GGUF file: {exc}") from None
    file_size = p.stat().st_size
    metadata: dict[str, Any] = OrderedDict()
    types: dict[str, str] = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        metadata[key] = _value(fld)
        types[key] = ".".join(t.name.lower() for t in fld.types)
    tensors = []
    seen = set()
    for fld in reader.tensor_fields:
        _, name_data, _, dims, raw_type, offset = fld.parts
        name = bytes(name_data).decode("utf-8", "replace")
        if name in seen:
            raise GGUFReadError(f"{p.name}: tensor {name!r} appears twice")
        seen.add(name)
        type_id = int(raw_type[0])
        type_name, block = _type_traits(type_id)
        shape = tuple(int(d) for d in dims)
        if shape and shape[0] % block:
            raise GGUFReadError(f"{p.name}: tensor {name} row of {shape[0]} is not a multiple of "
                                  f"{type_name}'s block of {block}")
        n_el = 1
        for d in shape:
            n_el *= d
        n_bytes = int(lib.ggml_row_size(type_id, shape[0])) * (n_el // shape[0]) if n_el else 0
        start = int(reader.data_offset) + int(offset[0])
        if start + n_bytes > file_size:
            raise GGUFReadError(f"{p.name}: tensor {name} ends at byte {start + n_bytes}, past the end of "
                                  f"the file ({file_size} bytes): truncated?")
        tensors.append(TensorInfo(name, type_name, type_id, shape, n_el, n_bytes, int(offset[0])))
    version = int(reader.fields["GGUF.version"].parts[-1][0])
    return GgufFile(p, version, int(reader.alignment), int(reader.data_offset), dict(metadata), types, tensors)


def split_paths(path: str | os.PathLike[str]) -> list[Path]:
    """All shards of a split model given any shard (``name-00001-of-00003.gguf``), else ``[path]``.

    Raises ``FileNotFoundError`` naming the first missing shard.
    """
    p = Path(path)
    m = _SPLIT.match(p.name)
    if not m:
        return [p]
    count = int(m.group("count"))
    shards = [p.with_name(f"{m.group('prefix')}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    for s in shards:
        if not s.exists():
            raise FileNotFoundError(f"shard {s.name} of the split model {p.name} is missing (expected in {p.parent})")
    return shards


@dataclass(frozen=True)
class KvEstimate:
    """KV-cache bytes of a context (as ``llama_kv_cache_init`` lays it out; MLA models differ)."""

    n_ctx: int
    type_k: str
    type_v: str
    k_bytes: int
    v_bytes: int

    @property
    def total(self) -> int:
        return self.k_bytes + self.v_bytes


@dataclass
class ModelInfo:
    """Everything :func:`inspect` reads from a model file (plain data; ``as_dict()`` for JSON)."""

    path: str
    files: list[str]
    architecture: str | None
    name: str | None
    file_type: str | None
    n_params: int
    file_size: int
    tensor_bytes: int
    bpw: float
    type_mix: dict[str, dict[str, int]]
    context_length: int | None
    n_layer: int | None
    n_embd: int | None
    n_head: int | None
    n_head_kv: int | None
    vocab: dict[str, Any]
    chat_template: str | None
    metadata: dict[str, Any]
    metadata_types: dict[str, str]
    tensors: list[TensorInfo] = field(default_factory=list)
    kv_cache: KvEstimate | None = None

    def as_dict(self, tensors: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not tensors:
            d.pop("tensors")
        return d


def _summarize(value: Any) -> Any:
    if isinstance(value, list) and len(value) > _ARRAY_SHOWN:
        return {"array_len": len(value), "head": value[:4]}
    return value


def _scalar(meta: dict[str, Any], key: str) -> Any:
    v = meta.get(key)
    if isinstance(v, list):  # per-layer arrays (e.g. head_count_kv): the maximum is what the cache sizes by
        return max(v) if v else None
    return v


def _kv_estimate(meta: dict[str, Any], arch: str, n_ctx: int, type_k: str, type_v: str, flash_attn: bool) -> KvEstimate:
    from ..kvcache import padded_n_ctx
    from .quantize import ggml_type_id

    if n_ctx <= 0:
        raise ValueError(f"n_ctx={n_ctx} must be positive")
    tk, tv = ggml_type_id(type_k), ggml_type_id(type_v)
    n_layer = int(_scalar(meta, f"{arch}.block_count") or 0) - int(_scalar(meta, f"{arch}.nextn_predict_layers") or 0)
    n_head = int(_scalar(meta, f"{arch}.attention.head_count") or 0)
    n_head_kv = int(_scalar(meta, f"{arch}.attention.head_count_kv") or n_head)
    n_embd = int(_scalar(meta, f"{arch}.embedding_length") or 0)
    dk = int(_scalar(meta, f"{arch}.attention.key_length") or (n_embd // n_head if n_head else 0))
    dv = int(_scalar(meta, f"{arch}.attention.value_length") or dk)
    if not (n_layer and n_head_kv and dk):
        raise ValueError(f"{arch}: the file lacks the attention geometry needed for a KV estimate")
    kv_size = padded_n_ctx(n_ctx, flash_attn)
    k = int(lib.ggml_row_size(tk, dk)) * n_head_kv * kv_size * n_layer
    v = int(lib.ggml_row_size(tv, n_head_kv * dv * kv_size)) * n_layer
    return KvEstimate(n_ctx, ffi.string(lib.ggml_type_name(tk)).decode(), ffi.string(lib.ggml_type_name(tv)).decode(),
                      k, v)


def _vocab(meta: dict[str, Any]) -> dict[str, Any]:
    tokens = meta.get("tokenizer.ggml.tokens") or []
    model = meta.get("tokenizer.ggml.model")
    special = {}
    for kind in _SPECIAL:
        tid = meta.get(f"tokenizer.ggml.{kind}_token_id")
        if isinstance(tid, int) and 0 <= tid < len(tokens):
            special[kind] = {"id": tid, "text": tokens[tid]}
    return {"model": model, "type": _VOCAB_TYPES.get(str(model), model), "pre": meta.get("tokenizer.ggml.pre"),
            "size": len(tokens), "special": special,
            "add_bos": meta.get("tokenizer.ggml.add_bos_token"), "add_eos": meta.get("tokenizer.ggml.add_eos_token")}


def inspect(path: str | os.PathLike[str], *, n_ctx: int | None = None, kv_type: str = "f16",
            kv_type_v: str | None = None, flash_attn: bool = True) -> ModelInfo:
    """Describe a GGUF model without loading it (parsed with gguf-py's ``GGUFReader``; no C model call).

    A shard of a split model (``-00001-of-00003.gguf``) is read together with its other shards. With
    ``n_ctx`` the KV-cache bytes of such a context are estimated for ``kv_type`` (K; ``kv_type_v`` for V,
    default the same). Returns a :class:`ModelInfo` (plain data).
    """
    from .quantize import FileType

    shards = split_paths(path)
    files = [read_gguf(s) for s in shards]
    meta = dict(files[0].metadata)
    types = dict(files[0].types)
    tensors = [t for f in files for t in f.tensors]
    arch = meta.get("general.architecture")
    mix: dict[str, dict[str, int]] = {}
    for t in tensors:
        row = mix.setdefault(t.type, {"tensors": 0, "elements": 0, "bytes": 0})
        row["tensors"] += 1
        row["elements"] += t.n_elements
        row["bytes"] += t.n_bytes
    ft = meta.get("general.file_type")
    try:
        ft_name = FileType(ft).name if ft is not None else None
    except ValueError:
        ft_name = str(ft)
    n_params = sum(t.n_elements for t in tensors)
    tensor_bytes = sum(t.n_bytes for t in tensors)
    kv = None
    if n_ctx is not None:
        kv = _kv_estimate(meta, str(arch), n_ctx, kv_type, kv_type_v or kv_type, flash_attn)
    a = f"{arch}."
    return ModelInfo(
        path=str(shards[0]), files=[str(s) for s in shards], architecture=arch, name=meta.get("general.name"),
        file_type=ft_name, n_params=n_params, file_size=sum(s.stat().st_size for s in shards),
        tensor_bytes=tensor_bytes, bpw=tensor_bytes * 8 / n_params if n_params else 0.0,
        type_mix=dict(sorted(mix.items(), key=lambda kv_: -kv_[1]["bytes"])),
        context_length=_scalar(meta, a + "context_length"), n_layer=_scalar(meta, a + "block_count"),
        n_embd=_scalar(meta, a + "embedding_length"), n_head=_scalar(meta, a + "attention.head_count"),
        n_head_kv=_scalar(meta, a + "attention.head_count_kv"), vocab=_vocab(meta),
        chat_template=meta.get("tokenizer.chat_template"),
        metadata={k: _summarize(v) for k, v in meta.items()}, metadata_types=types, tensors=tensors, kv_cache=kv)
