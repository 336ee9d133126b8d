"""The asyncio side of the engine: submit a request, iterate its events, cancel it when the client goes.

Admission is bounded: with ``parallel`` sequences busy and ``max_queue`` requests already waiting, a
new request is refused at once with 429 and ``Retry-After`` instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
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


class EngineClient:
    """Submits requests from the event loop thread; the engine calls back from its own thread."""

    def __init__(self, engine: Engine, max_queue: int):
        self.engine = engine
        self.capacity = engine.n_seq + max_queue
        self._inflight = 0

    def submit(self, **fields: Any) -> Submission:
        if self._inflight >= self.capacity:
            raise ApiError(429, f"the server is busy: {self._inflight} requests are running or waiting. "
                           "Retry later.", "rate_limit_exceeded", retry_after=1)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def sink(event: Event) -> None:  # engine thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                request.cancel()

        request = GenRequest(sink=sink, **fields)
        self._inflight += 1
        self.engine.submit(request)
        return Submission(self, request, events)
