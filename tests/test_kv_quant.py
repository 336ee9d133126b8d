"""KV-cache sizes from block geometry agree with ik's allocation; perplexity equals llama-perplexity."""

from __future__ import annotations

import re
import subprocess

import pytest

import ikllama
from ikllama import GgmlType
from ikllama.corpus import corpus_text
from ikllama.kvcache import bytes_per_element, padded_n_ctx

TYPES = [(GgmlType.F16, GgmlType.F16), (GgmlType.Q8_0, GgmlType.Q8_0), (GgmlType.Q6_0, GgmlType.Q4_0),
         (GgmlType.Q4_1, GgmlType.IQ4_NL), (GgmlType.Q8_KV, GgmlType.F16), (GgmlType.BF16, GgmlType.BF16)]
HALF_HUNDREDTH_MIB = 0.005 * 2**20  # ik logs its sizes rounded to 0.01 MiB


def test_bytes_per_element_from_ggml():
    assert bytes_per_element(GgmlType.F16) == 2.0
    assert bytes_per_element(GgmlType.Q8_0) == 34 / 32
    assert bytes_per_element(GgmlType.Q4_0) == 18 / 32
    assert padded_n_ctx(1000) == 1024 and padded_n_ctx(1000, flash_attn=False) == 1024
    assert padded_n_ctx(300, flash_attn=False) == 320


@pytest.mark.parametrize("which", ["smollm", "gemma"])
@pytest.mark.parametrize("type_k,type_v", TYPES, ids=lambda t: t.name)
def test_predicted_size_matches_the_live_cache(request, which, type_k, type_v):
    model = request.getfixturevalue(which)
    flash = not (type_k == type_v == GgmlType.BF16 and not ikllama.system_info().cpu_features["avx512_bf16"])
    builder = model.context().with_n_ctx(1000).with_kv_cache(type_k, type_v).with_flash_attn(flash)
    with builder.build() as ctx:
        predicted, reported = ctx.kv_cache_size, ctx.kv_size_reported
        assert reported is not None
        assert abs(predicted.k_bytes - reported.k_bytes) <= HALF_HUNDREDTH_MIB
        assert abs(predicted.v_bytes - reported.v_bytes) <= HALF_HUNDREDTH_MIB
        assert predicted == ikllama.kv_cache_bytes(model, 1000, type_k, type_v, flash)


def llama_perplexity(tools, model_path, text_path, n_ctx, chunks, extra=()) -> float:
    out = subprocess.run([str(tools / "llama-perplexity"), "-m", str(model_path), "-f", str(text_path), "-c",
                          str(n_ctx), "-b", str(n_ctx), "-t", "2", "--chunks", str(chunks), *extra],
                         capture_output=True, text=True, check=True)
    return float(re.search(r"Final estimate: PPL over \d+ chunks for n_ctx=\d+ = ([\d.]+)", out.stdout).group(1))


@pytest.mark.parametrize("which", ["smollm", "gemma"])
@pytest.mark.parametrize("kv", ["f16", "q8_0-hadamard"])
def test_perplexity_equals_llama_perplexity(request, ik_tools, vendor_tree, tmp_path, which, kv):
    model = request.getfixturevalue(which)
    path = request.getfixturevalue(f"{which}_path")
    text = corpus_text(vendor_tree)
    text_path = tmp_path / "corpus.txt"
    text_path.write_text(text, encoding="utf-8")
    builder = model.context().with_n_ctx(256).with_n_batch(256).with_threads(2)
    extra: tuple[str, ...] = ()
    if kv != "f16":
        builder = builder.with_gen_type_kv(ikllama.KvType.Q8, ikllama.KvType.Q8)
        extra = ("-ctk", "q8_0", "-ctv", "q8_0", "-khad", "-vhad")
    with builder.build() as ctx:
        ours = ctx.perplexity(text, n_chunks=4)
    theirs = llama_perplexity(ik_tools, path, text_path, 256, 4, extra)
    assert ours.n_chunks == 4 and ours.n_scored == 4 * 127
    assert abs(ours.ppl - theirs) / theirs < 1e-3, (ours.ppl, theirs)


def test_perplexity_rejects_short_text(smollm):
    with smollm.context().with_n_ctx(256).build() as ctx:
        with pytest.raises(ValueError, match="at least 2\\*n_ctx"):
            ctx.perplexity("too short")
