"""Tokenization against upstream's golden files (vendored models/ggml-vocab-*.gguf with .inp/.out)."""

from __future__ import annotations

from pathlib import Path

import pytest

import ikllama

VOCABS = ["bert-bge", "command-r", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2", "llama-bpe", "llama-spm",
          "mpt", "phi-3", "qwen2", "refact", "starcoder"]
SEP = "\n__ggml_vocab_test__\n"


def read_cases(gguf: Path) -> list[tuple[str, list[int]]]:
    """Parse the .inp/.out pair exactly as upstream's tests/test-tokenizer-0.cpp does."""
    raw = gguf.with_name(gguf.name + ".inp").read_bytes().decode("utf-8")
    inputs = raw.split(SEP)
    outputs = gguf.with_name(gguf.name + ".out").read_text(encoding="utf-8").split("\n")
    outputs = outputs[: len(inputs)]
    assert len(inputs) == len(outputs)
    return [(text, [int(x) for x in out.split()]) for text, out in zip(inputs, outputs)]


@pytest.mark.parametrize("name", VOCABS)
def test_tokenizer_matches_golden(vendor_tree, name):
    gguf = vendor_tree / "models" / f"ggml-vocab-{name}.gguf"
    cases = read_cases(gguf)
    assert len(cases) > 10
    with ikllama.ModelConfig(vocab_only=True).load_gguf(gguf) as model:
        failures = [(text, want, got) for text, want in cases
                    if (got := model.tokenize(text, add_special=False, parse_special=False)) != want]
    assert not failures, f"{len(failures)}/{len(cases)} mismatches, first: {failures[0]}"


def test_vocab_only_model_cannot_decode(vendor_tree):
    gguf = vendor_tree / "models" / "ggml-vocab-llama-bpe.gguf"
    with ikllama.ModelConfig(vocab_only=True).load_gguf(gguf) as model:
        assert model.tokenize("Hello world", add_special=False) == [9906, 1917]
        assert model.detokenize([9906, 1917]) == "Hello world"
        with pytest.raises(ikllama.UnsupportedConfigError, match="vocab_only"):
            model.context().build()
