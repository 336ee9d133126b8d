"""``ikllama.compat``: llama-cpp-python's ``Llama`` surface on SmolLM2, checked against ikllama's own
``LLM`` (greedy equality), llama-cpp-python's dict shapes and its documented semantics."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ikllama
from ikllama.compat import (Llama, LlamaGrammar, LlamaPromptLookupDecoding, LlamaRAMCache, LogitsProcessorList,
                            StoppingCriteriaList)

PROMPT = "The capital of France is"
SRC = str(Path(ikllama.__file__).resolve().parent.parent)  # src/ in a checkout, site-packages when installed


@pytest.fixture(scope="module")
def llama(smollm_path):
    with Llama(model_path=str(smollm_path), n_ctx=512, verbose=False) as m:
        yield m


@pytest.fixture(scope="module")
def reference(smollm_path):
    with ikllama.LLM(smollm_path, n_ctx=512) as m:
        yield m


def greedy(llama, prompt=PROMPT, **kw):
    kw.setdefault("max_tokens", 16)
    return llama.create_completion(prompt, temperature=0, **kw)


# -- completion ---------------------------------------------------------------------------------------
def test_completion_shape_and_greedy_equals_llm(llama, reference):
    out = greedy(llama)
    assert set(out) == {"id", "object", "created", "model", "choices", "usage"}
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    assert out["model"] == llama.model_path and isinstance(out["created"], int)
    choice = out["choices"][0]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"} and choice["index"] == 0
    ref = reference.create_completion(PROMPT, max_tokens=16, temperature=0)
    assert choice["text"] == ref["choices"][0]["text"] and choice["text"].strip()
    n_prompt = len(llama.tokenize(PROMPT.encode()))
    assert out["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 16, "total_tokens": n_prompt + 16}
    assert choice["finish_reason"] == "length"


def test_call_is_create_completion_and_token_prompt(llama):
    tokens = llama.tokenize(PROMPT.encode(), special=True)
    assert llama(PROMPT, max_tokens=8, temperature=0)["choices"][0]["text"] == \
        llama.create_completion(tokens, max_tokens=8, temperature=0)["choices"][0]["text"]


def test_stream_concatenation_equals_whole(llama):
    whole = greedy(llama)["choices"][0]["text"]
    chunks = list(greedy(llama, stream=True))
    assert all(c["object"] == "text_completion" and "usage" not in c for c in chunks)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert len({c["id"] for c in chunks}) == 1
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole


def test_stop_string_cuts_and_reports_stop(llama):
    whole = greedy(llama, max_tokens=24)["choices"][0]["text"]
    stop = whole.strip()[3:6]
    out = greedy(llama, max_tokens=24, stop=[stop])
    text = out["choices"][0]["text"]
    assert out["choices"][0]["finish_reason"] == "stop"
    assert text == whole[:whole.index(stop)] and stop not in text
    streamed = "".join(c["choices"][0]["text"] for c in greedy(llama, max_tokens=24, stop=stop, stream=True))
    assert streamed == text
    slow = greedy(llama, max_tokens=24, stop=[stop], logprobs=0)  # the per-token path cuts the same way
    assert slow["choices"][0]["text"] == text and slow["choices"][0]["finish_reason"] == "stop"


def test_echo_and_suffix(llama):
    plain = greedy(llama, max_tokens=6)["choices"][0]["text"]
    out = greedy(llama, max_tokens=6, echo=True, suffix=" END")["choices"][0]["text"]
    assert out == PROMPT + plain + " END"


def test_logprobs_path_matches_fast_path(llama):
    fast = greedy(llama)["choices"][0]["text"]
    out = greedy(llama, logprobs=3)
    choice = out["choices"][0]
    assert choice["text"] == fast
    lp = choice["logprobs"]
    assert set(lp) == {"tokens", "text_offset", "token_logprobs", "top_logprobs"}
    assert len(lp["tokens"]) == 16 == out["usage"]["completion_tokens"]
    assert "".join(lp["tokens"]) == fast
    assert lp["text_offset"][0] == 0 and lp["text_offset"][1] == len(lp["tokens"][0])
    for logprob, top in zip(lp["token_logprobs"], lp["top_logprobs"]):
        assert logprob <= 0 and 3 <= len(top) <= 4
        assert max(top.values()) == pytest.approx(logprob, abs=1e-5)  # greedy: the chosen one is the best
    with pytest.raises(ValueError, match="logprobs"):
        greedy(llama, logprobs=-1)


def test_seed_reproducible_and_chained(smollm_path):
    def two(seed_kw):
        with Llama(model_path=str(smollm_path), n_ctx=256, verbose=False, **seed_kw) as m:
            return [m(PROMPT, max_tokens=12, temperature=1.0)["choices"][0]["text"] for _ in range(2)]

    a, b = two({"seed": 42}), two({"seed": 42})
    assert a == b  # same seed: same chain of answers
    assert a[0] != a[1]  # no seed per call: the next seed derives from the last
    with Llama(model_path=str(smollm_path), n_ctx=256, verbose=False) as m:
        x = m(PROMPT, max_tokens=12, temperature=1.0, seed=7)["choices"][0]["text"]
        y = m(PROMPT, max_tokens=12, temperature=1.0, seed=7)["choices"][0]["text"]
    assert x == y


def test_prompt_longer_than_context_raises(llama):
    with pytest.raises(ValueError, match="exceed context window"):
        llama.create_completion("word " * 600, max_tokens=4)


# -- grammar ------------------------------------------------------------------------------------------
def test_grammar_from_string_constrains(llama):
    g = LlamaGrammar.from_string('root ::= "yes" | "no"')
    out = llama("Is the sky blue? Answer:", grammar=g, max_tokens=8, temperature=0.8, seed=1)
    assert out["choices"][0]["text"] in ("yes", "no")
    with pytest.raises(ValueError, match="grammar"):
        LlamaGrammar.from_string("root ::= undefined_rule")


def test_grammar_from_json_schema_refs_and_nullable(llama, tmp_path):
    schema = {"$defs": {"city": {"type": "string", "maxLength": 12}},
              "type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "home": {"$ref": "#/$defs/city"},
                                               "age": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
              "required": ["name", "home", "age"]}
    g = LlamaGrammar.from_json_schema(json.dumps(schema))
    out = llama("A person as JSON:", grammar=g, max_tokens=80, temperature=0)
    doc = json.loads(out["choices"][0]["text"])
    assert set(doc) == {"name", "home", "age"} and (doc["age"] is None or isinstance(doc["age"], int))
    f = tmp_path / "g.gbnf"
    f.write_text('root ::= "a" "b"*\n')
    assert LlamaGrammar.from_file(f)._grammar.startswith("root")
    with pytest.raises(ValueError, match="JSON"):
        LlamaGrammar.from_json_schema("{not json")


# -- tokens -------------------------------------------------------------------------------------------
def test_tokenize_detokenize_like_llama_cpp_python(llama):
    ids = llama.tokenize(b"Hello world")
    assert llama.detokenize(ids) == b"Hello world"
    assert llama.tokenize("Hello world") == ids
    assert llama.tokenize(b"<|im_start|>", add_bos=False, special=True) == [llama.tokenize(
        b"<|im_start|>", add_bos=False, special=True)[0]]
    assert len(llama.tokenize(b"<|im_start|>", add_bos=False, special=False)) > 1
    bos = llama.token_bos()
    # the leading space a vocabulary puts after BOS is dropped, as llama-cpp-python does
    assert llama.detokenize([bos, *llama.tokenize(b" Hello", add_bos=False)]) == b"Hello"
    assert llama.detokenize(llama.tokenize(b" Hello", add_bos=False)) == b" Hello"
    assert (llama.token_bos(), llama.token_eos()) == (llama._model.token_bos, llama._model.token_eos)
    assert llama.n_ctx() == 512 and llama.n_vocab() == 49152
    with pytest.raises(TypeError):
        llama.tokenize(123)


def test_vocab_only(smollm_path):
    with Llama(model_path=str(smollm_path), vocab_only=True, verbose=False) as m:
        assert m.tokenize(b"Hello world") == [19556, 905]
        with pytest.raises(RuntimeError, match="vocab_only"):
            m("Hi", max_tokens=2)


def test_deprecated_keywords_accepted(smollm_path):
    with Llama(model_path=str(smollm_path), n_ctx=128, n_parts=1, f16_kv=True, logits_all=True,
               last_n_tokens_size=32, lora_base=None, numa=False, verbose=False, n_threads=1) as m:
        assert m.n_ctx() == 128
    with pytest.raises(ValueError, match="lora_path"):
        Llama(model_path=str(smollm_path), lora_path="adapter.gguf")


# -- chat ---------------------------------------------------------------------------------------------
MESSAGES = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a fruit."}]


def test_chat_shape_stream_and_reference(llama, reference):
    out = llama.create_chat_completion(MESSAGES, max_tokens=12, temperature=0)
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    msg = out["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"]
    assert set(out["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    ref = reference.create_chat_completion(MESSAGES, max_tokens=12, temperature=0)
    assert msg["content"] == ref["choices"][0]["message"]["content"]
    chunks = list(llama.create_chat_completion(MESSAGES, max_tokens=12, temperature=0, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == msg["content"]


def test_chat_json_response_format_and_logprobs(llama):
    out = llama.create_chat_completion([{"role": "user", "content": "Give a JSON object with a name."}],
                                       response_format={"type": "json_object"}, max_tokens=60, temperature=0)
    assert isinstance(json.loads(out["choices"][0]["message"]["content"]), dict)
    lp = llama.create_chat_completion(MESSAGES, max_tokens=5, temperature=0, logprobs=True,
                                      top_logprobs=2)["choices"][0]["logprobs"]
    assert len(lp["content"]) == 5 and all(len(t["top_logprobs"]) >= 2 for t in lp["content"])


def test_chat_tools_forced_call(llama):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}}}
    out = llama.create_chat_completion([{"role": "user", "content": "Weather in Paris?"}], tools=[tool],
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                       max_tokens=60, temperature=0)
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and "city" in json.loads(call["function"]["arguments"])
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_format_by_name_and_formatters(smollm_path):
    from ikllama.compat.llama_chat_format import (Jinja2ChatFormatter, format_chatml, get_chat_format,
                                                  hf_tokenizer_config_to_chat_formatter)

    rendered = format_chatml(MESSAGES)
    assert rendered.prompt.endswith("<|im_start|>assistant\n") and rendered.stop == "<|im_end|>"
    with pytest.raises(ValueError, match="chatml"):
        get_chat_format("no-such-format")
    tpl = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[a]{% endif %}"
    r = Jinja2ChatFormatter(tpl, eos_token="</s>", bos_token="<s>")(messages=MESSAGES)
    assert r.prompt == "[system]You are brief.[user]Name a fruit.[a]" and "</s>" in r.stop
    hf = hf_tokenizer_config_to_chat_formatter({"chat_template": tpl, "eos_token": {"content": "</s>"},
                                                "bos_token": "<s>"})
    assert hf(messages=MESSAGES).prompt == r.prompt
    with Llama(model_path=str(smollm_path), n_ctx=256, chat_format="chatml", verbose=False) as m:
        out = m.create_chat_completion(MESSAGES, max_tokens=8, temperature=0)
        assert out["object"] == "chat.completion" and out["choices"][0]["message"]["content"]


# -- embeddings ---------------------------------------------------------------------------------------
def test_embeddings(smollm_path, llama):
    with pytest.raises(RuntimeError, match="embedding=True"):
        llama.embed("hi")
    with Llama(model_path=str(smollm_path), n_ctx=256, embedding=True, verbose=False) as m:
        one = m.embed("Hello world")
        assert isinstance(one, list) and len(one) == m.n_embd() and isinstance(one[0], float)
        many, count = m.embed(["Hello world", "Goodbye"], return_count=True)
        assert len(many) == 2 and many[0] == pytest.approx(one, abs=1e-5) and count >= 3
        unit = m.embed("Hello world", normalize=True)
        assert math.isclose(float(np.linalg.norm(unit)), 1.0, rel_tol=1e-4)
        assert not math.isclose(float(np.linalg.norm(one)), 1.0, rel_tol=1e-3)
        resp = m.create_embedding(["a", "b"])
        assert resp["object"] == "list" and [d["index"] for d in resp["data"]] == [0, 1]
        assert resp["data"][0]["object"] == "embedding" and resp["usage"]["prompt_tokens"] >= 2


# -- low-level loop ---------------------------------------------------------------------------------------
def test_eval_sample_generate_reset(llama):
    tokens = llama.tokenize(PROMPT.encode(), special=True)
    llama.reset()
    assert llama.n_tokens == 0
    llama.eval(tokens)
    assert llama.n_tokens == len(tokens) and llama.input_ids.tolist() == tokens
    first = llama.sample(temp=0)
    assert first == int(np.argmax(llama.scores[llama.n_tokens - 1]))
    gen = llama.generate(tokens, temp=0)
    got = [next(gen) for _ in range(8)]
    gen.close()
    expected = greedy(llama, max_tokens=8)["choices"][0]["text"]
    assert llama.detokenize(got).decode() == expected and got[0] == first
    llama.reset()
    assert llama.n_tokens == 0 and llama.input_ids.size == 0


def test_instance_overrides_are_called(llama):
    calls = []
    original = llama.sample

    def sample(**kw):
        calls.append(kw)
        return original(**kw)

    llama.sample = sample
    try:
        text = greedy(llama, max_tokens=5)["choices"][0]["text"]
    finally:
        del llama.sample
    assert len(calls) == 5 and text == greedy(llama, max_tokens=5)["choices"][0]["text"]


def test_logits_processor_and_stopping_criteria(llama):
    tokens = llama.tokenize(PROMPT.encode(), special=True)
    base = greedy(llama, max_tokens=4)
    first = llama.tokenize(base["choices"][0]["text"].encode())[0]

    def ban(input_ids, scores):
        scores[first] = -np.inf
        return scores

    out = greedy(llama, max_tokens=4, logits_processor=LogitsProcessorList([ban]))
    assert llama.tokenize(out["choices"][0]["text"].encode())[0] != first
    # the criterion sees the evaluated tokens: prompt + 3 generated ones stop before a 4th is yielded
    stop_after = StoppingCriteriaList([lambda ids, logits: len(ids) >= len(tokens) + 3])
    out = greedy(llama, max_tokens=10, stopping_criteria=stop_after)
    assert out["choices"][0]["finish_reason"] == "stop" and out["usage"]["completion_tokens"] == 3
    biased = greedy(llama, max_tokens=4, logit_bias={first: -100.0}, logprobs=0)
    assert llama.tokenize(biased["choices"][0]["text"].encode())[0] != first


def test_save_and_load_state_across_instances(smollm_path, llama):
    llama.reset()
    tokens = llama.tokenize(PROMPT.encode(), special=True)
    llama.eval(tokens)
    state = llama.save_state()
    assert state.n_tokens == len(tokens) and state.llama_state_size == len(state.llama_state) > 0
    gen = llama.generate(tokens, temp=0)
    expected = [next(gen) for _ in range(6)]
    gen.close()
    with Llama(model_path=str(smollm_path), n_ctx=512, verbose=False) as other:
        other.load_state(state)
        assert other.n_tokens == len(tokens) and other.input_ids.tolist() == tokens
        assert int(np.argmax(other.scores[other.n_tokens - 1])) == expected[0]  # the last logits came along
        assert other._seed == state.seed
        # generate() keeps the restored cache (it re-decodes only the last prompt token on top of it)
        gen = other.generate(tokens, temp=0)
        assert [next(gen) for _ in range(6)] == expected
        gen.close()


def test_ram_cache_longest_prefix(llama):
    cache = LlamaRAMCache(capacity_bytes=1 << 30)
    from ikllama.compat import LlamaState

    def state(n):
        return LlamaState(np.arange(n, dtype=np.intc), np.zeros((1, 1), np.single), n, b"x" * n, n, 0)

    cache[[1, 2, 3]] = state(3)
    cache[[1, 2, 3, 4, 5]] = state(5)
    assert cache[[1, 2, 3, 4, 9]].n_tokens == 5 and cache[[1, 2, 7]].n_tokens == 3
    assert [1, 2] in cache and [9] not in cache and cache.cache_size == 8
    with pytest.raises(KeyError):
        cache[[9, 9]]
    small = LlamaRAMCache(capacity_bytes=6)
    small[[1]] = state(3)
    small[[2]] = state(5)
    assert [1] not in small and [2] in small  # least recently used dropped past capacity
    llama.set_cache(LlamaRAMCache())
    try:
        a = greedy(llama, max_tokens=6)["choices"][0]["text"]
        assert llama.cache.cache_size > 0
        llama.reset()
        assert greedy(llama, max_tokens=6)["choices"][0]["text"] == a
    finally:
        llama.set_cache(None)


def test_prompt_lookup_decoding(smollm_path, llama):
    draft = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=3)
    assert draft(np.array([1, 2, 3, 4, 1, 2])).tolist() == [3, 4, 1]
    assert draft(np.array([5, 6, 7])).size == 0
    prompt = "one two three four, one two three four, one two"
    with Llama(model_path=str(smollm_path), n_ctx=512, draft_model=draft, verbose=False) as m:
        assert greedy(m, prompt)["choices"][0]["text"] == greedy(llama, prompt)["choices"][0]["text"]


# -- module, install, enable --------------------------------------------------------------------------
def test_llama_cpp_constants_and_missing_functions(llama):
    from ikllama.compat import llama_cpp
    from ikllama.enums import PoolingType, SplitMode

    assert llama_cpp.LLAMA_POOLING_TYPE_MEAN == PoolingType.MEAN
    assert llama_cpp.LLAMA_SPLIT_MODE_LAYER == SplitMode.LAYER
    assert llama_cpp.LLAMA_DEFAULT_SEED == 0xFFFFFFFF and isinstance(llama_cpp.LLAMA_VOCAB_TYPE_BPE, int)
    assert llama_cpp.llama_n_vocab(llama) == 49152 and llama_cpp.llama_token_eos(llama) == llama.token_eos()
    assert llama_cpp.llama_max_devices() >= 1 and llama_cpp.llama_context_default_params().n_ctx >= 0
    with pytest.raises(AttributeError, match="use"):
        llama_cpp.llama_sampler_chain_init  # noqa: B018
    with pytest.raises(AttributeError, match="no such constant"):
        llama_cpp.LLAMA_NOT_A_THING  # noqa: B018


def _run(code: str, extra_path: list[str] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*extra_path, SRC])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_install_makes_import_llama_cpp_resolve(smollm_path):
    code = ("import sys, ikllama.compat as c; assert 'llama_cpp' not in sys.modules; c.install();"
            "import llama_cpp; from llama_cpp import Llama, LlamaGrammar, llama_types;"
            "from llama_cpp.llama import Llama as L2; import llama_cpp.llama_cpp as lc;"
            "from llama_cpp.llama_chat_format import format_chatml;"
            "assert Llama is L2 is c.Llama and lc.LLAMA_DEFAULT_SEED == 0xFFFFFFFF;"
            f"m = Llama(model_path={str(smollm_path)!r}, n_ctx=128, verbose=False);"
            "print(llama_cpp.__version__, m.n_vocab()); c.uninstall(); print('llama_cpp' in sys.modules)")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0.3.36", "49152", "False"]


def test_install_refuses_when_real_llama_cpp_imported(tmp_path):
    fake = tmp_path / "llama_cpp"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL = True\n")
    r = _run("import warnings, llama_cpp, ikllama.compat as c\n"
             "with warnings.catch_warnings(record=True) as w:\n"
             "    warnings.simplefilter('always'); ok = c.install()\n"
             "print(ok, llama_cpp.REAL, 'already imported' in str(w[0].message))", [str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "True"]


def test_enable_disable_pth(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    r = _run(f"from ikllama.compat.__main__ import main; raise SystemExit(main(['enable', '--site-dir', {str(site)!r}]))")
    assert r.returncode == 0, r.stderr
    assert (site / "ikllama_compat_llama_cpp.pth").exists()
    r = _run(f"import site; site.addsitedir({str(site)!r}); import llama_cpp; print(llama_cpp.__name__)")
    assert r.stdout.strip() == "ikllama.compat", r.stderr
    r = _run(f"from ikllama.compat.__main__ import main; raise SystemExit(main(['disable', '--site-dir', {str(site)!r}]))")
    assert r.returncode == 0 and not (site / "ikllama_compat_llama_cpp.pth").exists()
    fake = tmp_path / "real"
    (fake / "llama_cpp").mkdir(parents=True)
    (fake / "llama_cpp" / "__init__.py").write_text("")
    r = _run(f"from ikllama.compat.__main__ import main; raise SystemExit(main(['enable', '--site-dir', {str(site)!r}]))",
             [str(fake)])
    assert r.returncode == 1 and "llama-cpp-python is installed" in r.stderr
    assert not (site / "ikllama_compat_llama_cpp.pth").exists()


def test_import_loads_nothing_native():
    r = _run("import sys, ikllama.compat; print(any('_ikllama_cffi' in m for m in sys.modules))")
    assert r.stdout.strip() == "False", r.stderr


# -- third-party integrations (the `compat` test extra: langchain-community, llama-index-llms-llama-cpp) --------
@pytest.fixture
def as_llama_cpp():
    import ikllama.compat as compat

    assert compat.install()
    yield
    compat.uninstall()


def _quiet_import(name: str):
    import warnings

    with warnings.catch_warnings():  # langchain-community announces its own sunset on import
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip(name)


def test_langchain_llamacpp_invoke_and_stream(smollm_path, llama, as_llama_cpp):
    llms = _quiet_import("langchain_community.llms")
    lc = llms.LlamaCpp(model_path=str(smollm_path), n_ctx=512, temperature=0, max_tokens=12, verbose=False)
    text = lc.invoke(PROMPT)
    # LangChain passes its own defaults: repeat_penalty 1.1, top_p 0.95, top_k 40
    assert text == greedy(llama, max_tokens=12, top_p=0.95, top_k=40, repeat_penalty=1.1)["choices"][0]["text"]
    assert "".join(lc.stream(PROMPT)) == text
    lc.client.close()


def test_langchain_chat_llamacpp(smollm_path, llama, as_llama_cpp):
    chat_models = _quiet_import("langchain_community.chat_models")
    chat = chat_models.ChatLlamaCpp(model_path=str(smollm_path), n_ctx=512, temperature=0, max_tokens=12,
                                    verbose=False)
    answer = chat.invoke([("system", "You are brief."), ("human", "Name a fruit.")])
    expected = llama.create_chat_completion(MESSAGES, max_tokens=12, temperature=0)["choices"][0]["message"]
    assert answer.content == expected["content"]
    streamed = "".join(c.content for c in chat.stream([("system", "You are brief."), ("human", "Name a fruit.")]))
    assert streamed == answer.content
    chat.client.close()


def test_llama_index_llamacpp(smollm_path, llama, as_llama_cpp):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = pytest.importorskip("llama_index.llms.llama_cpp")
        from llama_index.core.llms import ChatMessage
    llm = base.LlamaCPP(model_path=str(smollm_path), temperature=0, max_new_tokens=12, context_window=512,
                        verbose=False)
    assert llm.metadata.context_window == 512
    text = llm.complete(PROMPT).text
    assert text == greedy(llama, max_tokens=12)["choices"][0]["text"]
    assert "".join(r.delta for r in llm.stream_complete(PROMPT)) == text
    reply = llm.chat([ChatMessage(role="user", content="Name a fruit.")])
    assert reply.message.role == "assistant" and reply.message.content
    llm._model.close()


def test_migration_example(smollm_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "from_llama_cpp_python.py"
    r = subprocess.run([sys.executable, str(example), "--model", str(smollm_path), "-n", "12"], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line and line.split(":")[0].isalpha())
    assert lines["stream"].strip().startswith("Paris") and lines["grammar"].strip() in ("yes", "no")
    assert lines["tokens"].startswith(" [19556, 905]")
