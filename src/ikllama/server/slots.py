"""llama-server's slot actions: ``POST /slots/{id}?action=save|restore|erase``.

A slot is one of the engine's sequences. ``save`` writes its KV cells to a file in ``--slot-save-path``
(atomically); ``restore`` loads such a file into an idle slot, which then serves as a cached prefix for
the next request that starts the same way; ``erase`` drops a slot's cells. File names are bare names:
a path, ``..`` or a hidden name is refused, so a client can never read or write outside the directory.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from ..errors import StateError
from .errors import ApiError

__all__ = ["slot_action"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")


async def slot_action(served: Any, slot_id: int, action: str, filename: str | None) -> dict[str, Any]:
    """Run ``action`` on sequence ``slot_id`` of ``served``'s engine (on the engine thread)."""
    engine = served.engine
    if not 0 <= slot_id < engine.n_seq:
        raise ApiError(400, f"slot {slot_id} does not exist: this model has slots 0..{engine.n_seq - 1}",
                       "invalid_request_error", "id_slot")
    started = time.perf_counter()
    if action == "erase":
        n = await _on_engine(engine, lambda: engine.erase_slot(slot_id))
        return {"id_slot": slot_id, "n_erased": n}
    if action not in ("save", "restore"):
        raise ApiError(400, f"action={action!r}: use save, restore or erase", "invalid_request_error", "action")
    directory = served.settings.slot_save_path
    if directory is None:
        raise ApiError(501, "slot save/restore is off: start the server with --slot-save-path DIR", "not_supported")
    if not filename or not _NAME.fullmatch(filename) or ".." in filename:
        raise ApiError(400, f"filename {filename!r}: give a bare file name (letters, digits, '_', '-', '.'), "
                       "no directories", "invalid_request_error", "filename")
    path = directory / filename
    if action == "save":
        directory.mkdir(parents=True, exist_ok=True)
        n = await _on_engine(engine, lambda: engine.save_slot(slot_id, path))
        return {"id_slot": slot_id, "filename": filename, "n_saved": n, "n_written": path.stat().st_size,
                "timings": {"save_ms": (time.perf_counter() - started) * 1e3}}
    if not path.is_file():
        raise ApiError(404, f"no saved slot named {filename!r}", "not_found", "filename")
    n = await _on_engine(engine, lambda: engine.restore_slot(slot_id, path))
    return {"id_slot": slot_id, "filename": filename, "n_restored": n, "n_read": path.stat().st_size,
            "timings": {"restore_ms": (time.perf_counter() - started) * 1e3}}


async def _on_engine(engine: Any, fn: Any) -> Any:
    try:
        return await asyncio.wrap_future(engine.call(fn))
    except (ValueError, StateError) as exc:  # a busy slot, a file from another model or context size
        raise ApiError(400, str(exc), "invalid_request_error") from exc
