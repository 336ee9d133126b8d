"""OpenAI tool calls for ``LLM.create_chat_completion``: a grammar that forces a call, and a parser
that finds calls in what the model wrote (``<tool_call>{...}</tool_call>`` as Hermes / Qwen /
SmolLM templates teach, or a bare JSON object with ``name`` and ``arguments``)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .json_grammar import json_schema_to_gbnf

__all__ = ["forced_call_grammar", "parse_tool_calls", "check_tools", "chosen_tools"]

_TAGGED = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def check_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict]:
    """Validate OpenAI ``tools``; ValueError names the bad entry."""
    out = []
    for i, tool in enumerate(tools or ()):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(fn, Mapping):
            raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValueError(f"tools[{i}].function.name must be a non-empty string")
        params = fn.get("parameters", {"type": "object"})
        if not isinstance(params, Mapping):
            raise ValueError(f"tools[{i}].function.parameters must be a JSON schema object")
        out.append(dict(tool))
    return out


def chosen_tools(tools: list[dict], tool_choice: Any) -> tuple[list[dict], bool]:
    """(tools the model may call, whether it must call one) for OpenAI's ``tool_choice``."""
    if tool_choice in (None, "auto"):
        return tools, False
    if tool_choice == "none":
        return [], False
    if tool_choice == "required":
        if not tools:
            raise ValueError("tool_choice='required' needs tools")
        return tools, True
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        picked = [t for t in tools if t["function"]["name"] == name]
        if not picked:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
        return picked, True
    raise ValueError(f"tool_choice={tool_choice!r}: use 'auto', 'none', 'required' or "
                     "{'type': 'function', 'function': {'name': ...}}")


def forced_call_grammar(tools: list[dict]) -> str:
    """GBNF for one JSON call ``{"name": ..., "arguments": {...}}`` to one of ``tools``."""
    options = []
    for tool in tools:
        fn = tool["function"]
        options.append({"type": "object",
                        "properties": {"name": {"const": fn["name"]},
                                       "arguments": fn.get("parameters") or {"type": "object"}},
                        "required": ["name", "arguments"]})
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return json_schema_to_gbnf(schema)


def _call(obj: Any, names: set[str]) -> dict | None:
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": obj["name"], "arguments": json.dumps(args, ensure_ascii=False)}}


def parse_tool_calls(text: str, tools: list[dict]) -> tuple[str, list[dict]]:
    """(remaining content, OpenAI tool_calls) found in ``text``; calls to unknown tools are left as text."""
    names = {t["function"]["name"] for t in tools}
    if not names:
        return text, []
    calls = []
    for m in _TAGGED.finditer(text):
        try:
            call = _call(json.loads(m.group(1)), names)
        except json.JSONDecodeError:
            call = None
        if call is not None:
            calls.append(call)
    if calls:
        return _TAGGED.sub("", text).strip(), calls
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            call = _call(json.loads(stripped), names)
        except json.JSONDecodeError:
            call = None
        if call is not None:
            return "", [call]
    return text, []
