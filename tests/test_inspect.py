"""ikllama.modelfile.info.inspect and ``ikllama info MODEL``: read with gguf-py, checked against the loaded model."""

from __future__ import annotations

import json

import pytest

from ikllama.cli import main as cli_main
from ikllama.enums import GgmlType
from ikllama.modelfile.info import GGUFReadError, inspect, read_gguf
from ikllama.kvcache import kv_cache_bytes
from ikllama.modelfile.quantize import quantize


def test_inspect_agrees_with_the_loaded_model(smollm, smollm_path):
    info = inspect(smollm_path)
    names = {t.name for t in info.tensors}
    tied = "output.weight" not in names  # ik duplicates a tied output matrix in its own count
    embd = next(t for t in info.tensors if t.name == "token_embd.weight")
    assert info.n_params == smollm.n_params - (embd.n_elements if tied else 0)
    assert info.tensor_bytes == smollm.size - (embd.n_bytes if tied else 0)
    assert info.architecture == "llama" and info.file_type == "Q4_1"
    assert info.n_layer == smollm.n_layer and info.n_head_kv == smollm.n_head_kv
    assert info.vocab["size"] == smollm.n_vocab and info.vocab["type"] == "BPE"
    assert info.vocab["special"]["eos"]["text"] == "<|im_end|>"
    assert info.chat_template == smollm.meta("tokenizer.chat_template")
    assert set(smollm.metadata) <= set(info.metadata)
    assert info.metadata["tokenizer.ggml.tokens"]["array_len"] == smollm.n_vocab
    assert sum(r["bytes"] for r in info.type_mix.values()) == info.tensor_bytes
    assert info.type_mix["q4_1"]["tensors"] == 210 and len(info.tensors) == 272
    assert info.file_size == smollm_path.stat().st_size


@pytest.mark.parametrize(("kv", "t"), [("f16", GgmlType.F16), ("q8_0", GgmlType.Q8_0), ("q4_0", GgmlType.Q4_0)])
def test_kv_estimate_matches_kvcache_module(smollm, smollm_path, kv, t):
    est = inspect(smollm_path, n_ctx=3000, kv_type=kv).kv_cache
    exact = kv_cache_bytes(smollm, 3000, t, t)
    assert (est.k_bytes, est.v_bytes) == (exact.k_bytes, exact.v_bytes)


def test_reads_ik_only_tensor_types(smollm_path, tmp_path):
    # gguf-py releases do not know ik's repacked types; the reader sizes them with ggml's own traits
    out = tmp_path / "r8.gguf"
    quantize(smollm_path, out, "Q8_0_R8", nthread=2, allow_requantize=True)
    info = inspect(out)
    assert info.file_type == "Q8_0_R8" and "q8_0_r8" in info.type_mix
    assert sum(t.n_bytes for t in info.tensors) <= out.stat().st_size


def test_hostile_files_are_exceptions(smollm_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm_path.read_bytes()[:5_000_000])
    with pytest.raises(GGUFReadError, match="past the end"):
        read_gguf(cut)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(GGUFReadError):
        read_gguf(junk)
    text = tmp_path / "text.gguf"
    text.write_text("hello world, not a model")
    with pytest.raises(GGUFReadError, match="not a GGUF"):
        inspect(text)
    with pytest.raises(FileNotFoundError):
        inspect(tmp_path / "missing.gguf")


def test_info_cli(smollm_path, capsys):
    assert cli_main(["info", str(smollm_path), "--json", "--n-ctx", "4096", "--kv", "q8_0"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["architecture"] == "llama" and d["kv_cache"]["type_k"] == "q8_0" and "tensors" not in d
    assert cli_main(["info", str(smollm_path), "--tensors"]) == 0
    out = capsys.readouterr().out
    assert "blk.29.ffn_down.weight" in out and "kv cache" not in out and "tokenizer.chat_template" in out
    assert cli_main(["info"]) == 0
    assert capsys.readouterr().out.startswith("ikllama ")
    assert cli_main(["info", "/nonexistent.gguf"]) == 1
    assert "not found" in capsys.readouterr().err
