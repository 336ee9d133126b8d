"""ikllama.modelfile.hf against a Hugging Face cache the test lays out itself (HF_HUB_CACHE, HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import pytest

import ikllama
from ikllama.errors import ModelFetchError
from ikllama.modelfile.hf import hf_file
from ikllama.llm import LLM

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "example-org/SmolLM2-135M-GGUF"


def _lay_out(cache, repo, files):
    """The HF cache layout: blobs by hash, snapshots/<commit>/<name> symlinks to them, refs/main."""
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    for i, (name, source) in enumerate(files.items()):
        blob = base / "blobs" / f"{i:040x}"
        blob.parent.mkdir(exist_ok=True)
        if isinstance(source, bytes):
            blob.write_bytes(source)
        else:
            blob.symlink_to(source)
        link = base / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    return base / "snapshots" / COMMIT


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, smollm_path):
    cache = tmp_path / "hub"
    snap = _lay_out(cache, REPO, {
        "SmolLM2-135M-Instruct-Q4_1.gguf": smollm_path,
        "SmolLM2-135M-Instruct-Q8_0.gguf": b"GGUF-q8-placeholder",
        "split/big-Q4_K_M-00001-of-00002.gguf": b"GGUF-shard-1",
        "split/big-Q4_K_M-00002-of-00002.gguf": b"GGUF-shard-2",
        "README.md": b"# card",
    })
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snap


def test_exact_name_and_glob(hf_cache):
    p = hf_file(REPO, "SmolLM2-135M-Instruct-Q4_1.gguf")
    assert p == hf_cache / "SmolLM2-135M-Instruct-Q4_1.gguf" and p.read_bytes()[:4] == b"GGUF"
    assert hf_file(REPO, "*Q8_0*.gguf") == hf_cache / "SmolLM2-135M-Instruct-Q8_0.gguf"


def test_split_model_fetches_every_shard(hf_cache):
    p = hf_file(REPO, "*Q4_K_M*")
    assert p == hf_cache / "split" / "big-Q4_K_M-00001-of-00002.gguf"
    assert (p.parent / "big-Q4_K_M-00002-of-00002.gguf").read_bytes() == b"GGUF-shard-2"
    assert hf_file(REPO, "big-Q4_K_M-00002-of-00002.gguf") == p  # naming any shard gives the first


def test_ambiguous_glob_lists_the_matches(hf_cache):
    with pytest.raises(ModelFetchError, match=r"matches 3 models.*Q4_1\.gguf.*Q8_0\.gguf.*big-Q4_K_M-\*-of-00002"):
        hf_file(REPO, "*.gguf")


def test_missing_file_and_offline_repo(hf_cache):
    with pytest.raises(ModelFetchError, match="no file matching 'model-Q2_K.gguf'.*Q4_1.gguf"):
        hf_file(REPO, "model-Q2_K.gguf")
    with pytest.raises(ModelFetchError, match="not in the Hugging Face cache.*HF_HUB_OFFLINE=1"):
        hf_file("someone/elses-model", "*.gguf")
    with pytest.raises(ValueError, match="owner/name"):
        hf_file("no-slash", "x.gguf")


def test_load_hf_and_from_pretrained(hf_cache, smollm):
    with ikllama.ModelConfig(vocab_only=True).load_hf(REPO, "*Q4_1*") as m:
        assert m.n_vocab == smollm.n_vocab and m.path == hf_cache / "SmolLM2-135M-Instruct-Q4_1.gguf"
    with LLM.from_pretrained(REPO, "SmolLM2-135M-Instruct-Q4_1.gguf", n_ctx=256) as llm:
        assert llm.tokenize("hello") == smollm.tokenize("hello")
