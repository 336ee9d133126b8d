"""The asyncio side of the engine: submit a request, iterate its events, cancel it when the client goes.

Admission is bounded: with ``parallel`` sequences busy and ``max_queue`` requests already waiting, a
new request is refused at once with 429 and ``Retry-After`` instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from .engine import Engine
from .errors import ApiError
from .jobs import DoneEvent, ErrorEvent, Event, GenRequest

__all__ = ["EngineClient", "Submission"]


class Submission:
    """One submitted request: ``async for event in submission`` until its DoneEvent (or an ApiError)."""

    def __init__(self, client: EngineClient, request: GenRequest, events: asyncio.Queue):
        self._client = client
        self.request = request
        self._events = events
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            while True:
                event = await self._events.get()
                if isinstance(event, ErrorEvent):
                    raise ApiError(event.status, event.message, event.code)
                yield event
                if isinstance(event, DoneEvent):
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Cancel the request if it has not finished (idempotent); frees its sequences between steps."""
        if not self._closed:
            self._closed = True
            self._client._inflight -= 1
            self._client.engine.cancel(self.request)


class Mailbox:
    """Carries events from the engine thread to one event loop, a batch per engine turn.

    Each ``call_soon_threadsafe`` is a self-pipe write that wakes the loop, and the woken loop takes the
    GIL: the engine thread then waits for it at its next native call (a sampler, say) while OpenMP's
    other thread spins. So the engine only collects events while it steps and flushes them at the end
    of each turn (``Engine.poll``), after the step's last native call before the next ``llama_decode``: the loop's work
    then overlaps the decode instead of delaying it, and eight decoders cost one wake-up, not eight.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue, Event, GenRequest]] = []

    def put(self, events: asyncio.Queue, event: Event, request: GenRequest) -> None:
        """Queue ``event`` for delivery at the next :meth:`flush` (at once on the loop's own thread)."""
        if threading.get_ident() == self._loop_thread:
            events.put_nowait(event)
            return
        with self._lock:
            self._items.append((events, event, request))

    def flush(self) -> None:
        """Hand everything collected to the loop with one wake-up (engine thread, between steps)."""
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, items)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            for _, _, request in items:
                request.cancel()

    @staticmethod
    def _deliver(items: list[tuple[asyncio.Queue, Event, GenRequest]]) -> None:
        for events, event, _ in items:
            events.put_nowait(event)


class EngineClient:
    """Submits requests from the event loop thread; the engine calls back from its own thread."""

    def __init__(self, engine: Engine, max_queue: int):
        self.engine = engine
        self.capacity = engine.n_seq + max_queue
        self._inflight = 0
        self._mailbox: Mailbox | None = None

    def _mailbox_for(self, loop: asyncio.AbstractEventLoop) -> Mailbox:
        if self._mailbox is None or self._mailbox._loop is not loop:
            self._mailbox = Mailbox(loop)
            self.engine.add_flusher(self._mailbox.flush)
        return self._mailbox

    def submit(self, **fields: Any) -> Submission:
        if self._inflight >= self.capacity:
            raise ApiError(429, f"the server is busy: {self._inflight} requests are running or waiting. "
                           "Retry later.", "rate_limit_exceeded", retry_after=1)
        mailbox = self._mailbox_for(asyncio.get_running_loop())
        events: asyncio.Queue = asyncio.Queue()

        def sink(event: Event) -> None:  # engine thread (or the loop's, for a refusal)
            mailbox.put(events, event, request)

        request = GenRequest(sink=sink, **fields)
        self._inflight += 1
        self.engine.submit(request)
        return Submission(self, request, events)
