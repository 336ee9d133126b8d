"""Split GGUF models: ikllama.modelfile.split writes shards, ik loads them from the first one, merging restores the file."""

from __future__ import annotations

import numpy as np
import pytest

import ikllama
from ikllama.cli import main as cli_main
from ikllama.modelfile.info import inspect, split_paths
from ikllama.modelfile.quantize import quantize
from ikllama.modelfile.split import merge_gguf, parse_size, split_gguf

from helpers import next_logits


def test_split_loads_from_first_shard_and_merges_back(smollm, smollm_path, tmp_path):
    shards = split_gguf(smollm_path, tmp_path / "model.gguf", max_tensors=100)
    assert [s.name for s in shards] == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert split_paths(shards[1]) == shards
    info = inspect(shards[0])
    assert info.files == [str(s) for s in shards] and info.n_params == inspect(smollm_path).n_params
    assert info.metadata["split.count"] == 3
    with ikllama.ModelConfig().load_gguf(shards[0]) as split:
        assert split.n_params == smollm.n_params and split.size == smollm.size
        text = "The capital of France is"
        assert split.tokenize(text) == smollm.tokenize(text)
        with split.context().with_n_ctx(64).build() as a, smollm.context().with_n_ctx(64).build() as b:
            toks = smollm.tokenize(text)
            assert np.array_equal(next_logits(a, toks), next_logits(b, toks))
    merged = merge_gguf(shards[0], tmp_path / "merged.gguf")
    assert merged.read_bytes() == smollm_path.read_bytes()
    shards[2].unlink()
    with pytest.raises(FileNotFoundError, match="model-00003-of-00003.gguf"):
        inspect(shards[0])
    with pytest.raises(FileNotFoundError, match="model-00003-of-00003.gguf"):
        merge_gguf(shards[0], tmp_path / "again.gguf")


def test_ik_types_pass_through_by_size(smollm_path, tmp_path):
    r8 = tmp_path / "r8.gguf"
    quantize(smollm_path, r8, "Q8_0_R8", nthread=2, allow_requantize=True)
    shards = split_gguf(r8, tmp_path / "s.gguf", max_size="60M")
    assert len(shards) == 3 and all(s.stat().st_size < 64_000_000 for s in shards)
    assert merge_gguf(shards[0], tmp_path / "m.gguf").read_bytes() == r8.read_bytes()


def test_bad_arguments(smollm_path, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        split_gguf(smollm_path, tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="max_tensors"):
        split_gguf(smollm_path, tmp_path / "x.gguf", max_tensors=0)
    with pytest.raises(ValueError, match="500M"):
        parse_size("lots")
    assert parse_size("2G") == 2_000_000_000 and parse_size(123) == 123
    with pytest.raises(FileNotFoundError, match="does not exist"):
        split_gguf(smollm_path, tmp_path / "no" / "x.gguf", max_tensors=10)
    assert list(tmp_path.iterdir()) == []


def test_cli(smollm_path, tmp_path, capsys):
    assert cli_main(["gguf-split", str(smollm_path), str(tmp_path / "c.gguf"), "--split-max-tensors", "200"]) == 0
    first = tmp_path / "c-00001-of-00002.gguf"
    assert capsys.readouterr().out.splitlines()[0] == str(first)
    assert cli_main(["gguf-split", "--merge", str(first), str(tmp_path / "whole.gguf")]) == 0
    assert (tmp_path / "whole.gguf").read_bytes() == smollm_path.read_bytes()
    assert cli_main(["gguf-split", str(smollm_path), str(tmp_path / "d.gguf")]) == 2
