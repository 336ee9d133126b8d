"""Filling ``llama_model_params`` from a :class:`ModelConfig`.

C keeps pointers into memory we allocate (strings, arrays, the progress handle) for as long as
the load runs, so :class:`ModelParams` owns every such cdata in ``_keep`` for its own lifetime.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._lib import ffi, lib
from .config import ModelConfig
from .errors import UnsupportedConfigError

if TYPE_CHECKING:
    from .rpc.placement import Placement

logger = logging.getLogger("ikllama")


@ffi.def_extern()
def ikl_py_progress(progress, user_data):
    """Load-progress trampoline: never lets an exception unwind into C (it cancels the load instead)."""
    state = ffi.from_handle(user_data)
    try:
        return state.report(float(progress))
    except BaseException as exc:  # stored and re-raised by Model._load after C returns
        state.progress_error = exc
        return False


def buffer_types() -> dict[str, Any]:
    """Buffer types by name (``CPU``, ``CUDA0``, …) as ik's common code enumerates them."""
    found = {}
    for i in range(lib.ggml_backend_reg_get_count()):
        buft = lib.ggml_backend_reg_get_default_buffer_type(i)
        if buft != ffi.NULL:
            found[ffi.string(lib.ggml_backend_buft_name(buft)).decode()] = buft
    found.setdefault("CPU", lib.ggml_backend_cpu_buffer_type())
    return found


def offload_devices() -> list[str]:
    """Names of the non-CPU buffer types this build registered (one per GPU device)."""
    return [name for name in buffer_types() if name != "CPU" and not name.startswith("CPU_")]


class ModelParams:
    """A ``llama_model_params`` value plus everything it points to."""

    def __init__(self, config: ModelConfig, placement: Placement | None = None):
        self.config = config
        self._keep: list[Any] = []
        self.progress_error: BaseException | None = None
        self.cancelled = False
        self._bar: Any = None
        p = lib.llama_model_default_params()
        p.n_gpu_layers = 999 if config.n_gpu_layers == -1 else config.n_gpu_layers
        p.main_gpu = config.main_gpu
        p.split_mode = int(config.split_mode)
        p.use_mmap = config.use_mmap
        p.use_mlock = config.use_mlock
        p.vocab_only = config.vocab_only
        p.check_tensors = config.check_tensors
        p.ncmoe = config.n_cpu_moe
        p.mla = config.mla
        p.repack_tensors = config.repack_tensors
        p.fit = config.fit
        if config.fit_margin is not None:
            p.fit_margin = config.fit_margin
        p.mtp = config.mtp
        # The placement (ikllama.rpc.placement.plan) has checked devices, peers and the split already.
        devices = placement.devices if placement is not None else tuple(config.devices or ())
        split = placement.tensor_split if placement is not None else config.tensor_split
        if devices:
            p.devices = self._str(",".join(devices))
        if placement is not None and placement.rpc_servers:
            p.rpc_servers = self._str(placement.rpc_servers)
        if split:
            n = int(lib.llama_max_devices())
            if len(split) > n:
                raise UnsupportedConfigError(f"tensor_split has {len(split)} entries; "
                                             f"this build supports at most {n} devices")
            arr = ffi.new("float[]", n)
            for i, x in enumerate(split):
                arr[i] = x
            p.tensor_split = self._keep_obj(arr)
        if config.tensor_overrides:
            p.tensor_buft_overrides = self._buft_overrides(config.tensor_overrides)
        if config.kv_overrides:
            p.kv_overrides = self._kv_overrides(config.kv_overrides)
        self._handle = ffi.new_handle(self)
        p.progress_callback = lib.ikl_py_progress
        p.progress_callback_user_data = self._handle
        self.c = p

    def _keep_obj(self, obj: Any) -> Any:
        self._keep.append(obj)
        return obj

    def _str(self, s: str) -> Any:
        return self._keep_obj(ffi.new("char[]", s.encode()))

    def _buft_overrides(self, overrides: Any) -> Any:
        bufts = buffer_types()
        arr = ffi.new("struct llama_model_tensor_buft_override[]", len(overrides) + 1)
        for i, (pattern, name) in enumerate(overrides):
            if name not in bufts:
                raise UnsupportedConfigError(
                    f"tensor_overrides: no buffer type {name!r} in this build; available: {', '.join(sorted(bufts))}")
            arr[i].pattern = self._str(pattern)
            arr[i].buft = bufts[name]
        return self._keep_obj(arr)  # the zeroed last entry is the {NULL, NULL} terminator

    def _kv_overrides(self, overrides: Any) -> Any:
        arr = ffi.new("struct llama_model_kv_override[]", len(overrides) + 1)
        for i, (key, value) in enumerate(overrides.items()):
            item = arr[i]
            item.key = key.encode()
            if isinstance(value, bool):
                item.tag, item.val_bool = lib.LLAMA_KV_OVERRIDE_TYPE_BOOL, value
            elif isinstance(value, int):
                item.tag, item.val_i64 = lib.LLAMA_KV_OVERRIDE_TYPE_INT, value
            elif isinstance(value, float):
                item.tag, item.val_f64 = lib.LLAMA_KV_OVERRIDE_TYPE_FLOAT, value
            else:
                item.tag, item.val_str = lib.LLAMA_KV_OVERRIDE_TYPE_STR, value.encode()
        return self._keep_obj(arr)  # key[0] == 0 terminates the list

    # -- progress -----------------------------------------------------------------------------------
    def report(self, progress: float) -> bool:
        if self._bar is not None:
            self._bar.n = round(progress * 100, 1)
            self._bar.refresh()
        callback = self.config.progress
        if callable(callback) and not isinstance(callback, bool):
            if callback(progress) is False:
                self.cancelled = True
                return False
        return True

    @contextlib.contextmanager
    def progress_scope(self) -> Iterator[None]:
        if self.config.progress is True:
            try:
                from tqdm.auto import tqdm
            except ImportError as exc:
                raise ImportError("progress=True needs tqdm: pip install 'ikllama[progress]'") from exc
            self._bar = tqdm(total=100, unit="%", desc="loading", leave=False)
        try:
            yield
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
