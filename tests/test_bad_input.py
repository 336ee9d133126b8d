"""Bad input raises a Python exception naming the problem and the fix; the process survives and the
object stays usable (or is cleanly closed)."""

from __future__ import annotations

import pytest

import ikllama
from ikllama import GgmlType, KvType, ModelConfig, Pos, SplitMode

from helpers import greedy, next_logits


def still_works(ctx) -> None:
    """The context decodes and samples normally after the rejected call."""
    ctx.clear()
    assert len(greedy(ctx, ctx.str_to_tokens("Hello"), 3)) == 3


@pytest.fixture
def ctx(smollm):
    with smollm.context().with_n_ctx(256).with_n_batch(64).with_n_seq_max(2).with_threads(2).build() as c:
        yield c


# -- model files ---------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ModelConfig().load_gguf(tmp_path / "nope.gguf")


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ikllama.ModelLoadError, match="not a file"):
        ModelConfig().load_gguf(tmp_path)


def test_non_gguf_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_text("this is not a model")
    with pytest.raises(ikllama.ModelLoadError, match="not a GGUF file"):
        ModelConfig().load_gguf(path)


def test_truncated_gguf(tmp_path, smollm_path):
    path = tmp_path / "cut.gguf"
    path.write_bytes(smollm_path.read_bytes()[: 3_000_000])
    with pytest.raises(ikllama.ModelLoadError, match="could not load"):
        ModelConfig().load_gguf(path)


def test_load_can_be_cancelled_and_callback_errors_propagate(smollm_path):
    seen = []
    with pytest.raises(ikllama.ModelLoadError, match="cancelled"):
        ModelConfig(progress=lambda p: seen.append(p) or False).load_gguf(smollm_path)
    assert seen

    def boom(p):
        raise RuntimeError("callback failed")
    with pytest.raises(RuntimeError, match="callback failed"):
        ModelConfig(progress=boom).load_gguf(smollm_path)


def test_bad_model_config():
    with pytest.raises(ValueError, match="mla"):
        ModelConfig(mla=7).validate()
    with pytest.raises(ValueError, match="rpc server"):
        ModelConfig(rpc_servers=["no-port"]).validate()
    with pytest.raises(ValueError, match="regex"):
        ModelConfig(tensor_overrides=[("(", "CPU")]).validate()


def test_split_graph_needs_two_devices(smollm_path):
    for mode in (SplitMode.GRAPH, SplitMode.ATTN, SplitMode.TENSOR, SplitMode.ROW):
        with pytest.raises(ikllama.UnsupportedConfigError, match="several devices"):
            ModelConfig(split_mode=mode, n_gpu_layers=99).load_gguf(smollm_path)


def test_unknown_buffer_type_in_overrides(smollm_path):
    with pytest.raises(ikllama.UnsupportedConfigError, match="no buffer type 'CUDA7'"):
        ModelConfig(tensor_overrides=[("ffn", "CUDA7")]).load_gguf(smollm_path)


# -- context configuration -----------------------------------------------------------------------
@pytest.mark.parametrize("change,field", [
    (lambda b: b.with_n_ctx(0), "n_ctx"),
    (lambda b: b.with_n_batch(0), "n_batch"),
    (lambda b: b.with_n_batch(32).with_n_ubatch(64), "n_ubatch"),
    (lambda b: b.with_n_seq_max(0), "n_seq_max"),
    (lambda b: b.with_n_seq_max(100_000), "n_seq_max"),
    (lambda b: b.with_threads(0), "n_threads"),
    (lambda b: b.with_sampler(0.8, 40, 1.5), "top_p"),
    (lambda b: b.with_sampler(0.8, -3, 0.9), "top_k"),
])
def test_out_of_range_context_parameters(smollm, change, field):
    with pytest.raises(ValueError, match=field):
        change(smollm.context()).build()


def test_quantized_v_needs_flash_attention(smollm):
    with pytest.raises(ikllama.UnsupportedConfigError, match="needs flash attention"):
        smollm.context().with_gen_type_kv(KvType.Q8, KvType.Q8).with_flash_attn(False).build()


@pytest.mark.parametrize("k,v", [(GgmlType.Q5_0, GgmlType.F16), (GgmlType.F16, GgmlType.Q5_1),
                                 (GgmlType.F32, GgmlType.F16)])
def test_kv_types_cpu_flash_attention_would_abort_on(smollm, k, v):
    with pytest.raises(ikllama.UnsupportedConfigError, match="CPU flash attention"):
        smollm.context().with_kv_cache(k, v).build()
    with pytest.raises(ikllama.UnsupportedConfigError, match="Q8_KV works for K only"):
        smollm.context().with_kv_cache(GgmlType.Q8_0, GgmlType.Q8_KV).build()
    with pytest.raises(ikllama.UnsupportedConfigError):
        smollm.context().with_gen_type_kv(KvType.Q5, KvType.Q5).build()


def test_k_only_types_work_without_flash_attention(smollm):
    with smollm.context().with_n_ctx(256).with_kv_cache(GgmlType.Q5_0, GgmlType.F16).with_flash_attn(False).build() as c:
        still_works(c)


def test_hadamard_needs_a_power_of_two_head(smollm, monkeypatch):
    monkeypatch.setitem(smollm.__dict__, "head_dim", 96)
    with pytest.raises(ikllama.UnsupportedConfigError, match="power-of-two head size; this model's is 96"):
        smollm.context().with_gen_type_kv(KvType.Q8, KvType.F16).build()
    monkeypatch.setitem(smollm.__dict__, "head_dim", 64)
    with smollm.context().with_n_ctx(256).with_gen_type_kv(KvType.Q8, KvType.F16).build() as c:
        still_works(c)


def test_non_enum_kv_type(smollm):
    with pytest.raises(ValueError):
        smollm.context().with_gen_type_kv("q8", "q8")


# -- batches and positions -----------------------------------------------------------------------
def test_batch_overflow(ctx):
    batch = ctx.new_batch(2)
    batch.add(1, Pos(0, 0))
    batch.add(2, Pos(1, 0))
    with pytest.raises(OverflowError, match="full"):
        batch.add(3, Pos(2, 0))
    with pytest.raises(ValueError, match="n_batch"):
        ctx.new_batch(ctx.max_batch_len + 1)
    ctx.decode(batch)
    still_works(ctx)


def test_token_outside_vocabulary(ctx, smollm):
    batch = ctx.new_batch(4)
    for bad in (-1, smollm.n_vocab):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            batch.add(bad, Pos(0, 0))
        with pytest.raises(ValueError, match="outside the vocabulary"):
            smollm.token_to_piece(bad)
    assert batch.n_tokens == 0
    still_works(ctx)


def test_fork_out_of_range(ctx):
    batch = ctx.new_batch(4)
    with pytest.raises(ValueError, match="fork_id 2 out of range"):
        batch.add(1, Pos(0, 2))
    with pytest.raises(ValueError, match="fork_id"):
        ctx.drop(5)
    still_works(ctx)


def test_positions_out_of_order(ctx):
    next_logits(ctx, [1, 2, 3])
    for pos in (1, 5):
        batch = ctx.new_batch(1)
        batch.add(4, Pos(pos, 0), True)
        with pytest.raises(ValueError, match="out of order; the next position is 3"):
            ctx.decode(batch)
    assert ctx.n_past() == 3
    still_works(ctx)


def test_context_full(ctx):
    tokens = ctx.str_to_tokens("word " * 300)[: ctx.n_ctx]
    next_logits(ctx, tokens[: ctx.n_ctx - 2])
    batch = ctx.new_batch(4)
    batch.add_sequence(tokens[:4], Pos(ctx.n_past(), 0))
    with pytest.raises(ikllama.KvCacheFullError, match="beyond the context|do not fit"):
        ctx.decode(batch)
    assert ctx.n_past() == ctx.n_ctx - 2
    still_works(ctx)


def test_sample_without_logits(ctx):
    with pytest.raises(ValueError, match="decode a batch"):
        ctx.sample(0)
    batch = ctx.new_batch(2)
    batch.add(1, Pos(0, 0))
    batch.add(2, Pos(1, 0), True)
    ctx.decode(batch)
    with pytest.raises(ValueError, match="row 0 has no logits"):
        ctx.logits(0)
    still_works(ctx)


def test_edits_outside_the_sequence(ctx):
    next_logits(ctx, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="outside fork 0"):
        ctx.truncate(Pos(9, 0))
    with pytest.raises(ValueError, match="outside fork 0"):
        ctx.cut(Pos(2, 0), Pos(7, 0))
    with pytest.raises(ValueError, match="after end"):
        ctx.cut(Pos(3, 0), Pos(1, 0))
    with pytest.raises(ValueError, match="same fork"):
        ctx.cut(Pos(1, 0), Pos(2, 1))
    assert ctx.tokens() == [1, 2, 3, 4]
    still_works(ctx)


# -- state ---------------------------------------------------------------------------------------
def test_restore_rejects_foreign_and_damaged_state(ctx, smollm, gemma):
    next_logits(ctx, [1, 2, 3, 4])
    blob = ctx.dump()
    with pytest.raises(ikllama.StateError, match="bad magic"):
        ctx.restore(b"garbage" * 10)
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(ikllama.StateError, match="corrupted"):
        ctx.restore(bytes(damaged))
    with pytest.raises(ikllama.StateError, match="truncated"):
        ctx.restore(blob[:-100])
    with pytest.raises(ikllama.StateError, match="expected 'sequence'"):
        ctx.restore_sequence(blob, 0)
    with gemma.context().with_n_ctx(256).build() as other:
        with pytest.raises(ikllama.StateError, match="another model"):
            other.restore(blob)
    with smollm.context().with_n_ctx(256).with_gen_type_kv(KvType.Q8, KvType.Q8).build() as other:
        with pytest.raises(ikllama.StateError, match="KV-cache layout"):
            other.restore(blob)
    assert ctx.tokens() == [1, 2, 3, 4]
    ctx.restore(blob)
    still_works(ctx)
