"""Lifetimes: close()/with, use after close, model outliving its contexts, leaks, threads, abort."""

from __future__ import annotations

import gc
import threading
import time

import pytest

import ikllama
from ikllama import ModelConfig, Pos

from helpers import greedy, next_logits


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_use_after_close_raises(smollm):
    ctx = smollm.context().with_n_ctx(256).build()
    batch = ctx.new_batch(2)
    ctx.close()
    ctx.close()  # idempotent
    assert ctx.closed
    for call in (lambda: ctx.decode(batch), lambda: ctx.sample(0), lambda: ctx.dump(), lambda: ctx.clear(),
                 lambda: ctx.new_batch(1), lambda: ctx.truncate(Pos(0, 0)), lambda: ctx.timings()):
        with pytest.raises(ikllama.ClosedError, match="closed"):
            call()
    batch.close()
    with pytest.raises(ikllama.ClosedError):
        batch.add(1, Pos(0, 0))


def test_model_close_waits_for_its_contexts(smollm_path):
    model = ModelConfig().load_gguf(smollm_path)
    ctx = model.context().with_n_ctx(256).build()
    model.close()
    assert model.closed
    with pytest.raises(ikllama.ClosedError):
        model.context()
    with pytest.raises(ikllama.ClosedError):
        model.tokenize("x")
    # The open context still works: the weights are freed only after it closes.
    assert len(greedy(ctx, [1, 2, 3], 3)) == 3
    ctx.close()
    assert model._h is None


def test_dropped_objects_are_freed_by_the_gc(smollm_path):
    model = ModelConfig().load_gguf(smollm_path)
    ctx = model.context().with_n_ctx(256).build()
    next_logits(ctx, [1, 2, 3])
    del model, ctx  # no close(): cffi's gc hook frees the context first, then the model
    gc.collect()


def test_context_cycles_do_not_leak(smollm):
    def cycle():
        with smollm.context().with_n_ctx(256).with_n_batch(32).build() as ctx:
            batch = ctx.new_batch(2)
            batch.add(1, Pos(0, 0))
            batch.add(2, Pos(1, 0), True)
            ctx.decode(batch)
    for _ in range(50):
        cycle()
    gc.collect()
    before = rss_bytes()
    for _ in range(1000):
        cycle()
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 5 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 1000 context cycles"


def test_model_cycles_do_not_leak(smollm_path):
    for _ in range(5):
        ModelConfig().load_gguf(smollm_path).close()
    gc.collect()
    before = rss_bytes()
    for _ in range(100):
        with ModelConfig().load_gguf(smollm_path) as model:
            model.tokenize("hello")
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 5 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 100 model loads"


def _decode_in_thread(ctx, tokens):
    result = {}
    started = threading.Event()

    def work():
        batch = ctx.new_batch(len(tokens))
        batch.add_sequence(tokens, Pos(0, 0))
        started.set()
        try:
            ctx.decode(batch)
            result["ok"] = True
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    started.wait()
    return thread, result


def test_second_thread_gets_an_error_not_a_crash(smollm):
    with smollm.context().with_n_ctx(2048).with_n_batch(2048).with_threads(2).build() as ctx:
        tokens = ctx.str_to_tokens("lorem ipsum dolor sit amet " * 300)[:2000]
        thread, result = _decode_in_thread(ctx, tokens)
        refused = 0
        while thread.is_alive():
            try:
                ctx.set_threads(2)  # harmless if it gets through after the decode has finished
            except ikllama.ConcurrentUseError as exc:
                assert "another thread" in str(exc)
                refused += 1
            time.sleep(0.001)
        thread.join()
        assert result.get("ok") and refused > 0
        assert ctx.n_past() == len(tokens)  # the decode was not disturbed


def test_abort_cancels_a_running_decode(smollm):
    with smollm.context().with_n_ctx(2048).with_n_batch(2048).with_threads(2).build() as ctx:
        tokens = ctx.str_to_tokens("lorem ipsum dolor sit amet " * 300)[:2000]
        thread, result = _decode_in_thread(ctx, tokens)
        time.sleep(0.05)
        ctx.abort()
        thread.join()
        assert isinstance(result.get("error"), ikllama.DecodeAbortedError), result
        assert ctx.n_past() == 0  # nothing of the aborted batch was kept
        assert len(greedy(ctx, tokens[:8], 3)) == 3
