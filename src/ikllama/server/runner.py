"""The one thread that runs every engine of a server: one step of each busy engine per turn.

A server with several models (a chat model and an embedding model, say) runs all their native calls
on this single thread instead of one thread per model. ggml's CPU backend uses OpenMP, and libgomp
keeps a thread team per calling thread; once the process holds more OpenMP threads than cores,
libgomp stops spinning at barriers and sleeps instead, which made every decode about three times
slower for the rest of the process's life (measured with a second team on 2 cores: 5.5 → 16 ms
per token). One runner thread keeps one team, whatever the number of models.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["EngineRunner"]

log = logging.getLogger("ikllama.server")


class EngineRunner:
    """Polls its engines in turn; sleeps on a shared bell when none has work. Engines may join at any time."""

    def __init__(self) -> None:
        self._bell = threading.Event()
        self._lock = threading.Lock()
        self._engines: list[Any] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._calls: queue.SimpleQueue = queue.SimpleQueue()

    def start(self) -> EngineRunner:
        self._thread = threading.Thread(target=self._run, name="ikllama-engine", daemon=True)
        self._thread.start()
        return self

    def add(self, engine: Any) -> None:
        """Run ``engine`` on this thread from its next turn on (it rings this runner's bell from now on)."""
        engine._bell = self._bell
        engine._runner = self
        with self._lock:
            self._engines.append(engine)
        self._bell.set()

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the runner thread between two steps; its result (or exception) comes in the Future."""
        future: Future = Future()
        if self._stopping or not self.alive:
            future.set_exception(RuntimeError("the server is shutting down"))
            return future
        self._calls.put((fn, future))
        self._bell.set()
        return future

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            self._bell.clear()  # cleared before polling: work posted during a poll rings it again
            self._run_calls()
            with self._lock:
                engines = list(self._engines)
            for engine in engines:
                if not engine.poll():  # stopped (shut down, or failed): it leaves the runner
                    with self._lock:
                        self._engines.remove(engine)
                    engine._stopped.set()
            with self._lock:
                if not self._engines and self._stopping:
                    self._run_calls(refuse=True)
                    return
                busy = any(e.busy for e in self._engines)
            if not busy:
                self._bell.wait(0.5)

    def _run_calls(self, refuse: bool = False) -> None:
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if refuse:
                future.set_exception(RuntimeError("the server is shutting down"))
            elif future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # the caller gets it; the runner goes on
                    future.set_exception(exc)

    def stop(self, timeout: float | None = None) -> None:
        """End the thread once every engine has stopped (call after each engine's ``shutdown``)."""
        self._stopping = True
        self._bell.set()
        if self._thread is not None:
            self._thread.join(timeout)
