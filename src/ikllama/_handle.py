"""Base for objects that own one native handle: explicit ``close()``, ``with``, a single-user guard.

The handle is wrapped with ``ffi.gc`` at allocation as a safety net only; ``close()`` frees it now
through ``ffi.release`` (calling the same destructor exactly once). No ``__del__``.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

from ._lib import ffi
from .errors import ClosedError, ConcurrentUseError

F = TypeVar("F", bound=Callable[..., Any])


class NativeHandle:
    """Owns ``self._h`` (a gc-managed cdata pointer) until :meth:`close`."""

    _kind = "object"

    def __init__(self, handle: Any):
        self._h = handle
        self._busy = threading.RLock()  # re-entrant for the owning thread

    @property
    def closed(self) -> bool:
        return self._h is None

    def _ptr(self) -> Any:
        h = self._h
        if h is None:
            raise ClosedError(f"this {self._kind} is closed; create a new one")
        return h

    def _free(self) -> None:
        """Release the handle now (subclasses extend this to drop what they own first)."""
        h, self._h = self._h, None
        if h is not None:
            ffi.release(h)

    def close(self) -> None:
        """Free the native object now. Idempotent; any later use raises :class:`ClosedError`."""
        if self._h is None:
            return
        if not self._busy.acquire(blocking=False):
            raise ConcurrentUseError(f"cannot close this {self._kind} while another thread is using it")
        try:
            self._free()
        finally:
            self._busy.release()

    def __enter__(self):
        self._ptr()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exclusive(method: F) -> F:
    """Run ``method`` holding the object's guard; a second thread gets ConcurrentUseError, not a crash."""

    @functools.wraps(method)
    def wrapper(self: NativeHandle, *args: Any, **kwargs: Any) -> Any:
        if not self._busy.acquire(blocking=False):
            raise ConcurrentUseError(
                f"{type(self).__name__}.{method.__name__}: this {self._kind} is in use by another thread; "
                "a context serves one thread at a time (use one context per thread, or a lock)")
        try:
            self._ptr()
            return method(self, *args, **kwargs)
        finally:
            self._busy.release()

    return wrapper  # type: ignore[return-value]
