"""Splitting a GGUF model into shards and merging shards back, with gguf-py's ``GGUFWriter``.

Shards follow llama-gguf-split's layout (``name-00001-of-00003.gguf``, ``split.no`` / ``split.count`` /
``split.tensors.count`` in each), which ik's loader reads when given the first shard. Tensor data is
copied byte for byte, so every type this build knows (ik's own included) passes through. Output is
written into a temporary folder beside the destination and moved into place only when complete.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .info import GgufFile, read_gguf, split_paths

__all__ = ["split_gguf", "merge_gguf", "parse_size"]

logger = logging.getLogger("ikllama")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?)B?\s*$", re.I)
_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3}


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as ``"500M"`` / ``"2G"`` (decimal units, as llama-gguf-split)."""
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"max_size={size} must be positive")
        return size
    m = _SIZE.match(str(size))
    if not m:
        raise ValueError(f"max_size {size!r}: expected bytes or a number with K, M or G (e.g. '500M')")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _writer(dst: Path, arch: str, first: GgufFile, max_tensors: int, max_size: int):  # noqa: ANN202
    try:
        import gguf
    except ImportError as exc:
        raise ImportError("splitting GGUF files needs the gguf package: pip install 'ikllama[tools]'") from exc
    w = gguf.GGUFWriter(dst, arch, split_max_tensors=max_tensors, split_max_size=max_size)
    w.data_alignment = first.alignment
    for key, value in first.metadata.items():
        if key == "general.architecture" or key.startswith("split."):
            continue
        types = first.types[key].split(".")
        vtype = gguf.GGUFValueType[types[0].upper()]
        sub = gguf.GGUFValueType[types[-1].upper()] if vtype == gguf.GGUFValueType.ARRAY else None
        if sub == gguf.GGUFValueType.ARRAY:
            raise ValueError(f"metadata {key}: nested arrays are not supported by this splitter")
        w.add_key_value(key, value, vtype, sub_type=sub)
    return w


def _rewrite(src: str | os.PathLike[str], dst: Path, max_tensors: int, max_size: int) -> list[Path]:
    files = [read_gguf(p) for p in split_paths(src)]
    first = files[0]
    arch = first.metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise ValueError(f"{first.path.name} has no general.architecture; not a model file")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"destination folder {dst.parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.stem}.", dir=dst.parent))
    try:
        w = _writer(tmp / dst.name, arch, first, max_tensors, max_size)
        maps = []
        for f in files:
            data = np.memmap(f.path, dtype=np.int8, mode="r")
            maps.append(data)
            for t in f.tensors:
                start = f.data_offset + t.offset
                # int8 bytes + the ggml type number: gguf-py keeps the shape as given and writes the bytes as is
                w.add_tensor(t.name, data[start:start + t.n_bytes], raw_shape=tuple(reversed(t.shape)),
                             raw_dtype=t.type_id)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        del maps
        written = sorted(tmp.iterdir())
        final = []
        for f in written:
            target = dst.parent / f.name
            os.replace(f, target)
            final.append(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %d file(s) for %s", len(final), dst.name)
    return final


def split_gguf(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, max_tensors: int | None = None,
               max_size: int | str | None = None) -> list[Path]:
    """Split the model ``src`` into shards named after ``dst`` (``out/model.gguf`` → ``out/model-00001-of-0000N.gguf``).

    Give ``max_tensors`` (tensors per shard) or ``max_size`` (bytes, or ``"2G"``). Pure Python
    (gguf-py), no native call. Returns the shard paths, first shard first (load that one).
    """
    if (max_tensors is None) == (max_size is None):
        raise ValueError("give exactly one of max_tensors or max_size")
    if max_tensors is not None and (not isinstance(max_tensors, int) or max_tensors < 1):
        raise ValueError(f"max_tensors={max_tensors!r} must be a positive int")
    return _rewrite(src, Path(dst), max_tensors or 0, parse_size(max_size) if max_size is not None else 0)


def merge_gguf(first_shard: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Merge every shard of the split model ``first_shard`` into the single file ``dst``; returns ``dst``."""
    return _rewrite(first_shard, Path(dst), 0, 0)[0]
