"""The server's engine without HTTP: native calls on its own thread, and idle cached sequences that cost nothing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ikllama.batch import Pos
from ikllama.sampling import Sampler, SamplerConfig
from ikllama.server.engine import Engine
from ikllama.server.jobs import DoneEvent, ErrorEvent, GenRequest, TokenEvent


def test_call_runs_on_the_engine_thread_and_returns_or_raises(smollm):
    with smollm.context().with_n_ctx(512).with_n_seq_max(2).with_threads(2).build() as ctx:
        engine = Engine(ctx)
        engine.start()
        try:
            assert engine.call(threading.current_thread).result(30).name == "ikllama-engine"
            with pytest.raises(ZeroDivisionError):
                engine.call(lambda: 1 / 0).result(30)
            done = threading.Event()
            texts: list[str] = []

            def sink(event):
                if isinstance(event, TokenEvent):
                    texts.append(event.text)
                if isinstance(event, (DoneEvent, ErrorEvent)):
                    done.set()

            prompt = smollm.tokenize("The capital of France is", True, True)
            engine.submit(GenRequest(prompt, SamplerConfig.greedy(), sink, max_tokens=8))
            assert done.wait(60) and texts  # the failed call left the engine working
        finally:
            engine.shutdown()
        with pytest.raises(RuntimeError, match="shutting down"):
            engine.call(lambda: None).result(1)


def _greedy(ctx, sampler, prompt: list[int], seq: int, n: int) -> tuple[list[int], np.ndarray]:
    b = ctx.new_batch(len(prompt))
    b.add_sequence(prompt, Pos(0, seq), logits_last=True)
    ctx.decode(b)
    first = ctx.logits(len(prompt) - 1).copy()
    out = [sampler.sample(ctx, len(prompt) - 1)]
    for _ in range(n - 1):
        ctx.decode_steps([(out[-1], seq)])
        out.append(sampler.sample(ctx, 0))
    return out, first


def test_idle_sequences_in_the_cache_do_not_change_a_sequence(smollm):
    """Flash attention skips K blocks a row cannot see (patch 0006): the skipped cells must not matter."""
    prompt = smollm.tokenize("Write a list of the planets of the solar system:", True, True)
    with smollm.context().with_n_ctx(2048).with_n_seq_max(4).with_flash_attn(True).with_threads(2).build() as ctx, \
            Sampler.create(SamplerConfig.greedy(), smollm) as sampler:
        alone, alone_logits = _greedy(ctx, sampler, prompt, 0, 24)
        ctx.drop(0)
        for seq, text in enumerate(["Once upon a time " * 40, "def f(x):\n    return x\n" * 30, "1, 2, 3, " * 60]):
            b = ctx.new_batch(512)
            b.add_sequence(smollm.tokenize(text, True, True)[:500], Pos(0, seq), logits_last=True)
            ctx.decode(b)
        assert ctx.kv_cells_used > 750  # the new sequence lands after three idle ones
        sampler.reset()
        crowded, crowded_logits = _greedy(ctx, sampler, prompt, 3, 24)
    assert crowded == alone
    np.testing.assert_allclose(crowded_logits, alone_logits, atol=2e-2, rtol=0)
