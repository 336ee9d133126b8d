"""``Answer``, ``Brake`` and stop strings: what a generation returns and what ends it (slm_inference's
``SlmAnswer`` / ``SlmBrake``)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Answer", "AnswerStatus", "Brake", "BrakeFn", "StopStrings", "token_limit"]


class Brake(enum.Enum):
    """What a brake tells the generation loop after each new piece of text.

    - ``CONTINUE``: emit the piece (and anything delayed before it) and go on.
    - ``DELAY``: hold the piece back and go on; a later CONTINUE releases it, STOP / NEXT drop it.
    - ``FINISH``: emit the piece, then end this answer as complete.
    - ``NEXT``: drop the piece and end this answer as complete (in parallel generation the other
      forks go on).
    - ``STOP``: drop the piece and end every answer now, as partial.
    """

    CONTINUE = "continue"
    DELAY = "delay"
    FINISH = "finish"
    NEXT = "next"
    STOP = "stop"


# (answer so far, last piece, tokens generated, fork id) -> Brake
BrakeFn = Callable[[str, str, int, int], Brake]


class AnswerStatus(enum.Enum):
    COMPLETE = "complete"      # end of generation, a stop string, or a FINISH / NEXT brake
    PARTIAL = "partial"        # the token limit or a STOP brake cut it short
    INCOMPLETE = "incomplete"  # the context filled up or the grammar could not go on


@dataclass
class Answer:
    """One generated answer. ``finish_reason`` is OpenAI's: "stop", "length" or "context"."""

    text: str
    status: AnswerStatus
    fork_id: int = 0
    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "stop"
    thinking: str | None = None
    stop_string: str | None = None

    @property
    def complete(self) -> bool:
        return self.status is AnswerStatus.COMPLETE

    @property
    def partial(self) -> bool:
        return self.status is AnswerStatus.PARTIAL

    @property
    def incomplete(self) -> bool:
        return self.status is AnswerStatus.INCOMPLETE

    def __str__(self) -> str:
        return self.text


def token_limit(n: int) -> BrakeFn:
    """A brake that finishes the answer after ``n`` tokens (the loop's ``max_tokens`` does the same)."""
    if n < 1:
        raise ValueError(f"token_limit: n={n} must be >= 1")

    def brake(_answer: str, _piece: str, n_tokens: int, _fork: int) -> Brake:
        return Brake.FINISH if n_tokens >= n else Brake.CONTINUE

    return brake


class StopStrings:
    """Finds stop strings in streamed text, across piece boundaries, without leaking any of them.

    ``feed(piece)`` returns the text that is safe to emit: text that could still be the start of a
    stop string is held back until the next piece settles it. ``matched`` is the stop string found.
    """

    def __init__(self, stops: Iterable[str]):
        self.stops = tuple(s for s in stops if s)
        if any(not isinstance(s, str) for s in self.stops):
            raise ValueError("stop strings must be str")
        self._held = ""
        self.matched: str | None = None

    def feed(self, piece: str) -> str:
        if self.matched is not None:
            return ""
        if not self.stops:
            return piece
        text = self._held + piece
        first = None
        for s in self.stops:
            i = text.find(s)
            if i >= 0 and (first is None or i < first[0]):
                first = (i, s)
        if first is not None:
            self.matched = first[1]
            self._held = ""
            return text[:first[0]]
        keep = 0
        for s in self.stops:  # the longest tail of text that starts some stop string
            for k in range(min(len(s) - 1, len(text)), keep, -1):
                if s.startswith(text[-k:]):
                    keep = k
                    break
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """Text held back at the end of generation (it turned out not to be a stop string)."""
        held, self._held = self._held, ""
        return "" if self.matched is not None else held
