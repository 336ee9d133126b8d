"""Tool calls streamed as they are written: ``delta.tool_calls`` fragments the way OpenAI sends them.

A call appears as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen and SmolLM
templates) or, for a forced call (``tool_choice`` required or named), as the bare JSON object. As soon as
the name is complete and names one of the request's tools, the first fragment goes out (index, id,
type, name, empty arguments); then the arguments' JSON text follows piece by piece while the model
writes it. Plain text streams as content, except for a tail that might be the start of a tag, held
back until it is not. A call that turns out malformed before anything of it was sent is sent as text,
as the non-streaming parser (:func:`ikllama._tool_calls.parse_tool_calls`) would leave it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

__all__ = ["ToolCallStream"]

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_NAME = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGS = re.compile(r'\s*,\s*"(?:arguments|parameters)"\s*:\s*')


class ToolCallStream:
    """Turns one choice's text pieces into content and tool-call deltas (``feed``, then ``finish``)."""

    def __init__(self, tools: list[dict]):
        self.names = {t["function"]["name"] for t in tools}
        self.n_calls = 0
        self._text = ""  # held back: not yet known to be content
        self._raw = ""  # the JSON of the call being written
        self._mode = "start"  # start (only whitespace so far), text, call
        self._tagged = False
        self._header = False  # the current call's first fragment was sent
        self._sent = 0  # characters of the current call's arguments already sent
        self._args_at = 0  # where the current call's text goes on after its name

    def feed(self, text: str) -> list[dict[str, Any]]:
        """Deltas (``{"content": ...}`` or ``{"tool_calls": [...]}``) that ``text`` makes safe to send."""
        out: list[dict[str, Any]] = []
        if self._mode == "call":
            self._raw += text
        else:
            self._text += text
        while True:
            if self._mode == "start":
                stripped = self._text.lstrip()
                if not stripped:
                    return out
                if stripped.startswith("{"):  # a bare JSON call (what a forced-call grammar writes)
                    self._begin_call(stripped, tagged=False)
                    continue
                self._mode = "text"
            if self._mode == "text":
                at = self._text.find(_OPEN)
                if at < 0:
                    keep = _partial_suffix(self._text, _OPEN)
                    if len(self._text) > keep:
                        out.append({"content": self._text[:len(self._text) - keep]})
                        self._text = self._text[len(self._text) - keep:]
                    return out
                if at:
                    out.append({"content": self._text[:at]})
                self._begin_call(self._text[at + len(_OPEN):], tagged=True)
                continue
            rest = self._advance_call(out)
            if rest is None:
                return out
            self._mode, self._text = "text", rest

    def finish(self) -> list[dict[str, Any]]:
        """What is still held back, once the choice has ended."""
        out: list[dict[str, Any]] = []
        if self._mode == "call" and not self._header:
            self._text = (_OPEN if self._tagged else "") + self._raw
        elif self._mode == "call":
            self._text = ""
        if self._text.strip():
            out.append({"content": self._text})
        self._text = self._raw = ""
        return out

    # -- one call -----------------------------------------------------------------------------------
    def _begin_call(self, raw: str, tagged: bool) -> None:
        self._mode, self._raw, self._text = "call", raw, ""
        self._tagged, self._header, self._sent = tagged, False, 0

    def _advance_call(self, out: list[dict[str, Any]]) -> str | None:
        """Send what the call's text allows; the text after the call once it is complete, else None."""
        raw = self._raw
        end = raw.find(_CLOSE) if self._tagged else _object_end(raw)
        body = raw if end < 0 else raw[:end]
        if not self._header:
            m = _NAME.match(body)
            if m and json.loads(f'"{m.group(1)}"') in self.names:
                out.append(self._fragment({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                                           "function": {"name": json.loads(f'"{m.group(1)}"'), "arguments": ""}}))
                self._header = True
                self._args_at = m.end()
        if self._header:
            a = _ARGS.match(body, self._args_at)
            if a:
                value_end = _value_end(body, a.end())
                stop = value_end if value_end >= 0 else len(body)
                piece = body[a.end() + self._sent:stop]
                if piece:
                    out.append(self._fragment({"function": {"arguments": piece}}))
                    self._sent += len(piece)
        if end < 0:
            return None
        rest = raw[end + len(_CLOSE):] if self._tagged else raw[end:]
        if not self._header:  # name not first, unknown, or the JSON is broken: parse the whole call
            call = _parse_call(body, self.names)
            if call is None:
                self._mode = "text"
                out.append({"content": (_OPEN + body + _CLOSE) if self._tagged else body})
                return rest
            out.append(self._fragment({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                                       "function": {"name": call[0], "arguments": call[1]}}))
            self._header = True
        self.n_calls += 1
        self._raw = ""
        return rest

    def _fragment(self, part: dict[str, Any]) -> dict[str, Any]:
        return {"tool_calls": [{"index": self.n_calls, **part}]}


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def _value_end(text: str, start: int) -> int:
    """Index just past the JSON value that starts at ``start`` (objects and arrays), or -1 if unfinished."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                if depth == 0:
                    return i + 1
        elif ch == '"':
            in_string = True
        elif depth == 0 and ch in ",}]":  # the end of a number, true, false or null
            return i
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _object_end(text: str) -> int:
    """Index just past the top-level JSON object at the start of ``text`` (after whitespace), or -1."""
    start = len(text) - len(text.lstrip())
    return _value_end(text, start) if text[start:start + 1] == "{" else -1


def _parse_call(body: str, names: set[str]) -> tuple[str, str] | None:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    return obj["name"], json.dumps(obj.get("arguments", obj.get("parameters", {})), ensure_ascii=False)
