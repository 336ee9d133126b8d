"""Incremental detokenization that never emits a broken UTF-8 sequence."""

from __future__ import annotations

import codecs

__all__ = ["Utf8Decoder"]


class Utf8Decoder:
    """Feed token bytes, get text; bytes of a character split across tokens wait for the rest."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._dec.decode(data)

    def flush(self) -> str:
        """Whatever is left; an incomplete character at the very end becomes U+FFFD."""
        return self._dec.decode(b"", final=True)
