"""The host prompt cache (``--cache-ram``): evicted sequences come back by copy, not by prefill."""

from __future__ import annotations

import threading

import pytest

from ikllama.sampling import SamplerConfig
from ikllama.server.engine import Engine
from ikllama.server.jobs import DoneEvent, ErrorEvent, GenRequest, TokenEvent
from ikllama.server.promptcache import HostPromptCache


def test_cache_keeps_the_newest_within_its_limit_and_drops_prefixes():
    cache = HostPromptCache(limit_bytes=300, min_tokens=4)
    cache.put([1, 2, 3], b"x" * 10)  # too short to keep
    assert cache.stats()["entries"] == 0
    cache.put([1, 2, 3, 4, 5], b"a" * 100)
    cache.put([1, 2, 3, 4, 5, 6, 7], b"b" * 100)  # extends the first: the first is redundant
    assert cache.stats()["entries"] == 1 and cache.stats()["bytes"] == 100
    cache.put([9] * 40, b"c" * 100)
    cache.put([8] * 40, b"d" * 150)  # 350 bytes: the least recently used entry goes
    assert cache.stats()["entries"] == 2 and cache.stats()["bytes"] == 250
    assert cache.best([1, 2, 3, 4, 5, 6, 7, 0], better_than=0) is None  # evicted
    cache.put([7] * 400, b"e" * 301)  # larger than the whole limit: not kept
    assert cache.stats()["bytes"] == 250


def test_best_needs_a_real_gain_over_what_is_resident():
    cache = HostPromptCache(limit_bytes=10_000, min_tokens=4)
    entry = list(range(100, 200))
    cache.put(entry, b"s" * 100)
    prompt = entry + [5, 6, 7]
    found = cache.best(prompt, better_than=0)
    assert found is not None and found[0].tokens == tuple(entry) and found[1] == 100
    assert cache.best(prompt, better_than=90) is None  # 10 more tokens: cheaper to prefill
    assert cache.best([100, 101, 102] + [0] * 50, better_than=0) is None  # shares too little of the entry
    assert cache.stats()["hits"] == 1


def _run(engine: Engine, prompt: list[int], n: int = 8) -> tuple[list[int], DoneEvent]:
    done = threading.Event()
    tokens: list[int] = []
    last: list = []

    def sink(event):
        if isinstance(event, TokenEvent):
            tokens.append(event.token)
        elif isinstance(event, (DoneEvent, ErrorEvent)):
            last.append(event)
            done.set()

    engine.submit(GenRequest(prompt, SamplerConfig.greedy(), sink, max_tokens=n, ignore_eos=True))
    assert done.wait(120)
    assert isinstance(last[0], DoneEvent), last
    return tokens, last[0]


def _conversation(smollm, host: HostPromptCache | None) -> tuple[list[int], list[int], DoneEvent, int]:
    """Three stories on two sequences, then the first one continued: (answer, first reply, done, prompt 0 size)."""
    texts = [f"Story {k}: " + " ".join(f"the {w} walked to the {k}th river and sang" for w in ("fox", "owl", "cat", "bear", "wolf", "hare"))
             for k in range(3)]
    prompts = [smollm.tokenize(t, True, True) for t in texts]
    assert all(len(p) >= 64 for p in prompts)
    with smollm.context().with_n_ctx(1024).with_n_seq_max(2).with_threads(2).build() as ctx:
        engine = Engine(ctx, host_cache=host)
        engine.start()
        try:
            first, _ = _run(engine, prompts[0])
            _run(engine, prompts[1])
            _run(engine, prompts[2])  # two sequences: the first conversation leaves the KV cache
            assert all(seq[:len(prompts[0])] != prompts[0] for seq in ctx._seqs)
            answer, done = _run(engine, prompts[0] + first + smollm.tokenize(" Then the owl", False, False))
        finally:
            engine.shutdown()
    return answer, first, done, len(prompts[0])


def test_an_evicted_conversation_resumes_from_host_memory(smollm):
    plain_answer, _, plain, _ = _conversation(smollm, None)
    assert plain.cached_tokens < 16  # only the start the stories share
    host = HostPromptCache(64 << 20)
    answer, first, done, n_prompt = _conversation(smollm, host)
    assert done.cached_tokens >= n_prompt + len(first) - 1, done
    assert host.stats()["hits"] == 1 and host.stats()["saved"] >= 1
    # The restored cells hold what a prefill computes: the same greedy answer as without the cache.
    assert answer == plain_answer


def test_sequences_taken_for_the_choices_of_n_go_to_host_memory_first(smollm):
    story = smollm.tokenize("Story: " + " ".join(f"the {w} walked to the river and sang" for w in
                                                 ("fox", "owl", "cat", "bear", "wolf", "hare", "deer")), True, True)
    other = smollm.tokenize("A list of colours: red, green, blue, yellow", True, True)
    host = HostPromptCache(64 << 20)
    with smollm.context().with_n_ctx(1024).with_n_seq_max(2).with_threads(2).build() as ctx:
        engine = Engine(ctx, host_cache=host)
        engine.start()
        try:
            first, _ = _run(engine, story)
            done = threading.Event()
            engine.submit(GenRequest(other, SamplerConfig(temperature=0.8, seed=1),
                                     lambda e: done.set() if isinstance(e, (DoneEvent, ErrorEvent)) else None,
                                     max_tokens=4, n=2))  # both sequences: the story's is emptied for a choice
            assert done.wait(120)
            assert host.stats()["saved"] == 1
            _, again = _run(engine, story + first)
        finally:
            engine.shutdown()
    assert again.cached_tokens >= len(story) + len(first) - 1 and host.stats()["hits"] == 1
