"""The tiny GLM4-MoE + NextN test model: it loads with MTP, generates, and its "predictive" variant's MTP
head drafts exactly what the main model then emits. The MTP side is driven through ``lib`` directly,
following ik-c-api.md §2.6 (a second context with ``mtp_op_type=MTP_OP_WARMUP``)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import ikllama
from ikllama import Pos
from ikllama._lib import ffi, lib
from ikllama.testing.tiny_glm4moe import SHAPE, successor_table, write_tiny_glm4moe

PROMPT = "The quick brown fox jumps over"


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory) -> dict[str, os.PathLike]:
    d = tmp_path_factory.mktemp("tiny_glm4moe")
    return {v: write_tiny_glm4moe(d / f"{v}.gguf", variant=v, seed=0) for v in ("random", "predictive")}


@pytest.fixture(scope="module")
def successors() -> np.ndarray:
    return successor_table(seed=0)


def _load(path: os.PathLike) -> ikllama.Model:
    return ikllama.ModelConfig(mtp=True).load_gguf(path)


def _main_ctx(model: ikllama.Model) -> ikllama.Context:
    # One thread: a tiny graph gains nothing from two, and spin-waiting on a busy machine costs 100x.
    return (model.context().with_mtp(True).with_embeddings(True).with_n_ctx(256).with_n_batch(64)
            .with_threads(1).build())


class MtpSide:
    """The MTP context of ik-c-api.md §2.6, on the raw C API: same model, ``mtp=1``,
    ``mtp_op_type=MTP_OP_WARMUP`` at creation (KV only for the NextN layer), embeddings on."""

    def __init__(self, model: ikllama.Model):
        p = lib.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch = 256, 64, 64
        p.n_threads = p.n_threads_batch = 1
        p.embeddings = True
        p.mtp = True
        p.mtp_op_type = lib.MTP_OP_WARMUP
        self.n_embd = model.n_embd
        self.ptr = lib.llama_init_from_model(model._ptr(), p)
        assert self.ptr != ffi.NULL
        self.batch = lib.llama_batch_init(64, 0, 1)
        self._hidden = ffi.NULL  # the buffer ik reads at the next decode: kept alive until then

    def close(self) -> None:
        lib.llama_batch_free(self.batch)
        lib.llama_free(self.ptr)

    def _decode(self, op: int, tokens: list[int], pos0: int, hidden: np.ndarray) -> None:
        self._hidden = ffi.new("float[]", np.ascontiguousarray(hidden, np.float32).ravel().tolist())
        lib.llama_set_draft_input_hidden_state(self.ptr, self._hidden)
        b = self.batch
        for i, t in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = t, pos0 + i, 1, 0, 1
        b.n_tokens = len(tokens)
        lib.llama_set_mtp_op_type(self.ptr, op)
        try:
            assert lib.llama_decode(self.ptr, b) == 0
        finally:
            lib.llama_set_mtp_op_type(self.ptr, lib.MTP_OP_NONE)

    def warmup(self, tokens: list[int], hidden_rows: np.ndarray) -> None:
        """WARMUP over the prompt, rows shifted (row i conditions on h_{i-1}, row 0 on zeros)."""
        shifted = np.vstack([np.zeros((1, self.n_embd), np.float32), hidden_rows[:-1]])
        self._decode(lib.MTP_OP_WARMUP, tokens, 0, shifted)

    def draft(self, token: int, pos: int, hidden: np.ndarray, n_draft: int) -> list[int]:
        """DRAFT_GEN steps from ``token`` at ``pos`` (1 token per decode), each fed the MTP's own hidden
        state (copied: ik clears its output buffer before reading the pointer); the draft KV is purged."""
        out = []
        for i in range(n_draft):
            self._decode(lib.MTP_OP_DRAFT_GEN, [token], pos + i, hidden)
            logits = np.frombuffer(ffi.buffer(lib.llama_get_logits_ith(self.ptr, 0), 4 * self.n_vocab), np.float32)
            hidden = np.frombuffer(ffi.buffer(lib.llama_get_embeddings_ith(self.ptr, 0), 4 * self.n_embd),
                                   np.float32).copy()
            token = int(np.argmax(logits))
            out.append(token)
        lib.llama_kv_cache_seq_rm(self.ptr, 0, pos, -1)
        return out

    @property
    def n_vocab(self) -> int:
        return int(lib.llama_n_vocab(lib.llama_get_model(self.ptr)))


def _mtp_round(model: ikllama.Model, n_draft: int) -> tuple[list[int], list[int]]:
    """Prefill the prompt in a main MTP context, warm the MTP context up, draft ``n_draft`` tokens after
    the main model's first greedy token, and return (drafts, the main model's greedy tokens there)."""
    with _main_ctx(model) as ctx:
        tokens = ctx.vocab.tokenize(PROMPT, False, False)
        n = len(tokens)
        batch = ctx.new_batch(n)
        batch.add_sequence(tokens, Pos(0, 0))
        ctx.decode(batch)
        first = int(np.argmax(ctx.logits(n - 1)))
        # With mtp=1 ik writes a hidden row for every batch token: read them from the raw base.
        base = lib.llama_get_embeddings(ctx._ptr())
        hidden = np.frombuffer(ffi.buffer(base, 4 * n * model.n_embd), np.float32).reshape(n, -1).copy()
        mtp = MtpSide(model)
        try:
            mtp.warmup(tokens, hidden)
            drafts = mtp.draft(first, n, hidden[-1], n_draft)
        finally:
            mtp.close()
        verify = ctx.new_batch(n_draft + 1)
        for i, t in enumerate([first, *drafts]):
            verify.add(t, Pos(n + i, 0), logits=True)
        ctx.decode(verify)
        emitted = [int(np.argmax(ctx.logits(i))) for i in range(n_draft)]
    return drafts, emitted


def test_write_is_small_and_fast(tmp_path):
    t0 = time.perf_counter()
    path = write_tiny_glm4moe(tmp_path / "t.gguf", variant="predictive", seed=3)
    assert time.perf_counter() - t0 < 5
    assert path.stat().st_size < 20 * 1024 * 1024
    with pytest.raises(ValueError, match="variant"):
        write_tiny_glm4moe(tmp_path / "x.gguf", variant="nope")


@pytest.mark.parametrize("variant", ["random", "predictive"])
def test_loads_with_mtp_and_generates(tiny_paths, variant):
    with _load(tiny_paths[variant]) as model:
        assert model.architecture == "glm4moe"
        assert model.n_nextn_layer == 1
        assert model.n_layer == SHAPE.n_layer
        assert model.n_embd == SHAPE.n_embd
        assert model.n_vocab == 50257  # the vendored GPT-2 vocab, tokenizer copied whole
        assert model.meta("ikllama.tiny.variant") == variant
        assert model.tokenize("Hello world", False, False) == [15496, 995]
        with _main_ctx(model) as ctx:
            inf = ikllama.SimpleInference(ctx)
            inf.prefill(ctx.vocab.tokenize(PROMPT, False, False))
            answer = inf.generate(max_tokens=12)
            assert len(answer.tokens) == 12
            assert all(0 <= t < model.n_vocab for t in answer.tokens)


def test_predictive_main_model_follows_successor_map(tiny_paths, successors):
    with _load(tiny_paths["predictive"]) as model, _main_ctx(model) as ctx:
        inf = ikllama.SimpleInference(ctx)
        prompt = ctx.vocab.tokenize(PROMPT, False, False)
        inf.prefill(prompt)
        tokens = inf.generate(max_tokens=16).tokens
    expected, t = [], prompt[-1]
    for _ in range(16):
        t = int(successors[t])
        expected.append(t)
    assert tokens == expected


def test_predictive_mtp_drafts_what_the_main_model_emits(tiny_paths, successors):
    with _load(tiny_paths["predictive"]) as model:
        drafts, emitted = _mtp_round(model, n_draft=3)
    assert drafts == emitted
    assert drafts[1] == int(successors[drafts[0]])  # and the drafts follow g themselves


def test_random_mtp_head_is_unrelated(tiny_paths):
    with _load(tiny_paths["random"]) as model:
        drafts, emitted = _mtp_round(model, n_draft=3)
    assert drafts[0] != emitted[0]
