"""The only importer of the compiled cffi module: exposes ``ffi`` and ``lib``.

``ffi`` and ``lib`` are stand-ins until their first attribute access, which chooses the native build for the
process (:func:`ikllama.devices.plugins.select`: the core's CPU build or a GPU plugin such as ``ikllama-vulkan``, by
``IKLLAMA_DEVICE``) and loads it; importing this module loads nothing. Each attribute is then cached on the
stand-in, so later calls cost what a plain cffi ``lib`` attribute costs.

The chosen module is checked against this very Python package (same version, same declaration files): an
editable install with a stale build dir, or a plugin from another release, otherwise crashes or misbehaves in
ways that are hard to trace.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._version import __version__

__all__ = ["ffi", "lib", "build_info", "selection"]

_lock = threading.RLock()
_selected: Any = None  # ikllama.devices.plugins.Selection once chosen
# Names read through the stand-in every time: properties of the real ffi whose value changes.
_UNCACHED = frozenset({"errno"})


def _decl_hash() -> str | None:
    """Digest of the shipped decl files, computed as _ffi_build.py does (None if not shipped)."""
    from . import _ffi_build_order

    decl = Path(__file__).with_name("_decl")
    try:
        cdef = "\n".join((decl / f"{name}.h").read_text() for name in _ffi_build_order.DECL_ORDER)
    except OSError:
        return None
    return hashlib.sha256(cdef.encode()).hexdigest()[:16]


def _check_module(module: Any, distribution: str = "ikllama") -> None:
    """Raise ImportError unless ``module`` was built from this package's version and declaration files."""
    ffi, lib = module.ffi, module.lib
    if distribution == "ikllama":
        fix = "rebuild with `pip install .` (editable: `pip install -e . --no-build-isolation`)"
    else:
        fix = f"reinstall it with `pip install \"{distribution}=={__version__}\"`"
    built = ffi.string(lib.IKLLAMA_BUILD_VERSION).decode()
    if built != __version__:
        raise ImportError(
            f"{distribution}'s compiled module is version {built} but the Python package is {__version__}: "
            f"a stale build. Fix: {fix}.")
    expected = _decl_hash()
    built_hash = ffi.string(lib.IKLLAMA_DECL_HASH).decode()
    if expected is not None and built_hash != expected:
        raise ImportError(
            f"{distribution}'s compiled module was built from other declaration files (_decl/*.h) than the ones "
            f"beside it: a stale build. Fix: {fix}.")


def _load_core() -> Any:
    try:
        return importlib.import_module("ikllama._ikllama_cffi")
    except ImportError as exc:
        raise ImportError(
            f"ikllama's compiled module is missing or cannot be loaded ({exc}). "
            "Fix: reinstall with `pip install .` (or `pip install -e . --no-build-isolation` in a checkout)."
        ) from exc


def selection() -> Any:
    """The native build this process uses (an ``ikllama.devices.plugins.Selection``), choosing it on the first call.

    Raises :class:`ikllama.errors.DeviceError` when ``IKLLAMA_DEVICE`` asks for a backend that cannot run, and
    ImportError for a missing or stale build. The choice holds until the process exits.
    """
    global _selected
    if _selected is None:
        with _lock:
            if _selected is None:
                from .devices import plugins

                chosen = plugins.select(_load_core, _check_module)
                _selected = chosen
                for callback in _pending_externs:
                    callback(chosen.module.ffi)
                _pending_externs.clear()
    return _selected


def _check_build() -> None:
    """Raise ImportError if the selected compiled module is stale (see :func:`_check_module`)."""
    chosen = selection()
    _check_module(chosen.module, "ikllama" if chosen.package == "ikllama" else f"ikllama-{chosen.device}")


_pending_externs: list[Callable[[Any], None]] = []


class _Native:
    """Stands in for the chosen module's ``ffi`` or ``lib``: the first attribute access selects and loads it."""

    def __init__(self, which: str) -> None:
        self.__dict__["_which"] = which

    def __getattr__(self, name: str) -> Any:
        value = getattr(getattr(selection().module, self.__dict__["_which"]), name)
        if name not in _UNCACHED:
            self.__dict__[name] = value
        return value

    def __dir__(self) -> list[str]:
        return dir(getattr(selection().module, self.__dict__["_which"]))

    def __repr__(self) -> str:
        state = "unselected" if _selected is None else _selected.package
        return f"<ikllama native {self.__dict__['_which']} ({state})>"


class _NativeFFI(_Native):
    def addressof(self, obj: Any, *fields: Any) -> Any:
        """``ffi.addressof`` that accepts the ``lib`` stand-in (``ffi.addressof(lib, "name")``)."""
        real = selection().module
        if isinstance(obj, _Native):
            obj = getattr(real, obj.__dict__["_which"])
        return real.ffi.addressof(obj, *fields)

    def def_extern(self, name: str | None = None, **kwargs: Any) -> Callable[[Callable], Callable]:
        """``ffi.def_extern`` that waits for the selection instead of forcing it (applied to the chosen ffi)."""
        def register(func: Callable) -> Callable:
            def apply(real_ffi: Any) -> None:
                real_ffi.def_extern(name, **kwargs)(func)

            with _lock:
                if _selected is None:
                    _pending_externs.append(apply)
                else:
                    apply(_selected.module.ffi)
            return func
        return register


ffi: Any = _NativeFFI("ffi")
lib: Any = _Native("lib")


def build_info() -> dict[str, str]:
    """What the build stamped into the compiled module, and which native build (``device``) was chosen."""
    chosen = selection()
    real_ffi, real_lib = chosen.module.ffi, chosen.module.lib
    return {
        "version": real_ffi.string(real_lib.IKLLAMA_BUILD_VERSION).decode(),
        "upstream_commit": real_ffi.string(real_lib.IKLLAMA_UPSTREAM_COMMIT).decode(),
        "build_type": real_ffi.string(real_lib.IKLLAMA_BUILD_TYPE).decode(),
        "backends": real_ffi.string(real_lib.IKLLAMA_BACKENDS).decode(),
        "device": chosen.device,
        "package": chosen.package,
    }
