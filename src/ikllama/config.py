"""``ModelConfig``: everything that goes into ``llama_model_params``, validated before C sees it."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from .enums import SplitMode

if TYPE_CHECKING:
    from .model import Model

__all__ = ["ModelConfig", "ProgressCallback"]

#: Called with the load progress in [0, 1]; return False to cancel the load.
ProgressCallback = Callable[[float], Union[bool, None]]
KvOverrideValue = Union[bool, int, float, str]

_HOST_PORT = re.compile(r"^[^\s|,]+:\d{1,5}$")


@dataclass(frozen=True)
class ModelConfig:
    """How to load a GGUF model (wraps ``llama_model_params``).

    Use keyword arguments or the ``with_*`` builders (each returns a new config), then
    :meth:`load_gguf`. ``progress`` may be a callable (return ``False`` to cancel) or ``True`` for a
    tqdm bar (needs ``tqdm``).
    """

    n_gpu_layers: int = 0
    main_gpu: int = 0
    split_mode: SplitMode = SplitMode.LAYER
    tensor_split: Sequence[float] | None = None
    use_mmap: bool = True
    use_mlock: bool = False
    vocab_only: bool = False
    check_tensors: bool = False
    devices: Sequence[str] | None = None
    rpc_servers: Sequence[str] | None = None
    #: seconds to wait for any one reply of an RPC peer before its connection counts as lost (None: as long
    #: as TCP keeps it; a dead host is still noticed within ~10 s by keepalive). Raise it for slow peers.
    rpc_timeout: float | None = 120.0
    tensor_overrides: Sequence[tuple[str, str]] = ()
    n_cpu_moe: int = 0
    mla: int = 3
    repack_tensors: bool = False
    fit: bool = False
    fit_margin: int | None = None
    mtp: bool = False
    kv_overrides: Mapping[str, KvOverrideValue] = field(default_factory=dict)
    progress: ProgressCallback | bool | None = None
    #: also load the file once with ``vocab_only`` in a spawned child (see ``ikllama.modelfile.untrusted``)
    untrusted: bool = False

    # -- builders (slm_inference style) ---------------------------------------------------------
    def with_n_gpu_layers(self, n: int) -> ModelConfig:
        return dataclasses.replace(self, n_gpu_layers=n)

    def with_main_gpu(self, index: int) -> ModelConfig:
        return dataclasses.replace(self, main_gpu=index)

    def with_split_mode(self, mode: SplitMode) -> ModelConfig:
        return dataclasses.replace(self, split_mode=mode)

    def with_mmap(self, on: bool) -> ModelConfig:
        return dataclasses.replace(self, use_mmap=on)

    def with_mlock(self, on: bool) -> ModelConfig:
        return dataclasses.replace(self, use_mlock=on)

    def with_rpc_servers(self, servers: Sequence[str]) -> ModelConfig:
        return dataclasses.replace(self, rpc_servers=tuple(servers))

    def with_tensor_overrides(self, overrides: Sequence[tuple[str, str]]) -> ModelConfig:
        return dataclasses.replace(self, tensor_overrides=tuple(overrides))

    def with_progress(self, progress: ProgressCallback | bool | None) -> ModelConfig:
        return dataclasses.replace(self, progress=progress)

    def with_mtp(self, on: bool = True) -> ModelConfig:
        return dataclasses.replace(self, mtp=on)

    def load_gguf(self, path: str | os.PathLike[str]) -> Model:
        """Load the GGUF at ``path`` with this config (wraps ``llama_model_load_from_file``).

        Returns an owning :class:`Model`; close it (or use ``with``) to free its memory.
        """
        from .model import Model

        return Model._load(Path(path), self)

    def load_hf(self, repo_id: str, filename: str, revision: str | None = None) -> Model:
        """Fetch ``filename`` (or a glob) from a Hugging Face repo (:func:`ikllama.modelfile.hf.hf_file`) and load it.

        Needs the ``hf`` extra. Returns an owning :class:`Model`, as :meth:`load_gguf` does.
        """
        from .modelfile.hf import hf_file

        return self.load_gguf(hf_file(repo_id, filename, revision))

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that ik would reject or abort on."""
        if self.n_gpu_layers < -1:
            raise ValueError(f"n_gpu_layers={self.n_gpu_layers}: use -1 (all layers), 0 or a positive count")
        if self.main_gpu < 0:
            raise ValueError(f"main_gpu={self.main_gpu} must be >= 0")
        if not isinstance(self.split_mode, SplitMode):
            raise ValueError(f"split_mode must be an ikllama.SplitMode, not {self.split_mode!r}")
        if self.n_cpu_moe < 0:
            raise ValueError(f"n_cpu_moe={self.n_cpu_moe} must be >= 0")
        if not 0 <= self.mla <= 3:
            raise ValueError(f"mla={self.mla} must be 0..3")
        if self.fit and self.tensor_overrides:
            raise ValueError("fit=True cannot be combined with tensor_overrides (ik refuses the pair)")
        if self.fit and self.n_cpu_moe:
            raise ValueError("fit=True cannot be combined with n_cpu_moe (ik refuses the pair)")
        if self.fit_margin is not None and self.fit_margin < 0:
            raise ValueError(f"fit_margin={self.fit_margin} (MiB) must be >= 0")
        if self.tensor_split is not None and any(x < 0 for x in self.tensor_split):
            raise ValueError("tensor_split entries must be >= 0")
        if isinstance(self.rpc_servers, str):
            raise ValueError("rpc_servers must be a list of 'host:port' strings, not one string")
        for server in self.rpc_servers or ():
            base, _, device = str(server).partition("|")
            if not _HOST_PORT.match(base) or ("|" in str(server) and not device.isdigit()):
                raise ValueError(f"rpc server {server!r}: expected 'host:port' or 'host:port|device'")
        if self.rpc_timeout is not None and not self.rpc_timeout > 0:
            raise ValueError(f"rpc_timeout={self.rpc_timeout}: give seconds > 0, or None for no reply deadline")
        for pattern, buft in self.tensor_overrides:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"tensor_overrides pattern {pattern!r} is not a valid regex: {exc}") from None
            if not isinstance(buft, str) or not buft:
                raise ValueError(f"tensor_overrides buffer type for {pattern!r} must be a name such as 'CPU'")
        for key, value in self.kv_overrides.items():
            if not key or len(key.encode()) >= 128:
                raise ValueError(f"kv_overrides key {key!r} must be 1..127 bytes")
            if not isinstance(value, (bool, int, float, str)):
                raise ValueError(f"kv_overrides[{key!r}] must be bool, int, float or str, not {type(value).__name__}")
            if isinstance(value, str) and len(value.encode()) >= 128:
                raise ValueError(f"kv_overrides[{key!r}]: string values are limited to 127 bytes")
        if self.progress is not None and not (isinstance(self.progress, bool) or callable(self.progress)):
            raise ValueError("progress must be a callable, True (tqdm bar) or None")
