"""Server options beyond one model: several models on one engine thread, the config file, CORS, slot files,
prompt-lookup speculation, and llama-server's command-line flags. Real uvicorn, real clients."""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

import httpx
import openai
import pytest
from server_util import running_server

PROMPT = "The capital of France is"
# A prompt the model continues by repeating itself: prompt lookup finds drafts in it.
REPEAT = "Count: " + ", ".join(str(i) for i in range(1, 40)) + ". Again: 1, 2, 3, 4, 5,"


@pytest.fixture(scope="module")
def two_models(smollm_path):
    """SmolLM2 twice: "chat" generates, "vectors" serves embeddings only (kind="embed")."""
    with running_server(model=smollm_path, alias="chat", n_ctx=2048, parallel=2, threads=2,
                        models=[{"path": smollm_path, "alias": "vectors", "kind": "embed"},
                                {"path": smollm_path, "alias": "chat2", "n_ctx": 1024, "parallel": 1}],
                        cors_origins=["http://app.example"]) as (base, app):
        yield base, app


def test_requests_go_to_the_model_they_name(two_models, smollm):
    base, app = two_models
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["chat", "vectors", "chat2"]
    a = client.completions.create(model="chat", prompt=PROMPT, max_tokens=12, temperature=0)
    b = client.completions.create(model="chat2", prompt=PROMPT, max_tokens=12, temperature=0)
    unnamed = httpx.post(base + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 12, "temperature": 0})
    assert a.choices[0].text == b.choices[0].text == unnamed.json()["choices"][0]["text"]
    assert a.model == "chat" and b.model == "chat2" and unnamed.json()["model"] == "chat"
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4o", prompt=PROMPT, max_tokens=2)
    assert "'chat', 'vectors', 'chat2'" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="vectors", messages=[{"role": "user", "content": "hi"}])
    assert "embeddings only" in e.value.message
    state = app.state.ikllama
    assert state.models["vectors"].engine is None and state.models["vectors"].ctx is None  # no generation context
    assert httpx.get(base + "/props", params={"model": "chat2"}).json()["n_ctx"] == 1024
    assert len(httpx.get(base + "/slots", params={"model": "chat2"}).json()) == 1


def test_embedding_model_and_one_engine_thread(two_models):
    base, app = two_models
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
    out = client.embeddings.create(model="vectors", input=["a cat", "a kitten"])
    assert out.model == "vectors" and len(out.data) == 2 and len(out.data[0].embedding) == 576
    state = app.state.ikllama
    # Every engine, and the embedding model's native calls, run on the one runner thread (one OpenMP team).
    assert {m.engine._runner for m in state.models.values() if m.engine} == {state.runner}
    name = state.runner.call(lambda: threading.current_thread().name).result(30)
    assert name == "ikllama-engine"
    assert [t.name for t in threading.enumerate()].count("ikllama-engine") == 1


def test_two_models_decode_concurrently_and_match_alone(two_models):
    base, _ = two_models

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0) as c:
            outs = await asyncio.gather(*(c.completions.create(model=m, prompt=PROMPT, max_tokens=16, temperature=0)
                                          for m in ("chat", "chat2", "chat")))
        return [o.choices[0].text for o in outs]

    alone = httpx.post(base + "/v1/completions", json={"model": "chat2", "prompt": PROMPT, "max_tokens": 16,
                                                       "temperature": 0}).json()["choices"][0]["text"]
    for text in asyncio.run(run()):
        assert text[:12] == alone[:12]


def test_cors_only_for_allowed_origins(two_models, smollm_path):
    base, _ = two_models
    pre = httpx.options(base + "/v1/chat/completions", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://app.example"
    other = httpx.get(base + "/v1/models", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    with running_server(model=smollm_path, n_ctx=256, parallel=1) as (plain, _):
        r = httpx.get(plain + "/v1/models", headers={"Origin": "http://app.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # off by default


def test_prompt_lookup_gives_the_same_text_in_fewer_steps(two_models):
    base, app = two_models
    engine = app.state.ikllama.models["chat"].engine
    body = {"model": "chat", "prompt": REPEAT, "max_tokens": 48, "temperature": 0, "ignore_eos": True}
    steps = engine.steps
    plain = httpx.post(base + "/v1/completions", json=body, timeout=120).json()
    plain_steps, steps = engine.steps - steps, engine.steps
    fast = httpx.post(base + "/v1/completions", json={**body, "speculative": True}, timeout=120).json()
    fast_steps = engine.steps - steps
    assert fast["choices"][0]["text"] == plain["choices"][0]["text"]
    assert fast["usage"]["completion_tokens"] == 48
    t = fast["timings"]
    assert t["draft_n"] > 0 and 0 < t["draft_n_accepted"] <= t["draft_n"]
    assert fast_steps < plain_steps - 10, (fast_steps, plain_steps)
    assert "draft_n" not in plain["timings"]
    streamed = httpx.post(base + "/v1/completions", json={**body, "stream": True, "speculative": {
        "n_max": 4, "ngram_min": 1, "ngram_max": 3}}, timeout=120).text
    text = "".join(json.loads(line[6:])["choices"][0]["text"] for line in streamed.splitlines()
                   if line.startswith("data: {"))
    assert text == plain["choices"][0]["text"]
    bad = httpx.post(base + "/v1/completions", json={**body, "speculative": {"n_max": 2, "n_min": 5}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "speculative"


def test_slot_save_restore_erase(smollm_path, tmp_path):
    with running_server(model=smollm_path, n_ctx=1024, parallel=2, threads=2, slot_save_path=tmp_path,
                        idle_cache=True) as (base, app):
        long_prompt = "A shared preamble about rivers and mountains. " * 12
        body = {"prompt": long_prompt, "max_tokens": 4, "temperature": 0}
        first = httpx.post(base + "/v1/completions", json=body).json()
        slot = next(s for s in httpx.get(base + "/slots").json() if s["n_cached"])
        saved = httpx.post(base + f"/slots/{slot['id']}", params={"action": "save"}, json={"filename": "pre.bin"})
        assert saved.status_code == 200 and saved.json()["n_saved"] == slot["n_cached"]
        assert (tmp_path / "pre.bin").stat().st_size == saved.json()["n_written"]
        for s in range(2):
            assert httpx.post(base + f"/slots/{s}", params={"action": "erase"}).status_code == 200
        assert all(s["n_cached"] == 0 for s in httpx.get(base + "/slots").json())
        restored = httpx.post(base + "/slots/1", params={"action": "restore"}, json={"filename": "pre.bin"}).json()
        assert restored["n_restored"] == slot["n_cached"]
        again = httpx.post(base + "/v1/completions", json=body).json()
        assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["prompt_tokens"] - 1
        assert again["choices"][0]["text"] == first["choices"][0]["text"]
        for name in ("../x.bin", "/etc/passwd", ".hidden", ""):
            r = httpx.post(base + "/slots/0", params={"action": "save"}, json={"filename": name})
            assert r.status_code == 400, name
        assert httpx.post(base + "/slots/0", params={"action": "restore"},
                          json={"filename": "missing.bin"}).status_code == 404
        assert httpx.post(base + "/slots/7", params={"action": "erase"}).status_code == 400
        assert httpx.post(base + "/slots/0", params={"action": "fly"}).status_code == 400
    with running_server(model=smollm_path, n_ctx=256, parallel=1) as (base, _):
        r = httpx.post(base + "/slots/0", params={"action": "save"}, json={"filename": "a.bin"})
        assert r.status_code == 501 and "--slot-save-path" in r.json()["error"]["message"]


def test_settings_precedence_flags_env_file(tmp_path, monkeypatch):
    from ikllama.server.settings import ServerSettings

    toml = tmp_path / "server.toml"
    toml.write_text('port = 9001\nn_ctx = 2048\nparallel = 3\n'
                    'models = [{path = "emb.gguf", alias = "emb", kind = "embed"}]\n')
    monkeypatch.setenv("IKLLAMA_SERVER_N_CTX", "4000")
    s = ServerSettings.load(toml, parallel=5)
    assert (s.port, s.n_ctx, s.parallel) == (9001, 4000, 5)  # file < environment < flags
    assert [m.id for m in s.served()] == ["emb"] and s.served()[0].kind == "embed"
    js = tmp_path / "server.json"
    js.write_text(json.dumps({"model": "a.gguf", "models": [{"path": "b.gguf"}], "cors_origins": ["*"]}))
    s = ServerSettings.load(js)
    assert [m.id for m in s.served()] == ["a.gguf", "b.gguf"] and s.cors_origins == ["*"]
    with pytest.raises(ValueError, match="both called 'a.gguf'"):
        ServerSettings(model="a.gguf", models=[{"path": "dir/a.gguf"}])
    with pytest.raises(ValueError, match="does not exist"):
        ServerSettings.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("paralel = 3\n")
    with pytest.raises(ValueError, match="paralel"):
        ServerSettings.load(bad)


def test_llama_server_flags_map_onto_settings(tmp_path):
    from ikllama.cli import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "a.gguf", "-m", "b.gguf", "-a", "first", "-a", "second", "-n", "-1",
                              "--embeddings", "--metrics", "--slot-save-path", str(tmp_path), "-c", "8192",
                              "-np", "8", "--cors-origin", "http://x", "--prompt-lookup", "6", "-fa", "off"])
    s = serve._settings(args)
    assert [(m.id, str(m.path)) for m in s.served()] == [("first", "a.gguf"), ("second", "b.gguf")]
    assert (s.n_ctx, s.parallel, s.max_tokens_default, s.prompt_lookup, s.flash_attn) == (8192, 8, None, 6, False)
    assert s.slot_save_path == tmp_path and s.cors_origins == ["http://x"]
    with pytest.raises(ValueError, match="aliases"):
        serve._settings(parser.parse_args(["serve", "-m", "a.gguf", "-a", "x", "-a", "y"]))


def test_forced_tool_call_streams_in_fragments(two_models):
    client = openai.OpenAI(base_url=two_models[0] + "/v1", api_key="none", max_retries=0)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    kw = dict(model="chat", messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=tools,
              tool_choice="required", max_tokens=96, temperature=0)
    whole = client.chat.completions.create(**kw)
    assert whole.choices[0].finish_reason == "tool_calls"
    chunks = list(client.chat.completions.create(**kw, stream=True))
    frags = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert frags[0].id.startswith("call_") and frags[0].function.name == "get_weather"
    assert all(f.index == 0 for f in frags) and all(f.id is None for f in frags[1:])
    assert sum(bool(f.function.arguments) for f in frags) > 1  # the arguments arrive piece by piece
    arguments = "".join(f.function.arguments or "" for f in frags)
    assert json.loads(arguments) == json.loads(whole.choices[0].message.tool_calls[0].function.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_sigterm_lets_running_requests_finish_then_exits(smollm_path):
    """`ikllama serve` as a real process: SIGTERM mid-stream stops new connections, the stream ends normally."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "ikllama", "serve", str(smollm_path), "--port", str(port),
                             "-c", "1024", "-np", "2", "-t", "2", "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        finishes, n_chunks = [], 0
        with httpx.stream("POST", base + "/v1/completions", timeout=60, json={
                "prompt": PROMPT, "max_tokens": 120, "ignore_eos": True, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    n_chunks += 1
                    if n_chunks == 3:
                        proc.send_signal(signal.SIGTERM)
                    finishes += [c["finish_reason"] for c in json.loads(line[6:])["choices"] if c["finish_reason"]]
        assert finishes == ["length"] and n_chunks >= 110
        # uvicorn re-raises the signal once it has drained, so the exit reads as SIGTERM (a clean stop for
        # service managers); what matters is that it came after the stream ended, and came by itself.
        assert proc.wait(60) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.TransportError):
            httpx.get(base + "/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_batched_prompts_answer_each_prompt(two_models, smollm):
    client = openai.OpenAI(base_url=two_models[0] + "/v1", api_key="none", max_retries=0)
    prompts = [PROMPT, "Once upon a time", "def fibonacci(n):"]
    alone = [client.completions.create(model="chat", prompt=p, max_tokens=10, temperature=0) for p in prompts]
    out = client.completions.create(model="chat", prompt=prompts, max_tokens=10, temperature=0, n=2, echo=True)
    assert [c.index for c in out.choices] == list(range(6))
    assert out.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)
    assert out.usage.completion_tokens == 60
    echoes = prompts
    for i, choice in enumerate(out.choices):
        answer = alone[i // 2].choices[0].text
        assert choice.text.startswith(echoes[i // 2]) and choice.text[len(echoes[i // 2]):][:8] == answer[:8]
    chunks = list(client.completions.create(model="chat", prompt=prompts[:2], max_tokens=10, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    texts = ["", ""]
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] += choice.text
    assert [t[:8] for t in texts] == [a.choices[0].text[:8] for a in alone[:2]]
    assert chunks[-1].usage.completion_tokens == 20
    as_tokens = client.completions.create(model="chat", prompt=[smollm.tokenize(p, True, True) for p in prompts[:2]],
                                          max_tokens=10, temperature=0)
    assert [c.text[:8] for c in as_tokens.choices] == [a.choices[0].text[:8] for a in alone[:2]]
    r = httpx.post(two_models[0] + "/v1/completions", json={"model": "chat", "prompt": [], "max_tokens": 2})
    assert r.status_code == 400


def test_disconnects_while_queued_and_during_prefill_free_exactly_their_request(smollm_path):
    with running_server(model=smollm_path, n_ctx=8192, parallel=2, threads=2, prefill_budget=8,
                        max_queue=4) as (base, app):
        engine = app.state.ikllama.default.engine

        async def run() -> tuple[str, list[dict]]:
            async with httpx.AsyncClient(base_url=base, timeout=120) as c:
                async with c.stream("POST", "/v1/completions", json={"prompt": PROMPT, "max_tokens": 1200,
                                                                     "temperature": 0, "ignore_eos": True,
                                                                     "stream": True}) as r:
                    lines = r.aiter_lines()
                    await anext(lines)
                    # Prefill: a long prompt at 8 tokens per step is still being read when its client leaves.
                    with pytest.raises(httpx.ReadTimeout):
                        await c.post("/v1/completions", json={"prompt": "history " * 3000, "max_tokens": 4},
                                     timeout=0.6)
                    # Queued: the second sequence is held by a long answer, so this one waits, and leaves.
                    deadline = time.monotonic() + 30  # the server notices the disconnect (polled) ...
                    while engine.n_active > 1 and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    holder = asyncio.create_task(c.post("/v1/completions", json={
                        "prompt": "Once upon a time", "max_tokens": 600, "ignore_eos": True}))
                    while engine.n_active < 2 and time.monotonic() < deadline:  # ... and the holder is in
                        await asyncio.sleep(0.05)
                    with pytest.raises(httpx.ReadTimeout):
                        await c.post("/v1/completions", json={"prompt": "A queued request", "max_tokens": 4},
                                     timeout=0.6)
                    # It leaves the queue when the server notices the disconnect (polled), while both
                    # sequences are still busy: it was cancelled, not admitted.
                    deadline = time.monotonic() + 5
                    while engine.n_waiting and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    waiting_after = engine.n_waiting
                    assert engine.n_active == 2
                    text = ""
                    async for line in lines:
                        if line.startswith("data: {"):
                            text += json.loads(line[6:])["choices"][0]["text"]
                    await holder
            return text, waiting_after, [s for s in httpx.get(base + "/slots").json()]

        text, waiting_after, slots = asyncio.run(run())
        assert waiting_after == 0  # the queued request left the queue when its client went
        assert len(text) > 300  # the first stream ran to its end, undisturbed
        assert engine.n_active == 0 and all(s["request_id"] is None for s in slots)
        # The long prompt never finished its prefill: no sequence holds all of its 3000 tokens.
        assert all(s["n_cached"] < 3000 for s in slots)
