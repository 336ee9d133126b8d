"""LoRA adapters and control vectors (``llama_lora_adapter_*``, ``llama_control_vector_apply``).

An adapter belongs to the model it was loaded for: ik frees every adapter together with the model, so
:class:`LoraAdapter` keeps its model alive and :meth:`LoraAdapter.close` first detaches the adapter from
each context it was set on. Control vectors are read from GGUF files (``direction.<layer>`` tensors, as
ik's ``llama-cvector-generator`` writes them) with gguf-py and handed to ik as one float buffer.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _log
from .._lib import ffi, lib
from ..errors import ClosedError, IkLlamaError, with_native

if TYPE_CHECKING:
    from ..context import Context
    from ..model import Model

__all__ = ["LoraError", "LoraAdapter", "load_lora", "set_lora", "remove_lora", "clear_loras",
           "load_control_vector", "set_control_vector", "clear_control_vector"]


class LoraError(IkLlamaError):
    """An adapter or control vector was rejected (wrong architecture, shapes, or file)."""


class LoraAdapter:
    """A LoRA adapter loaded for one model (``llama_lora_adapter *``; freed by :meth:`close` or with the model)."""

    def __init__(self, handle: Any, model: Model, path: Path):
        self._h = handle
        self.model = model
        self.path = path
        self._contexts: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._h is None or self.model._h is None

    def _ptr(self) -> Any:
        if self.closed:
            raise ClosedError("this LoRA adapter (or its model) is closed; load it again")
        return self._h

    def close(self) -> None:
        """Detach from every context it is set on, then free it (wraps ``llama_lora_adapter_free``)."""
        with self._lock:
            h, self._h = self._h, None
            contexts = list(self._contexts)
            self._contexts.clear()
        if h is None or self.model._h is None:  # already freed, or freed by ik with its model
            return
        for ctx in contexts:
            if not ctx.closed:
                lib.llama_lora_adapter_remove(ctx._ptr(), h)
        lib.llama_lora_adapter_free(h)

    def __enter__(self) -> LoraAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LoraAdapter({self.path.name!r}{', closed' if self.closed else ''})"


def load_lora(model: Model, path: str | os.PathLike[str]) -> LoraAdapter:
    """Load the LoRA adapter GGUF at ``path`` for ``model`` (wraps ``llama_lora_adapter_init``).

    Raises :class:`LoraError` with ik's reason (another architecture, a tensor missing from the model,
    wrong shapes). The adapter lives until :meth:`LoraAdapter.close` or until the model is freed.
    """
    from ..backend import ensure_init
    from ..model import _check_gguf_file

    p = Path(path)
    try:
        _check_gguf_file(p)
    except IkLlamaError as exc:
        raise LoraError(str(exc)) from None
    ensure_init()
    mark = _log.mark()
    h = lib.llama_lora_adapter_init(model._ptr(), os.fsencode(p))
    if h == ffi.NULL:
        raise LoraError(with_native(f"ik_llama.cpp rejected the LoRA adapter {p.name} for this model", _log.since(mark)))
    return LoraAdapter(h, model, p)


def _check_pair(ctx: Context, adapter: LoraAdapter) -> None:
    if not isinstance(adapter, LoraAdapter):
        raise TypeError(f"expected a LoraAdapter, not {type(adapter).__name__}")
    if adapter.model is not ctx.model:
        raise LoraError("this adapter was loaded for another model; load it with this context's model")


def set_lora(ctx: Context, adapter: LoraAdapter, scale: float = 1.0) -> None:
    """Apply ``adapter`` to ``ctx`` at ``scale`` from the next decode on (wraps ``llama_lora_adapter_set``)."""
    _check_pair(ctx, adapter)
    scale = float(scale)
    if not np.isfinite(scale):
        raise ValueError(f"scale={scale} must be finite")
    if getattr(getattr(ctx, "config", None), "flash_attn", False):
        raise LoraError("ik cannot apply a LoRA adapter to a context with flash attention. "
                        "Fix: build the context with .with_flash_attn(False)")
    mark = _log.mark()
    rc = lib.llama_lora_adapter_set(ctx._ptr(), adapter._ptr(), scale)
    if rc != 0:
        raise LoraError(with_native(f"llama_lora_adapter_set returned {rc}", _log.since(mark)))
    with adapter._lock:
        adapter._contexts.add(ctx)


def remove_lora(ctx: Context, adapter: LoraAdapter) -> bool:
    """Stop applying ``adapter`` on ``ctx``; False if it was not set (wraps ``llama_lora_adapter_remove``)."""
    _check_pair(ctx, adapter)
    rc = lib.llama_lora_adapter_remove(ctx._ptr(), adapter._ptr())
    with adapter._lock:
        adapter._contexts.discard(ctx)
    return rc == 0


def clear_loras(ctx: Context) -> None:
    """Remove every adapter from ``ctx`` (wraps ``llama_lora_adapter_clear``)."""
    lib.llama_lora_adapter_clear(ctx._ptr())


def load_control_vector(paths: str | os.PathLike[str] | Sequence[Any] | Mapping[Any, float],
                        n_embd: int | None = None) -> np.ndarray:
    """Read control-vector GGUF files (``direction.<layer>`` tensors) into an ``(n_layer_max, n_embd)`` array.

    ``paths`` is one file, a list of files or ``{file: strength}``; vectors are summed with their
    strengths as ik's common code does. Row ``i`` is layer ``i + 1`` (layer 0 has no vector).
    """
    from .info import read_gguf

    if isinstance(paths, Mapping):
        items = list(paths.items())
    elif isinstance(paths, (str, os.PathLike)):
        items = [(paths, 1.0)]
    else:
        items = [(p, 1.0) for p in paths]
    layers: dict[int, np.ndarray] = {}
    for path, strength in items:
        f = read_gguf(path)
        data = np.memmap(f.path, dtype=np.uint8, mode="r")
        for t in f.tensors:
            name = t.name
            if not name.startswith("direction.") or not name[10:].isdigit():
                raise LoraError(f"{f.path.name}: unexpected tensor {name!r} in a control vector file")
            layer = int(name[10:])
            if t.type != "f32" or len(t.shape) != 1 or layer < 1:
                raise LoraError(f"{f.path.name}: {name} must be a 1-D f32 vector for a layer >= 1")
            if n_embd is not None and t.shape[0] != n_embd:
                raise LoraError(f"{f.path.name}: {name} has {t.shape[0]} values, the model's n_embd is {n_embd}")
            start = f.data_offset + t.offset
            vec = np.frombuffer(data[start:start + t.n_bytes].tobytes(), dtype=np.float32) * float(strength)
            layers[layer] = layers.get(layer, 0) + vec
    if not layers:
        raise LoraError("no control vector tensors found")
    width = {v.shape[0] for v in layers.values()}
    if len(width) != 1:
        raise LoraError(f"control vectors of different widths: {sorted(width)}")
    out = np.zeros((max(layers), width.pop()), dtype=np.float32)
    for layer, vec in layers.items():
        out[layer - 1] = vec
    return out


def set_control_vector(ctx: Context, vectors: np.ndarray | Sequence[Sequence[float]], layer_start: int = 1,
                       layer_end: int | None = None) -> None:
    """Add ``vectors[i]`` to the output of layer ``i + 1`` for layers ``layer_start..layer_end``.

    ``vectors`` is ``(n_layers, n_embd)`` (e.g. from :func:`load_control_vector`). Wraps
    ``llama_control_vector_apply``; ik copies the data, so the array may be freed afterwards.
    """
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    n_embd = ctx.model.n_embd
    if arr.ndim != 2 or arr.shape[1] != n_embd:
        raise LoraError(f"control vector of shape {arr.shape}: expected (n_layers, {n_embd})")
    if not np.isfinite(arr).all():
        raise ValueError("control vector holds NaN or infinity")
    n_layer = ctx.model.n_layer
    end = n_layer if layer_end is None else layer_end
    if not 1 <= layer_start <= end <= n_layer:
        raise ValueError(f"layers {layer_start}..{end}: need 1 <= layer_start <= layer_end <= {n_layer}")
    mark = _log.mark()
    rc = lib.llama_control_vector_apply(ctx._ptr(), ffi.from_buffer("float[]", arr), arr.size, n_embd,
                                        layer_start, end)
    if rc != 0:
        raise LoraError(with_native("ik_llama.cpp rejected the control vector", _log.since(mark)))


def clear_control_vector(ctx: Context) -> None:
    """Stop applying the control vector (wraps ``llama_control_vector_apply`` with NULL data)."""
    lib.llama_control_vector_apply(ctx._ptr(), ffi.NULL, 0, ctx.model.n_embd, -1, -1)
