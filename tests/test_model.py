"""Model metadata, tokenizer and ModelConfig options on real models."""

from __future__ import annotations

import pytest

import ikllama
from ikllama import ModelConfig, SplitMode


def test_smollm_metadata(smollm):
    assert smollm.architecture == "llama"
    assert (smollm.n_embd, smollm.n_layer, smollm.n_head, smollm.n_head_kv, smollm.head_dim) == (576, 30, 9, 3, 64)
    assert smollm.n_ctx_train == 8192 and smollm.n_vocab == 49152
    assert 100e6 < smollm.n_params < 200e6 and 50e6 < smollm.size < 200e6
    assert smollm.metadata["general.architecture"] == "llama"
    assert "<|im_start|>" in smollm.chat_template()
    assert smollm.is_eog(smollm.token_eos) and not smollm.is_eog(smollm.tokenize("Hi", add_special=False)[0])
    assert "llama" in smollm.description


def test_gemma_metadata(gemma):
    assert gemma.architecture == "gemma3"
    assert gemma.head_dim == 256 and gemma.n_head_kv == 1
    assert gemma.token_bos == 2 and gemma.add_bos
    assert gemma.tokenize("Hello")[0] == gemma.token_bos


def test_tokenizer_round_trip_and_special_tokens(smollm):
    text = "Grüße, 世界! <|im_start|>"
    plain = smollm.tokenize(text, add_special=False, parse_special=False)
    special = smollm.tokenize(text, add_special=False, parse_special=True)
    assert smollm.detokenize(plain) == text
    assert len(special) < len(plain)  # the marker became one token
    assert b"".join(smollm.token_to_piece(t) for t in plain).decode() == text
    assert smollm.token_text(special[-1]) == "<|im_start|>"


def test_kv_overrides_reach_the_loader(smollm_path):
    with ModelConfig(kv_overrides={"llama.context_length": 1234}).load_gguf(smollm_path) as model:
        assert model.n_ctx_train == 1234


def test_tensor_overrides_and_progress(smollm_path):
    seen = []
    config = ModelConfig().with_tensor_overrides([("ffn_.*", "CPU")]).with_progress(seen.append)
    with config.load_gguf(smollm_path) as model, model.context().with_n_ctx(256).build() as ctx:
        assert ctx.str_to_tokens("hi")
    assert seen and seen[-1] == pytest.approx(1.0)
    with ModelConfig(progress=True).load_gguf(smollm_path) as model:  # a tqdm bar
        assert model.n_layer == 30


def test_builders_return_new_configs():
    base = ModelConfig()
    changed = base.with_split_mode(SplitMode.ROW).with_mmap(False).with_n_gpu_layers(3)
    assert base.split_mode == SplitMode.LAYER and changed.split_mode == SplitMode.ATTN
    assert SplitMode.TENSOR is SplitMode.GRAPH and int(SplitMode.GRAPH) == 3
    assert (changed.use_mmap, changed.n_gpu_layers) == (False, 3)


def test_set_threads(smollm):
    with smollm.context().with_n_ctx(256).with_threads(1).build() as ctx:
        assert ctx.n_threads == 1
        ctx.set_threads(2)
        assert ctx.n_threads == 2
        with pytest.raises(ValueError, match="n_threads"):
            ctx.set_threads(0)


def test_kv_type_mapping_follows_slm_ikllama():
    from ikllama import GgmlType, KvType

    assert [(k.ggml_type, k.hadamard) for k in KvType] == [
        (GgmlType.Q4_0, True), (GgmlType.Q5_0, True), (GgmlType.Q6_0, True), (GgmlType.Q8_0, True),
        (GgmlType.Q8_0, False), (GgmlType.F16, False), (GgmlType.F32, False)]
    assert ikllama.KvType.RAW_Q8.ggml_type == ikllama.GgmlType.Q8_0
