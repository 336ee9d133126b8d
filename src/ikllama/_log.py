"""Native log lines into Python ``logging``.

ik_llama.cpp reports through a log callback (``llama_log_set``), often in fragments: a line may
arrive in pieces, the later ones tagged ``GGML_LOG_LEVEL_CONT``. The handler below joins the
pieces per thread and emits whole lines to ``logging.getLogger("ikllama.native")`` at the mapped
level. It also keeps the last warning/error lines in a ring so that exceptions can quote what the
C side said (ik has no last-error API). Installed by ``backend.ensure_init()``, never at import.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading

from ._lib import ffi, lib

logger = logging.getLogger("ikllama.native")

_LEVELS = {
    lib.GGML_LOG_LEVEL_NONE: logging.DEBUG,
    lib.GGML_LOG_LEVEL_DEBUG: logging.DEBUG,
    lib.GGML_LOG_LEVEL_INFO: logging.INFO,
    lib.GGML_LOG_LEVEL_WARN: logging.WARNING,
    lib.GGML_LOG_LEVEL_ERROR: logging.ERROR,
}

_pending = threading.local()          # per-thread partial line and its level
_counter = itertools.count(1)
_recent: collections.deque[tuple[int, str]] = collections.deque(maxlen=64)
_recent_lock = threading.Lock()


def mark() -> int:
    """A position in the stream of warning/error lines; pass it to :func:`since`."""
    with _recent_lock:
        return _recent[-1][0] if _recent else 0


def since(position: int) -> list[str]:
    """Warning and error lines logged after ``position`` (from :func:`mark`)."""
    with _recent_lock:
        return [line for seq, line in _recent if seq > position]


def capture_start() -> list[str]:
    """Start collecting every native line this thread logs; see :func:`capture_stop`."""
    lines: list[str] = []
    _pending.capture = lines
    return lines


def capture_stop() -> None:
    _pending.capture = None


def _emit(level: int, line: str) -> None:
    line = line.rstrip()
    if not line:
        return
    captured = getattr(_pending, "capture", None)
    if captured is not None:
        captured.append(line)
    if level >= logging.WARNING:
        with _recent_lock:
            _recent.append((next(_counter), line))
    if logger.isEnabledFor(level):
        logger.log(level, "%s", line)


def handle(native_level: int, text: str) -> None:
    """Feed one callback fragment; complete lines are emitted, the rest waits for its continuation."""
    buf = getattr(_pending, "buf", "")
    if native_level == lib.GGML_LOG_LEVEL_CONT:
        level = getattr(_pending, "level", logging.INFO)
    else:
        level = _LEVELS.get(native_level, logging.INFO)
        if buf:  # a new message while a fragment waits: the fragment was a whole line after all
            _emit(getattr(_pending, "level", logging.INFO), buf)
            buf = ""
    _pending.level = level
    buf += text
    *lines, buf = buf.split("\n")
    for line in lines:
        _emit(level, line)
    _pending.buf = buf


@ffi.def_extern()
def ikl_py_log(level, text, user_data):  # noqa: ARG001 - signature fixed by ggml_log_callback
    try:
        handle(level, ffi.string(text).decode("utf-8", "replace"))
    except Exception:  # an exception must never unwind into C
        pass


def install() -> None:
    """Route ik's log callback here (idempotent; called once by backend.ensure_init)."""
    lib.llama_log_set(lib.ikl_py_log, ffi.NULL)
