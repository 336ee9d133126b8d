"""ikllama.quantize: typed file types, validation before C, byte-identical output to ik's llama-quantize."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from ikllama.cli import main as cli_main
from ikllama.errors import UnsupportedConfigError
from ikllama.modelfile.quantize import FileType, QuantizeError, file_types, ggml_type_id, quantize

_QUANT_OPTION = re.compile(r'\{\s*"(\w+)",\s*LLAMA_FTYPE_(\w+),')
_FTYPE_ENUM = re.compile(r"^\s*LLAMA_FTYPE_(\w+)\s*=\s*(\d+),", re.M)


def _tool_quantize(tools, src, dst, ftype, *extra):
    t0 = time.perf_counter()
    subprocess.run([str(tools / "llama-quantize"), *extra, str(src), str(dst), ftype, "2"],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def test_file_types_are_exactly_llama_quantizes_list(vendor_tree):
    enum_values = {m[0]: int(m[1]) for m in _FTYPE_ENUM.findall((vendor_tree / "include" / "llama.h").read_text())}
    options = _QUANT_OPTION.findall((vendor_tree / "examples" / "quantize" / "quantize.cpp").read_text())
    listed = {name: enum_values[ft] for name, ft in options}
    for alias in ("Q3_K", "Q4_K", "Q5_K", "COPY"):
        assert FileType.parse(alias) == listed.pop(alias)
    assert {ft.name: int(ft) for ft in file_types()} == listed


def test_names_case_insensitive_bpw_and_errors():
    assert FileType.parse("iq4_ks") is FileType.IQ4_KS
    assert FileType.parse(" Q4_k_m ") is FileType.Q4_K_M
    assert FileType.parse("q4_k") is FileType.Q4_K_M
    assert FileType.parse(int(FileType.IQ2_KT)) is FileType.IQ2_KT
    assert FileType.IQ4_KS.bpw == 4.25 and FileType.Q8_0.bpw == 8.5 and FileType.IQ2_KT.bpw == 2.125
    assert FileType.IQ3_KT.bpw == 3.125 and FileType.Q4_K_M.main_type == "q4_K"
    with pytest.raises(ValueError, match="unknown file type 'iq4_kz'.*IQ4_KS"):
        FileType.parse("iq4_kz")
    with pytest.raises(ValueError, match="llama_ftype"):
        FileType.parse(4)
    with pytest.raises(ValueError, match="unknown tensor type"):
        ggml_type_id("q9_9")
    assert ggml_type_id("IQ4_KS") == ggml_type_id("iq4_ks")


@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q8_0_R8"])
def test_byte_identical_to_ik_llama_quantize(ik_tools, smollm_path, tmp_path, ftype):
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    tool_s = _tool_quantize(ik_tools, smollm_path, theirs, ftype, "--allow-requantize")
    t0 = time.perf_counter()
    result = quantize(smollm_path, ours, ftype, nthread=2, allow_requantize=True)
    ours_s = time.perf_counter() - t0
    assert ours.read_bytes() == theirs.read_bytes()
    assert result.path == ours and result.file_size == ours.stat().st_size
    print(f"{ftype}: llama-quantize {tool_s:.2f} s (process), ikllama.quantize {ours_s:.2f} s")
    assert sorted(tmp_path.iterdir()) == [ours, theirs]  # no temporary left


def test_dry_run_matches_real_run(smollm_path, tmp_path):
    dst = tmp_path / "out.gguf"
    dry = quantize(smollm_path, dst, "q4_k_m", nthread=2, allow_requantize=True, dry_run=True)
    assert dry.dry_run and dry.paths == [] and list(tmp_path.iterdir()) == []
    real = quantize(smollm_path, dst, "q4_k_m", nthread=2, allow_requantize=True)
    assert dry.tensor_types == real.tensor_types and len(real.tensor_types) == 272
    assert dry.tensor_bytes == real.tensor_bytes
    assert abs(dry.file_size - real.file_size) / real.file_size < 0.01
    assert {real.tensor_types[f"blk.{i}.ffn_down.weight"] for i in range(30)} <= {"q4_K", "q6_K"}


def test_ik_type_dry_run_types(smollm_path, tmp_path):
    # SmolLM2's rows (576) are not a multiple of IQ4_KS's 256-block: ik falls back per tensor, and says so
    r = quantize(smollm_path, tmp_path / "x.gguf", "IQ4_KS", allow_requantize=True, dry_run=True)
    assert r.tensor_types["blk.0.attn_q.weight"] == "iq4_nl"
    assert any("required fallback quantization" in line for line in r.log)
    assert 4.2 < r.bpw < 6.0


def test_quantized_source_refused_without_allow_requantize(smollm_path, tmp_path):
    with pytest.raises(QuantizeError, match="already quantized.*allow_requantize=True"):
        quantize(smollm_path, tmp_path / "x.gguf", "q8_0")
    assert list(tmp_path.iterdir()) == []


def test_native_failure_leaves_no_partial_file(smollm_path, tmp_path):
    # ik bails out half way (very low-bit type without an importance matrix); its tool leaves a partial file
    with pytest.raises(QuantizeError, match="importance matrix"):
        quantize(smollm_path, tmp_path / "x.gguf", "IQ2_KT", nthread=2, allow_requantize=True)
    assert list(tmp_path.iterdir()) == []


def test_bad_destination_and_source(smollm_path, tmp_path):
    with pytest.raises(QuantizeError, match="does not exist"):
        quantize(smollm_path, tmp_path / "nope" / "x.gguf", "q8_0", allow_requantize=True)
    with pytest.raises(QuantizeError, match="is the source"):
        quantize(smollm_path, smollm_path, "q8_0", allow_requantize=True)
    with pytest.raises(FileNotFoundError):
        quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf", "q8_0")
    with pytest.raises(UnsupportedConfigError, match="llama-quantize"):
        quantize(smollm_path, tmp_path / "x.gguf", "q8_0", imatrix=tmp_path / "i.dat")
    with pytest.raises(UnsupportedConfigError, match="tensor class"):
        quantize(smollm_path, tmp_path / "x.gguf", "q8_0", tensor_types=[(r"blk\.[0-3]\..*", "q8_0")])
    with pytest.raises(ValueError, match="nthread"):
        quantize(smollm_path, tmp_path / "x.gguf", "q8_0", nthread=-1)


def test_tensor_class_types_match_tool(ik_tools, smollm_path, tmp_path):
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    _tool_quantize(ik_tools, smollm_path, theirs, "Q4_K_S", "--allow-requantize", "--attn-v-type", "q8_0",
                   "--output-tensor-type", "q6_K")
    r = quantize(smollm_path, ours, "q4_k_s", nthread=2, allow_requantize=True, tensor_types={"attn_v": "q8_0"},
                 output_type="q6_K")
    assert {r.tensor_types[f"blk.{i}.attn_v.weight"] for i in range(30)} == {"q8_0"}
    assert ours.read_bytes() == theirs.read_bytes()


def test_progress_callable_sees_every_tensor(smollm_path, tmp_path):
    seen = []
    quantize(smollm_path, tmp_path / "x.gguf", "q8_0", nthread=2, allow_requantize=True,
             progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (272, 272)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cli(smollm_path, tmp_path, capsys):
    assert cli_main(["quantize", "--list-types"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^IQ4_KS\s+145\s+iq4_ks\s+4\.250", out, re.M)
    dst = tmp_path / "x.gguf"
    assert cli_main(["quantize", str(smollm_path), str(dst), "Q8_0", "--allow-requantize", "--nthread", "2",
                     "--tensor-type", "attn_v=q6_0", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out and dst.exists()
    assert cli_main(["quantize", str(smollm_path), str(dst), "q4_kk"]) == 1
    assert "unknown file type" in capsys.readouterr().err
    assert cli_main(["quantize", str(smollm_path), str(tmp_path / "y.gguf"), "Q8_0", "--tensor-type", "bad"]) == 1
