"""``LLM``: OpenAI-shaped completions, chat, JSON output, tool calls and embeddings on SmolLM2."""

from __future__ import annotations

import json
import math
import time

import pytest

import ikllama
from ikllama import LLM, SimpleInference
from ikllama.batch import common_prefix

PROMPT = "The capital of France is"

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer"},
        "city": {"type": "string", "maxLength": 24},
        "likes_tea": {"type": "boolean"},
    },
    "required": ["name", "age", "city", "likes_tea"],
    "additionalProperties": False,
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 20},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 16}},
                       "required": ["zone"]},
    },
}


def matches(value, schema) -> bool:
    """A hand check of the JSON-schema subset used here (object, string, integer, boolean, enum)."""
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        if not isinstance(value, dict) or any(k not in value for k in schema.get("required", ())):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        return all(matches(value[k], props[k]) for k in value if k in props)
    if kind == "string":
        return (isinstance(value, str) and schema.get("minLength", 0) <= len(value)
                <= schema.get("maxLength", math.inf))
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    raise AssertionError(f"schema kind {kind!r} not handled by this check")


@pytest.fixture(scope="module")
def llm(smollm_path):
    with LLM(smollm_path, n_ctx=1024) as model:
        yield model


def greedy(llm, prompt=PROMPT, **kw):
    return llm.create_completion(prompt, temperature=0, **kw)


# -- create_completion --------------------------------------------------------------------------------
def test_completion_shape_and_usage(llm):
    before = int(time.time())
    out = greedy(llm, max_tokens=8)
    assert out["id"].startswith("cmpl-") and out["object"] == "text_completion"
    assert before <= out["created"] <= time.time() + 1
    assert out["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    [choice] = out["choices"]
    assert choice["index"] == 0 and isinstance(choice["text"], str) and choice["text"]
    assert choice["finish_reason"] == "length"
    n_prompt = len(llm.tokenize(PROMPT))
    assert out["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 8, "total_tokens": n_prompt + 8}
    assert greedy(llm, max_tokens=8)["id"] != out["id"]


def test_temperature_zero_is_greedy(llm):
    text = greedy(llm, max_tokens=16)["choices"][0]["text"]
    # A separate context, fed the same prompt from scratch, decoding greedily.
    with llm.model.context().with_n_ctx(256).build() as ctx, SimpleInference(ctx) as inf:
        inf.prefill(PROMPT)
        assert inf.generate(16).text == text
    assert text.startswith(" Paris")


def test_stream_joins_to_the_whole_text(llm):
    whole = greedy(llm, max_tokens=12)
    chunks = list(greedy(llm, max_tokens=12, stream=True))
    assert len(chunks) > 2
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stop_strings_cut_the_text(llm):
    full = greedy(llm, max_tokens=16)["choices"][0]["text"]
    assert "." in full
    out = greedy(llm, max_tokens=16, stop=["."])
    assert out["choices"][0]["text"] == full[:full.index(".")]
    assert out["choices"][0]["finish_reason"] == "stop"
    out = greedy(llm, max_tokens=16, stop="Paris")
    assert out["choices"][0]["text"] == " " and out["choices"][0]["finish_reason"] == "stop"


def test_echo_and_max_tokens(llm):
    plain = greedy(llm, max_tokens=10)["choices"][0]["text"]
    echoed = greedy(llm, max_tokens=10, echo=True)["choices"][0]["text"]
    assert echoed == PROMPT + plain
    streamed = "".join(c["choices"][0]["text"] for c in greedy(llm, max_tokens=10, echo=True, stream=True))
    assert streamed == echoed
    from_tokens = greedy(llm, llm.tokenize(PROMPT), max_tokens=10, echo=True)["choices"][0]["text"]
    assert from_tokens == echoed  # a token prompt is echoed as its text
    short = greedy(llm, max_tokens=3)
    assert short["usage"]["completion_tokens"] == 3 and short["choices"][0]["finish_reason"] == "length"
    assert plain.startswith(short["choices"][0]["text"]) and len(short["choices"][0]["text"]) < len(plain)


def test_seed_reproducible_and_seeds_differ(llm):
    def sample(seed):
        return llm.create_completion("Once upon a time", max_tokens=12, temperature=1.2, seed=seed,
                                     top_k=0, top_p=1.0, min_p=0.0)["choices"][0]["text"]

    first = sample(7)
    assert sample(7) == first
    assert len({first, sample(8), sample(9), sample(10)}) >= 3


def test_logit_bias_bans_a_token(llm):
    text = greedy(llm, max_tokens=4)["choices"][0]["text"]
    paris = llm.tokenize(text, add_bos=False)[0]
    assert llm.detokenize([paris]) == b" Paris"
    for ban in (-math.inf, -100.0):
        out = greedy(llm, max_tokens=4, logit_bias={paris: ban})["choices"][0]["text"]
        assert out != text and llm.tokenize(out, add_bos=False)[0] != paris
    # Keys may be strings, as in JSON requests.
    out = greedy(llm, max_tokens=4, logit_bias={str(paris): -math.inf})["choices"][0]["text"]
    assert llm.tokenize(out, add_bos=False)[0] != paris


def test_bad_arguments(llm):
    with pytest.raises(TypeError):
        llm.create_completion(PROMPT, temprature=0)
    with pytest.raises(TypeError):
        llm.create_chat_completion([{"role": "user", "content": "hi"}], n_predict=4)
    with pytest.raises(ValueError, match="top_p"):
        llm.create_completion(PROMPT, top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        llm.create_completion(PROMPT, temperature=math.nan)
    with pytest.raises(ValueError, match="mirostat"):
        llm.create_completion(PROMPT, mirostat_mode=3)
    with pytest.raises(ValueError, match="response_format"):
        llm.create_completion(PROMPT, response_format={"type": "yaml"})
    with pytest.raises(ValueError, match="empty"):
        llm.create_completion([])
    # The context still works after the refusals.
    assert greedy(llm, max_tokens=2)["choices"][0]["text"].startswith(" Paris")


def test_prefix_reuse_decodes_only_new_tokens(llm):
    first = ("Here is a list of the planets of the solar system in order from the sun: Mercury, Venus, "
             "Earth, Mars, Jupiter, Saturn,")
    llm.create_completion(first, max_tokens=1, temperature=0)
    second = first + " Uranus and Neptune. The largest of them is"
    have, want = llm.ctx.tokens(0), llm.tokenize(second)
    expected = len(want) - common_prefix(have, want)
    assert 1 < expected <= 12 < len(want) // 2
    llm.ctx.reset_timings()
    out = llm.create_completion(second, max_tokens=1, temperature=0)
    assert llm.ctx.timings().n_p_eval == expected
    assert out["usage"]["prompt_tokens"] == len(want)
    # An unrelated prompt shares only the BOS (if any): everything else is decoded.
    other = "Bananas are yellow because"
    want = llm.tokenize(other)
    expected = len(want) - common_prefix(llm.ctx.tokens(0), want)
    llm.ctx.reset_timings()
    llm.create_completion(other, max_tokens=1, temperature=0)
    assert llm.ctx.timings().n_p_eval == expected >= len(want) - 1


# -- create_chat_completion ---------------------------------------------------------------------------
CHAT = [{"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"}]


def test_chat_shape(llm):
    out = llm.create_chat_completion(CHAT, max_tokens=24, temperature=0)
    assert out["id"].startswith("chatcmpl-") and out["object"] == "chat.completion"
    [choice] = out["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] in ("stop", "length")
    message = choice["message"]
    assert message["role"] == "assistant" and "Paris" in message["content"]
    assert "<|im_end|>" not in message["content"] and "tool_calls" not in message
    prompt = llm.formatter.format(CHAT, add_generation_prompt=True)
    n_prompt = len(llm.tokenize(prompt, special=True))
    assert out["usage"]["prompt_tokens"] == n_prompt
    assert out["usage"]["total_tokens"] == n_prompt + out["usage"]["completion_tokens"]
    # Message objects work as well as dicts.
    same = llm.create_chat_completion([ikllama.Message.from_openai(m) for m in CHAT], max_tokens=24, temperature=0)
    assert same["choices"][0]["message"]["content"] == message["content"]


def test_chat_stream(llm):
    whole = llm.create_chat_completion(CHAT, max_tokens=24, temperature=0)
    chunks = list(llm.create_chat_completion(CHAT, max_tokens=24, temperature=0, stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:])
    assert content == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_json_schema_output_always_valid(llm):
    messages = [{"role": "user", "content": "Describe a person as JSON with name, age, city and likes_tea."}]
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    for seed in range(20):
        # Every value is bounded (strings by maxLength, integers to 20 digits, whitespace to 21
        # characters per gap), so the object always fits in max_tokens; the usual answer is ~35 tokens.
        out = llm.create_chat_completion(messages, response_format=fmt, max_tokens=512, temperature=1.0,
                                         seed=seed)
        choice = out["choices"][0]
        assert choice["finish_reason"] == "stop", (seed, choice)
        obj = json.loads(choice["message"]["content"])
        assert matches(obj, PERSON), (seed, obj)


def test_json_object_output_always_parses(llm):
    messages = [{"role": "user", "content": "Reply with a JSON object with two keys: colour and number."}]
    for seed in range(20):
        out = llm.create_chat_completion(messages, response_format={"type": "json_object"}, max_tokens=128,
                                         temperature=0.3, seed=seed)
        choice = out["choices"][0]
        assert choice["finish_reason"] == "stop", (seed, choice)
        assert isinstance(json.loads(choice["message"]["content"]), dict), (seed, choice)
    # json_object may carry a schema, too.
    fmt = {"type": "json_object", "schema": PERSON}
    out = llm.create_chat_completion(messages, response_format=fmt, max_tokens=512, temperature=1.0, seed=1)
    assert out["choices"][0]["finish_reason"] == "stop"
    assert matches(json.loads(out["choices"][0]["message"]["content"]), PERSON)


# -- tools ----------------------------------------------------------------------------------------------
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris?"}]


def call_of(out):
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] is None
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    return call["function"]["name"], json.loads(call["function"]["arguments"])


def test_tool_choice_required_and_named(llm):
    for seed in range(3):
        out = llm.create_chat_completion(ASK_WEATHER, tools=[WEATHER, TIME], tool_choice="required",
                                         max_tokens=96, temperature=0.8, seed=seed)
        name, args = call_of(out)
        tool = {"get_weather": WEATHER, "get_time": TIME}[name]
        assert matches(args, tool["function"]["parameters"]), args
    named = {"type": "function", "function": {"name": "get_time"}}
    out = llm.create_chat_completion(ASK_WEATHER, tools=[WEATHER, TIME], tool_choice=named, max_tokens=96,
                                     temperature=0)
    name, args = call_of(out)
    assert name == "get_time" and matches(args, TIME["function"]["parameters"])
    out = llm.create_chat_completion(ASK_WEATHER, tools=[WEATHER, TIME], max_tokens=96, temperature=0,
                                     tool_choice={"type": "function", "function": {"name": "get_weather"}})
    name, args = call_of(out)
    assert name == "get_weather" and matches(args, WEATHER["function"]["parameters"])


def test_tool_choice_required_streams_the_call(llm):
    chunks = list(llm.create_chat_completion(ASK_WEATHER, tools=[WEATHER], tool_choice="required", max_tokens=96,
                                             temperature=0, stream=True))
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    [call] = [c for ch in chunks for c in ch["choices"][0]["delta"].get("tool_calls", ())]
    assert call["index"] == 0 and call["function"]["name"] == "get_weather"
    assert matches(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])


def test_tool_choice_none_gives_content(llm):
    out = llm.create_chat_completion(ASK_WEATHER, tools=[WEATHER], tool_choice="none", max_tokens=16,
                                     temperature=0)
    message = out["choices"][0]["message"]
    assert isinstance(message["content"], str) and message["content"]
    assert "tool_calls" not in message and out["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("tools, choice, match", [
    ([{"type": "function"}], None, r"tools\[0\]"),
    ([{"type": "retrieval", "function": {"name": "x"}}], None, r"tools\[0\]"),
    ([{"type": "function", "function": {"name": ""}}], None, "name"),
    ([{"type": "function", "function": {"name": "f", "parameters": "nope"}}], None, "parameters"),
    (None, "required", "needs tools"),
    ([WEATHER], {"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ([WEATHER], "always", "tool_choice"),
    ([WEATHER], 5, "tool_choice"),
])
def test_invalid_tools(llm, tools, choice, match):
    with pytest.raises(ValueError, match=match):
        llm.create_chat_completion(ASK_WEATHER, tools=tools, tool_choice=choice, max_tokens=4)


def test_forced_call_refuses_a_response_format(llm):
    with pytest.raises(ValueError, match="forced tool call"):
        llm.create_chat_completion(ASK_WEATHER, tools=[WEATHER], tool_choice="required", max_tokens=4,
                                   response_format={"type": "json_object"})


# -- embeddings ---------------------------------------------------------------------------------------
def test_embeddings(llm):
    texts = ["The cat sat on the mat.", "A cat was sitting on the rug.", "Quarterly tax filings are due in April."]
    out = llm.create_embedding(texts)
    assert out["object"] == "list" and out["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == llm.model.n_embd for d in out["data"])
    n = sum(len(llm.tokenize(t)) for t in texts)
    assert out["usage"] == {"prompt_tokens": n, "total_tokens": n}
    vectors = llm.embed(texts)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4 for v in vectors)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert cos(vectors[0], vectors[1]) > cos(vectors[1], vectors[2])
    [single] = llm.embed(texts[0])
    assert max(abs(x - y) for x, y in zip(single, vectors[0])) < 1e-4
    # Embedding uses its own context: completions go on as before.
    assert greedy(llm, max_tokens=2)["choices"][0]["text"].startswith(" Paris")


# -- tokens and lifetime --------------------------------------------------------------------------------
def test_tokenize_round_trip(llm):
    text = "Héllo wörld, 12345 — ok? <|im_start|>"
    tokens = llm.tokenize(text, add_bos=False)
    assert llm.detokenize(tokens) == text.encode()
    assert llm.tokenize(text, special=True) != tokens  # the special token's text becomes its id
    assert llm.tokenize("<|im_start|>", add_bos=False, special=True) == [llm.model.tokenize("<|im_start|>", False,
                                                                                             True)[0]]
    with_bos = llm.tokenize(text)
    assert with_bos == ([llm.model.token_bos] if llm.model.add_bos else []) + tokens


def test_close_and_with(smollm_path):
    llm = LLM(smollm_path, n_ctx=256)
    assert greedy(llm, max_tokens=2)["choices"][0]["text"].startswith(" Paris")
    llm.embed("warm the embedder up")
    llm.close()
    llm.close()  # idempotent
    assert llm.ctx.closed and llm.model.closed
    with pytest.raises(ikllama.ClosedError):
        llm.create_completion(PROMPT, max_tokens=2)
    with pytest.raises(ikllama.ClosedError):
        llm.create_chat_completion(CHAT, max_tokens=2)
    with pytest.raises(ikllama.ClosedError):
        llm.tokenize("hello")
    with pytest.raises(ikllama.ClosedError):
        llm.embed("hello")
    with LLM(smollm_path, n_ctx=256) as inner:
        assert inner.tokenize("hi")
    assert inner.ctx.closed and inner.model.closed
    with pytest.raises(ikllama.ClosedError):
        inner.create_completion(PROMPT, max_tokens=2)
