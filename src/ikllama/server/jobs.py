"""What the engine is asked to do (:class:`GenRequest`) and what it reports back (events).

A request crosses threads exactly twice: the HTTP layer hands a :class:`GenRequest` to the engine's
inbox, and the engine calls ``request.sink(event)`` from its own thread for every event. The sink must
be cheap and thread-safe (the client bridge posts to an asyncio queue with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sampling import SamplerConfig

__all__ = ["GenRequest", "TokenEvent", "FinishEvent", "DoneEvent", "ErrorEvent", "Event"]

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One generated token of choice ``index``: the text it made safe to emit (may be empty), and its
    log-probability entry when logprobs were asked for: ``(token_text, logprob, [(alt_text, logprob)…])``."""

    index: int
    text: str
    token: int
    logprob: tuple[str, float, list[tuple[str, float]]] | None = None


@dataclass(frozen=True, slots=True)
class FinishEvent:
    """Choice ``index`` ended: ``reason`` is "stop" (end of generation or a stop string) or "length"."""

    index: int
    reason: str
    n_tokens: int


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """Every choice ended; the request's totals."""

    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    queue_seconds: float
    prompt_seconds: float
    generation_seconds: float
    drafted: int = 0
    accepted: int = 0


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The request failed; ``status`` is the HTTP status the client should see."""

    status: int
    message: str
    code: str | None = None


Event = TokenEvent | FinishEvent | DoneEvent | ErrorEvent


@dataclass(eq=False)
class GenRequest:
    """One generation request: prompt tokens, sampling, limits and where events go.

    ``max_tokens`` None means until the context is full. ``logprobs`` None turns log-probabilities
    off; ``k >= 0`` reports the chosen token's and ``k`` alternatives. ``cancel()`` may be called from
    any thread; the engine frees the request's sequences before its next step.
    """

    prompt: list[int]
    sampling: SamplerConfig
    sink: Callable[[Event], None]
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: int | None = None
    ignore_eos: bool = False
    speculative: Any = None  # a PromptLookupSession, when the request asked for speculation
    id: int = field(default_factory=lambda: next(_ids))
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def cancel(self) -> None:
        self.cancelled = True
