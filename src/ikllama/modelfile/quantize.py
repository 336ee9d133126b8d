"""Quantizing GGUF models with ik's own quantizer (``llama_model_quantize``), typed and checked first.

:func:`quantize` validates everything ik would throw on or silently misread (the file type, per-class
tensor types, a quantized source without ``allow_requantize``, an unwritable destination) before the C
call, writes to a temporary name beside the destination and renames it only after ik reports success,
so a failed or interrupted run never leaves a half-written model behind.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .. import _log
from .ftypes import ALIASES, FTYPES
from .._lib import ffi, lib
from ..backend import ensure_init
from ..errors import IkLlamaError, UnsupportedConfigError, with_native

__all__ = ["FileType", "QuantizeError", "QuantizeResult", "quantize", "file_types", "ggml_type_id",
           "ggml_type_names"]

logger = logging.getLogger("ikllama")

#: Per-tensor-class overrides that ``llama_model_quantize_params`` has a field for.
TENSOR_CLASSES = {
    "output": "output_tensor_type", "token_embd": "token_embedding_type", "attn_q": "attn_q_type",
    "attn_k": "attn_k_type", "attn_v": "attn_v_type", "attn_qkv": "attn_qkv_type",
    "attn_output": "attn_output_type", "ffn_gate": "ffn_gate_type", "ffn_down": "ffn_down_type",
    "ffn_up": "ffn_up_type", "ffn_gate_inp": "ffn_gate_inp_type",
}
_FLOAT_TYPES = {"f32", "f16", "bf16"}


class QuantizeError(IkLlamaError):
    """``llama_model_quantize`` failed, or its arguments were rejected before the call."""


def ggml_type_names() -> dict[str, int]:
    """Every ggml tensor type this build knows, by ggml's name (``ggml_type_name``), to its number."""
    names = {}
    for i in range(lib.GGML_TYPE_COUNT):
        name = lib.ggml_type_name(i)
        if name != ffi.NULL and lib.ggml_blck_size(i) > 0:
            names[ffi.string(name).decode()] = i
    return names


def ggml_type_id(name: str | int) -> int:
    """The ggml type number for a name such as ``"q8_0"`` or ``"IQ4_KS"`` (case-insensitive)."""
    if isinstance(name, int) and not isinstance(name, bool):
        if name not in ggml_type_names().values():
            raise ValueError(f"{name} is not a ggml type number this build knows")
        return name
    if not isinstance(name, str):
        raise TypeError(f"a tensor type must be a name such as 'q8_0', not {type(name).__name__}")
    by_lower = {k.lower(): v for k, v in ggml_type_names().items()}
    try:
        return by_lower[name.strip().lower()]
    except KeyError:
        close = [k for k in by_lower if k.startswith(name.strip().lower()[:3])]
        raise ValueError(f"unknown tensor type {name!r}; similar: {', '.join(sorted(close)) or '-'}") from None


def _type_name(type_id: int) -> str:
    return ffi.string(lib.ggml_type_name(type_id)).decode()


class _FileTypeBase(enum.IntEnum):
    """A model file type (``enum llama_ftype``): the target of :func:`quantize`.

    ``FileType.parse("iq4_ks")`` accepts llama-quantize's names case-insensitively, aliases included.
    ``bpw`` is the bits per weight of the main tensor type (mixes such as Q4_K_M keep some tensors
    wider, so the file comes out slightly larger).
    """

    @classmethod
    def parse(cls, name: str | int | _FileTypeBase) -> _FileTypeBase:
        if isinstance(name, cls):
            return name
        if isinstance(name, int) and not isinstance(name, bool):
            try:
                return cls(name)
            except ValueError:
                raise ValueError(f"{name} is not a llama_ftype number; see ikllama.file_types()") from None
        if not isinstance(name, str):
            raise TypeError(f"file type must be a name such as 'Q4_K_M', not {type(name).__name__}")
        key = name.strip().upper()
        key = ALIASES.get(key, key)
        if key not in cls.__members__:
            close = [n for n in cls.__members__ if n.startswith(key[:3])]
            raise ValueError(f"unknown file type {name!r}; similar: {', '.join(close) or '-'}. "
                             "`ikllama quantize --list-types` lists all")
        return cls[key]

    @property
    def main_type(self) -> str:
        """ggml's name of the tensor type most weights get."""
        return FTYPES[self.name][1]

    @property
    def bpw(self) -> float:
        """Bits per weight of :attr:`main_type` (from ``ggml_type_size`` / ``ggml_blck_size``)."""
        t = ggml_type_names()[self.main_type]
        return lib.ggml_type_size(t) * 8 / lib.ggml_blck_size(t)

    @property
    def description(self) -> str:
        return FTYPES[self.name][2]


FileType = _FileTypeBase("FileType", {name: value for name, (value, _t, _d) in FTYPES.items()},
                         module=__name__, qualname="FileType")
FileType.__doc__ = _FileTypeBase.__doc__


def file_types() -> list[FileType]:
    """Every file type, in llama_ftype order."""
    return sorted(FileType, key=int)


@dataclass(frozen=True)
class QuantizeResult:
    """What a :func:`quantize` run produced (or, with ``dry_run``, would produce).

    ``tensor_types`` maps each tensor to its new ggml type name; ``tensor_bytes`` is the new tensor
    data (padding included); ``file_size`` is the real size of the output (the estimate for a dry run).
    """

    paths: list[Path]
    ftype: FileType
    tensor_types: dict[str, str]
    tensor_bytes: int
    original_tensor_bytes: int
    file_size: int
    seconds: float
    dry_run: bool = False
    log: list[str] = field(default_factory=list, repr=False)

    @property
    def path(self) -> Path | None:
        return self.paths[0] if self.paths else None

    @property
    def bpw(self) -> float:
        """Bits per weight over all tensors (data bytes / weights)."""
        n = sum(self._n_elements.values()) or 1
        return self.tensor_bytes * 8 / n

    _n_elements: dict[str, int] = field(default_factory=dict, repr=False)


Progress = Union[bool, Callable[[int, int], Any], None]
TensorTypes = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]

_HEAD = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)\s+-\s+\[([\d,\s]+)\],\s+type\s+=\s+(\S+),")
_CONVERT = re.compile(r"converting to (\S+) \.\.")
_SIZE_TYPE = re.compile(r"size = .*MB, type = (\S+)")


def _parse_log(lines: list[str]) -> tuple[dict[str, str], dict[str, list[int]], tuple[int, int]]:
    """(new type per tensor, shape per tensor, (done, total)) from ik's per-tensor INFO lines."""
    types: dict[str, str] = {}
    shapes: dict[str, list[int]] = {}
    done = total = 0
    current = None
    for line in lines:
        m = _HEAD.search(line)
        if m:
            done, total, current = int(m.group(1)), int(m.group(2)), m.group(3)
            shapes[current] = [int(x) for x in m.group(4).split(",")]
            types[current] = m.group(5)
            rest = line[m.end():]
        elif current is None:
            continue
        else:
            rest = line
        for pattern in (_CONVERT, _SIZE_TYPE):
            c = pattern.search(rest)
            if c:
                types[current] = c.group(1)
    return types, shapes, (done, total)


def _tensor_classes(tensor_types: TensorTypes | None) -> dict[str, int]:
    items = tensor_types.items() if isinstance(tensor_types, Mapping) else (tensor_types or ())
    out = {}
    for key, value in items:
        cls = str(key).strip()
        if cls.endswith(".weight"):
            cls = cls[: -len(".weight")]
        if cls not in TENSOR_CLASSES:
            raise UnsupportedConfigError(
                f"tensor_types key {key!r}: ik's C quantize API takes one type per tensor class, one of "
                f"{', '.join(TENSOR_CLASSES)}. Per-regex rules need ik's llama-quantize tool "
                "(--custom-q), which this C API cannot drive.")
        out[TENSOR_CLASSES[cls]] = ggml_type_id(value)
    return out


def _check_source(src: Path, allow_requantize: bool) -> tuple[int, int]:
    """Validate the input and return (tensor data bytes, header bytes); refuse a quantized source unless allowed."""
    from .info import read_gguf

    info = read_gguf(src)
    if not allow_requantize:
        quantized = sorted({t.type for t in info.tensors if len(t.shape) >= 2 and t.type.lower() not in _FLOAT_TYPES})
        if quantized:
            raise QuantizeError(
                f"{src.name} is already quantized ({', '.join(quantized)}); requantizing loses quality. "
                "Fix: start from an F32/F16/BF16 file, or pass allow_requantize=True.")
    return sum(t.n_bytes for t in info.tensors), info.data_offset


def _check_destination(src: Path, dst: Path) -> None:
    if dst.resolve() == src.resolve():
        raise QuantizeError(f"destination {dst} is the source file; choose another name")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise QuantizeError(f"destination folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise QuantizeError(f"destination folder {parent} is not writable")
    if dst.is_dir():
        raise QuantizeError(f"destination {dst} is a folder; give a file name")


def _start_progress(progress: Progress, lines: list[str]) -> tuple[threading.Event, threading.Thread] | None:
    """Follow ik's per-tensor log lines in a thread and report (done, total) to a tqdm bar or a callable."""
    if not progress:
        return None
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:
            raise ImportError("progress=True needs tqdm: pip install 'ikllama[progress]'") from exc
        bar = tqdm(total=0, unit="tensor", desc="quantizing", leave=False)

        def report(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
    elif callable(progress):
        report = progress  # type: ignore[assignment]
        bar = None
    else:
        raise ValueError("progress must be True (tqdm bar), a callable(done, total) or None")
    stop = threading.Event()

    def follow() -> None:
        seen = (0, 0)
        while True:
            finished = stop.wait(0.1)
            now = _parse_log(list(lines))[2]
            if now != seen and now[1]:
                seen = now
                try:
                    report(*now)
                except Exception:  # a broken callback must not hide the quantize result
                    logger.exception("quantize progress callback failed")
            if finished:
                if bar is not None:
                    bar.close()
                return

    thread = threading.Thread(target=follow, name="ikllama-quantize-progress", daemon=True)
    thread.start()
    return stop, thread


def _fill_params(p: Any, ftype: FileType, nthread: int, classes: dict[str, int], flags: dict[str, bool]) -> None:
    p.nthread = nthread
    p.ftype = int(ftype)
    for name, type_id in classes.items():
        setattr(p, name, type_id)
    for name, value in flags.items():
        setattr(p, name, value)


def quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str], ftype: str | int | FileType, *,
             nthread: int | None = None, allow_requantize: bool = False, quantize_output_tensor: bool = True,
             output_type: str | None = None, token_embedding_type: str | None = None,
             tensor_types: TensorTypes | None = None, imatrix: str | os.PathLike[str] | None = None,
             pure: bool = False, keep_split: bool = False, dry_run: bool = False,
             progress: Progress = None) -> QuantizeResult:
    """Quantize the GGUF ``src`` to ``dst`` as ``ftype`` (wraps ``llama_model_quantize``).

    ``ftype`` is a :class:`FileType` or its name ("Q4_K_M", "iq4_ks", "copy"); ``tensor_types`` maps
    tensor classes (``attn_v``, ``ffn_down``, ``output``, ...) to ggml types; ``keep_split`` keeps a
    split source split (``dst`` is then the shard prefix). ``dry_run`` writes nothing and returns the
    tensor types and the expected size. The output appears under ``dst`` only when ik succeeded.
    Returns a :class:`QuantizeResult` (plain data, no native resources).
    """
    src_p, dst_p = Path(src), Path(dst)
    copy_only = isinstance(ftype, str) and ftype.strip().upper() == "COPY"
    ft = FileType.parse(ftype)
    if imatrix is not None:
        raise UnsupportedConfigError(
            "imatrix: ik's C quantize API takes the importance matrix as a C++ object that cannot be built "
            "from C. Fix: run ik's llama-quantize tool with --imatrix FILE (scripts/build_tools.sh builds it).")
    if nthread is not None and (not isinstance(nthread, int) or nthread < 0):
        raise ValueError(f"nthread={nthread!r} must be a non-negative int (0 or None: all cores)")
    classes = _tensor_classes(tensor_types)
    if output_type is not None:
        classes["output_tensor_type"] = ggml_type_id(output_type)
    if token_embedding_type is not None:
        classes["token_embedding_type"] = ggml_type_id(token_embedding_type)
    orig_bytes, header_bytes = _check_source(src_p, allow_requantize or copy_only)
    if not dry_run:
        _check_destination(src_p, dst_p)

    ensure_init()
    params = lib.llama_model_quantize_default_params()
    _fill_params(params, ft, nthread or 0, classes, {
        "allow_requantize": allow_requantize, "quantize_output_tensor": quantize_output_tensor,
        "only_copy": copy_only, "pure": pure, "keep_split": keep_split, "dry_run": dry_run})
    p = ffi.new("llama_model_quantize_params *", params)

    tmp = dst_p.with_name(f".{dst_p.name}.{uuid.uuid4().hex[:8]}.part")
    out_name = os.fsencode(tmp if not dry_run else dst_p)
    mark = _log.mark()
    lines = _log.capture_start()
    follower = _start_progress(progress, lines)
    t0 = time.perf_counter()
    try:
        rc = lib.llama_model_quantize(os.fsencode(src_p), out_name, p)
    finally:
        seconds = time.perf_counter() - t0
        _log.capture_stop()
        if follower is not None:
            follower[0].set()
            follower[1].join()
        produced = _produced(tmp, keep_split)
        if dry_run or rc != 0:
            for f in produced:
                f.unlink(missing_ok=True)
    if rc != 0:
        raise QuantizeError(with_native(f"ik_llama.cpp could not quantize {src_p.name} to {ft.name}",
                                        _log.since(mark)))
    types, shapes, _ = _parse_log(lines)
    n_elem = {name: _prod(shape) for name, shape in shapes.items()}
    new_bytes = sum(_padded(_tensor_bytes(types[n], shapes[n])) for n in types)
    if dry_run:
        paths: list[Path] = []
        size = header_bytes + new_bytes
    else:
        paths = _publish(produced, tmp, dst_p, keep_split)
        size = sum(f.stat().st_size for f in paths)
    logger.info("quantized %s -> %s (%s) in %.2f s", src_p.name, dst_p.name, ft.name, seconds)
    return QuantizeResult(paths, ft, types, new_bytes, orig_bytes, size, seconds, dry_run, list(lines), n_elem)


def _prod(shape: list[int]) -> int:
    n = 1
    for x in shape:
        n *= x
    return n


def _padded(n: int, align: int = 32) -> int:
    return (n + align - 1) // align * align


def _tensor_bytes(type_name: str, shape: list[int]) -> int:
    t = ggml_type_id(type_name)
    return int(lib.ggml_row_size(t, shape[0])) * _prod(shape[1:])


def _produced(tmp: Path, keep_split: bool) -> list[Path]:
    if not keep_split:
        return [tmp] if tmp.exists() else []
    return sorted(tmp.parent.glob(f"{tmp.name}-*-of-*.gguf"))


def _publish(produced: list[Path], tmp: Path, dst: Path, keep_split: bool) -> list[Path]:
    """Rename the finished temporary file(s) to their final names."""
    if not produced:
        raise QuantizeError(f"ik reported success but wrote no file for {dst}")
    final = []
    for f in produced:
        target = dst if not keep_split else dst.with_name(dst.name + f.name[len(tmp.name):])
        os.replace(f, target)
        final.append(target)
    return final
