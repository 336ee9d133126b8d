"""The OpenAI-compatible server, started for real (uvicorn on 127.0.0.1) and driven by `openai` and httpx."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time

import httpx
import numpy as np
import openai
import pytest

from server_util import running_server

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def server(smollm_path):
    with running_server(model=smollm_path, n_ctx=4096, parallel=4, threads=2, max_queue=8) as (base, app):
        yield base, app


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server[0] + "/v1", api_key="none", max_retries=0) as c:
        yield c


def greedy_reference(smollm, prompt: str, n: int) -> str:
    from ikllama.inference import SimpleInference
    from ikllama.sampling import SamplerConfig

    with smollm.context().with_n_ctx(1024).with_threads(2).build() as ctx, SimpleInference(ctx) as si:
        si.prefill(smollm.tokenize(prompt, True, True))
        return si.generate(n, 0, sampling=SamplerConfig.greedy()).text


def test_completion_matches_library_greedy(client, smollm):
    out = client.completions.create(model="x", prompt=PROMPT, max_tokens=24, temperature=0)
    assert out.choices[0].text == greedy_reference(smollm, PROMPT, 24)
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 24
    assert out.usage.prompt_tokens == len(smollm.tokenize(PROMPT, True, True))


def test_concurrent_requests_each_match_their_solo_answer(server, smollm):
    prompts = [PROMPT, "Once upon a time", "def fibonacci(n):", "The three primary colors are"]
    expected = [greedy_reference(smollm, p, 20) for p in prompts]

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(base_url=server[0] + "/v1", api_key="none", max_retries=0) as c:
            outs = await asyncio.gather(*(c.completions.create(model="x", prompt=p, max_tokens=20, temperature=0)
                                          for p in prompts))
        return [o.choices[0].text for o in outs]

    got = asyncio.run(run())
    # Batched decoding may round differently from a lone sequence: the first tokens must agree.
    for g, e in zip(got, expected):
        assert g[:12] == e[:12], (g, e)


def test_chat_stream_equals_non_stream_and_usage_only_when_asked(client):
    messages = [{"role": "user", "content": "Name a fruit."}]
    whole = client.chat.completions.create(model="x", messages=messages, max_tokens=20, temperature=0)
    chunks = list(client.chat.completions.create(model="x", messages=messages, max_tokens=20, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.usage is not None for c in chunks].count(True) == 1 and chunks[-1].usage is not None
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    plain = list(client.chat.completions.create(model="x", messages=messages, max_tokens=5, stream=True))
    assert all(c.usage is None for c in plain)


def test_stop_string_is_not_sent_and_finish_is_stop(client, smollm):
    full = greedy_reference(smollm, PROMPT, 24)
    stop = full[8:11]
    out = client.completions.create(model="x", prompt=PROMPT, max_tokens=24, temperature=0, stop=[stop])
    assert out.choices[0].text == full[:full.index(stop)]
    assert out.choices[0].finish_reason == "stop"


def test_n_choices_and_prefix_reuse(client):
    long_prompt = "Here is a long shared system prompt about geography and history. " * 20
    first = client.completions.create(model="x", prompt=long_prompt, max_tokens=8, temperature=0, n=3)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert len({c.text for c in first.choices}) == 1  # greedy: all equal
    assert first.usage.completion_tokens == 24
    again = client.completions.create(model="x", prompt=long_prompt, max_tokens=8, temperature=0)
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert cached >= again.usage.prompt_tokens - 1
    assert again.choices[0].text == first.choices[0].text


def test_seeded_sampling_is_reproducible(client):
    kw = dict(model="x", prompt=PROMPT, max_tokens=16, temperature=1.0, seed=1234)
    a, b = client.completions.create(**kw), client.completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text


def test_logprobs_chat_and_completion(client):
    out = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                         temperature=0, logprobs=True, top_logprobs=3)
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert entry.token == entry.top_logprobs[0].token  # greedy picks the likeliest
    comp = client.completions.create(model="x", prompt=PROMPT, max_tokens=4, temperature=0, logprobs=2)
    lp = comp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == 4 and "".join(lp.tokens) == comp.choices[0].text


def test_json_response_format(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    out = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Which city is the capital of France? Answer in JSON."}],
        max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    assert isinstance(json.loads(out.choices[0].message.content)["city"], str)


def test_embeddings_float_and_base64(client):
    a = client.embeddings.create(model="x", input=["hello world", "goodbye"])
    assert [d.index for d in a.data] == [0, 1]
    v = np.array(a.data[0].embedding)
    assert abs(np.linalg.norm(v) - 1) < 1e-4
    raw = httpx.post(str(client.base_url) + "embeddings",
                     json={"input": "hello world", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, v, atol=1e-6)


def test_errors_are_openai_shaped_with_right_status(server, client):
    base = server[0]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="x", prompt=PROMPT, max_tokens=4, temperature=-1)
    assert e.value.status_code == 400 and "temperature" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="x", prompt="word " * 5000, max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="x", prompt=PROMPT, n=9)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    r = httpx.post(base + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(base + "/v1/completions", content=b"x" * (17 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                        "response_format": {"type": "json_schema"}})
    assert r.status_code == 400
    assert client.completions.create(model="x", prompt=PROMPT, max_tokens=2).usage.completion_tokens == 2


def test_native_routes(server, smollm):
    base = server[0]
    toks = httpx.post(base + "/tokenize", json={"content": PROMPT}).json()["tokens"]
    assert toks == smollm.tokenize(PROMPT, False, True)
    assert httpx.post(base + "/detokenize", json={"tokens": toks}).json()["content"] == PROMPT
    assert httpx.post(base + "/detokenize", json={"tokens": [10 ** 9]}).status_code == 400
    prompt = httpx.post(base + "/apply-template", json={"messages": [{"role": "user", "content": "zebra"}]}).json()
    assert "zebra" in prompt["prompt"]
    native = httpx.post(base + "/completion", json={"prompt": PROMPT, "n_predict": 6, "temperature": 0}).json()
    assert native["content"] == greedy_reference(smollm, PROMPT, 6) and native["stop_type"] == "limit"
    props = httpx.get(base + "/props").json()
    assert props["total_slots"] == 4 and props["n_ctx"] == 4096
    assert props["host_prompt_cache"]["limit_bytes"] == 2048 << 20  # --cache-ram's default, in bytes
    assert len(httpx.get(base + "/slots").json()) == 4
    metrics = httpx.get(base + "/metrics").text
    for name in ("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total", "llamacpp:kv_cache_usage_ratio",
                 "ikllama:time_to_first_token_seconds_bucket", "ikllama:inter_token_latency_seconds_bucket",
                 "ikllama:host_prompt_cache_bytes", "ikllama:host_prompt_cache_hits"):
        assert name in metrics
    models = httpx.get(base + "/v1/models").json()
    assert models["data"][0]["id"] == smollm_path_name(smollm)


def smollm_path_name(model) -> str:
    return model.path.name


def test_cancelled_stream_frees_its_sequence_and_others_finish(server, client, smollm):
    base, app = server
    engine = app.state.ikllama.default.engine

    async def run() -> str:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            other = asyncio.create_task(c.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 40,
                                                                        "temperature": 0, "ignore_eos": True}))
            async with c.stream("POST", "/v1/completions", json={"prompt": "Tell a story", "max_tokens": 2000,
                                                                 "ignore_eos": True, "stream": True}) as r:
                n = 0
                async for line in r.aiter_lines():
                    n += line.startswith("data: ")
                    if n >= 3:
                        break
            return (await other).json()["choices"][0]["text"]

    text = asyncio.run(run())
    assert text[:12] == greedy_reference(smollm, PROMPT, 40)[:12]
    deadline = time.monotonic() + 5
    while engine.n_active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.n_active == 0 and engine.n_waiting == 0


def test_non_streaming_disconnect_cancels_the_request(server):
    base, app = server
    engine = app.state.ikllama.default.engine
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(base + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 3000, "ignore_eos": True},
                   timeout=1.0)
    deadline = time.monotonic() + 5
    while engine.n_active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.n_active == 0


def test_long_prompt_is_spread_over_steps(smollm_path):
    """A long prompt arriving while a stream decodes must not stall it: the stream keeps getting tokens."""
    with running_server(model=smollm_path, n_ctx=4096, parallel=2, threads=2, prefill_budget=64) as (base, app):
        engine = app.state.ikllama.default.engine

        async def run() -> tuple[int, int]:
            async with httpx.AsyncClient(base_url=base, timeout=120) as c:
                async with c.stream("POST", "/v1/completions", json={"prompt": PROMPT, "max_tokens": 400,
                                                                     "ignore_eos": True, "stream": True}) as r:
                    lines = r.aiter_lines()
                    while not (await anext(lines)).startswith("data: "):
                        pass
                    long = asyncio.create_task(c.post("/v1/completions", json={
                        "prompt": "history " * 1500, "max_tokens": 1, "temperature": 0}))
                    during = 0
                    while not long.done():
                        line = await anext(lines)
                        during += line.startswith("data: ")
                    steps = engine.steps
                    return during, steps

        during, _ = asyncio.run(run())
        # 1500 prompt tokens at <= 64 per step: the stream advanced on (nearly) every one of those steps.
        assert during >= 1500 // 64 - 2


def test_queue_bound_answers_429_with_retry_after(smollm_path):
    with running_server(model=smollm_path, n_ctx=1024, parallel=1, threads=2, max_queue=0) as (base, _):
        async def run() -> httpx.Response:
            async with httpx.AsyncClient(base_url=base, timeout=60) as c:
                async with c.stream("POST", "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2000,
                                                                     "ignore_eos": True, "stream": True}) as r:
                    # Keep the line iterator referenced: a discarded async generator is finalized by the
                    # garbage collector, which closes the response, and the server then cancels the request.
                    lines = r.aiter_lines()
                    await anext(lines)
                    return await c.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})

        refused = asyncio.run(run())
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "rate_limit_error"


def test_api_key_and_loading_state(smollm_path):
    with running_server(model=smollm_path, n_ctx=512, parallel=1, api_key="sekrit", wait_ready=False,
                        load=False) as (base, app):
        assert httpx.get(base + "/health").json()["status"] == "loading"
        assert httpx.get(base + "/ready").status_code == 503
        r = httpx.post(base + "/v1/completions", json={"prompt": "x"}, headers={"authorization": "Bearer sekrit"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert httpx.post(base + "/v1/completions", json={"prompt": "x"}).status_code == 401
        app.state.ikllama.load()
        assert httpx.get(base + "/ready").status_code == 200
        c = openai.OpenAI(base_url=base + "/v1", api_key="sekrit", max_retries=0)
        assert c.completions.create(model="x", prompt="Hi", max_tokens=2).usage.completion_tokens == 2
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()


def test_cli_exits_1_when_the_model_cannot_load(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    proc = subprocess.run([sys.executable, "-m", "ikllama", "serve", "-m", str(bad), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "could not load the model" in proc.stderr
