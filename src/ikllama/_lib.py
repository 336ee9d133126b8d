"""The only importer of the compiled cffi module: exposes ``ffi`` and ``lib``.

At import it checks that the compiled module was built from this very Python package (same
version, same declaration files); an editable install with a stale build dir otherwise crashes
or misbehaves in ways that are hard to trace.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ._version import __version__

try:
    from ._ikllama_cffi import ffi, lib  # type: ignore[import-not-found]
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        f"ikllama's compiled module is missing or cannot be loaded ({exc}). "
        "Fix: reinstall with `pip install .` (or `pip install -e . --no-build-isolation` in a checkout)."
    ) from exc

__all__ = ["ffi", "lib", "build_info"]


def _decl_hash() -> str | None:
    """Digest of the shipped decl files, computed as _ffi_build.py does (None if not shipped)."""
    from . import _ffi_build_order

    decl = Path(__file__).with_name("_decl")
    try:
        cdef = "\n".join((decl / f"{name}.h").read_text() for name in _ffi_build_order.DECL_ORDER)
    except OSError:
        return None
    return hashlib.sha256(cdef.encode()).hexdigest()[:16]


def _check_build() -> None:
    built = ffi.string(lib.IKLLAMA_BUILD_VERSION).decode()
    if built != __version__:
        raise ImportError(
            f"ikllama's compiled module is version {built} but the Python package is {__version__}: "
            "a stale build. Fix: rebuild with `pip install .` (editable: `pip install -e . --no-build-isolation`).")
    expected = _decl_hash()
    built_hash = ffi.string(lib.IKLLAMA_DECL_HASH).decode()
    if expected is not None and built_hash != expected:
        raise ImportError(
            "ikllama's compiled module was built from other declaration files (_decl/*.h) than the ones "
            "beside it: a stale build. Fix: rebuild with `pip install .` "
            "(editable: `pip install -e . --no-build-isolation`).")


_check_build()


def build_info() -> dict[str, str]:
    """What the build stamped into the compiled module."""
    return {
        "version": ffi.string(lib.IKLLAMA_BUILD_VERSION).decode(),
        "upstream_commit": ffi.string(lib.IKLLAMA_UPSTREAM_COMMIT).decode(),
        "build_type": ffi.string(lib.IKLLAMA_BUILD_TYPE).decode(),
        "backends": ffi.string(lib.IKLLAMA_BACKENDS).decode(),
    }
