"""Streamed tool calls: whatever way the text is cut into pieces, the fragments assemble to the calls the
non-streaming parser finds, and text that is not a call streams as content."""

from __future__ import annotations

import json
import random

import pytest

from ikllama._tool_calls import parse_tool_calls
from ikllama.server.toolstream import ToolCallStream

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
         for n in ("get_weather", "get_time")]


def run(text: str, cuts: list[int]) -> tuple[str, list[dict], int]:
    stream = ToolCallStream(TOOLS)
    deltas = []
    for a, b in zip([0, *cuts], [*cuts, len(text)]):
        deltas += stream.feed(text[a:b])
    deltas += stream.finish()
    content = "".join(d.get("content", "") for d in deltas)
    calls: dict[int, dict] = {}
    n_arg_pieces = 0
    for d in deltas:
        for frag in d.get("tool_calls", ()):
            call = calls.setdefault(frag["index"], {"name": None, "arguments": "", "id": None})
            if "id" in frag:
                assert call["id"] is None, "a call's header is sent once"
                call["id"], call["name"] = frag["id"], frag["function"]["name"]
            else:
                assert call["id"] is not None, "arguments come after the header"
            call["arguments"] += frag["function"].get("arguments", "")
            n_arg_pieces += bool(frag["function"].get("arguments"))
    return content, [calls[i] for i in sorted(calls)], n_arg_pieces


CASES = [
    'Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}</tool_call>',
    '{"name": "get_time", "arguments": {"zone": "UTC", "fmt": "a \\"quoted\\" }{ text"}}',
    '<tool_call>{"arguments": {"city": "Oslo"}, "name": "get_weather"}</tool_call>',
    '<tool_call>{"name": "get_weather", "arguments": {"city": "A"}}</tool_call>\n'
    '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
    'Not a call: <tool box> and <tool_call>{"name": "launch", "arguments": {}}</tool_call> done',
    'Plain answer with a { brace } and <b>tags</b>.',
]


@pytest.mark.parametrize("text", CASES)
def test_any_cutting_gives_the_parser_s_calls(text):
    rest, expected = parse_tool_calls(text, TOOLS)
    rng = random.Random(7)
    for trial in range(40):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 30))))
        if trial == 0:
            cuts = list(range(1, len(text)))  # one character at a time
        content, calls, _ = run(text, cuts)
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == \
            [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in expected], cuts
        if not expected:
            assert content == text
        else:
            assert content.strip() == rest.strip() or content.split() == rest.split()


def test_arguments_stream_piece_by_piece_before_the_call_ends():
    text = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    stream = ToolCallStream(TOOLS)
    first = stream.feed(text[:40])
    assert first[0]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    assert first[1]["tool_calls"][0]["function"]["arguments"] == text[37:40]
    _, calls, pieces = run(text, list(range(1, len(text))))
    assert pieces > 10 and json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "celsius"}


def test_a_call_whose_header_was_sent_stays_a_call():
    """Once the name went out, malformed arguments are passed on as written (as OpenAI's may be)."""
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": broken}}</tool_call>'
    content, calls, _ = run(text, [20, 45])
    assert content == "" and calls[0]["name"] == "get_weather" and calls[0]["arguments"] == '{"city": broken}'
