"""Hostile GGUF files: every rule of ``ikllama.check_gguf`` against a file that breaks it.

Each case writes a valid tiny llama (``ikllama.testing.hostile_gguf.tiny_llama``) with one field made
wrong, then asserts that both ``check_gguf`` and ``ModelConfig().load_gguf`` raise ``ModelLoadError``
naming the field and the rule -- without ik seeing the file, so the test process stays alive (each
case below would abort, divide by zero or read out of bounds inside ik otherwise; see
docs/reliability.md). Truncation is tested at every section boundary of the file.
"""

from __future__ import annotations

import random
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ikllama
from ikllama.errors import ModelLoadError
from ikllama.modelfile.check import check_gguf
from ikllama.modelfile.rules import GGML_TYPE_COUNT, GGML_TYPES, GGUFFormatError
from ikllama.testing.hostile_gguf import (T_ARRAY, T_BOOL, T_FLOAT32, T_INT32, T_STRING, T_UINT8, T_UINT32, Doc,
                                          Tensor, array, f32, i32, string, tiny_llama, u32, u64)

TOKENS = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]


def _kv(key: str, value):
    return lambda d: d.set(key, value)


def _tensor(i: int, **fields):
    def mutate(d: Doc) -> None:
        for k, v in fields.items():
            setattr(d.tensors[i], k, v)
    return mutate


def _set(**fields):
    def mutate(d: Doc) -> None:
        for k, v in fields.items():
            setattr(d, k, v)
    return mutate


def _raw_kv(key: str, vtype: int, payload: bytes):
    return lambda d: d.set(key, (vtype, payload))


def _dup_key(d: Doc) -> None:
    d.kv.append(("general.name", string("again")))


def _empty_key(d: Doc) -> None:
    d.kv.append((b"", u32(1)))


def _dup_tensor(d: Doc) -> None:
    d.tensors[4].name = d.tensors[3].name


def _truncate_data(d: Doc) -> None:
    d.data = d.data[:-100]


def _tokens(tokens: list[str], **extra):
    def mutate(d: Doc) -> None:
        n = len(tokens)
        d.set("tokenizer.ggml.tokens", array(T_STRING, tokens))
        d.set("tokenizer.ggml.scores", array(T_FLOAT32, [0.0] * n))
        d.set("tokenizer.ggml.token_type", array(T_INT32, [1] * n))
        for k, v in extra.items():
            d.set(k, v)
    return mutate


def _drop_specials(tokens: list[str]):
    def mutate(d: Doc) -> None:
        _tokens(tokens)(d)
        for name in ("bos", "eos", "unknown"):
            d.drop(f"tokenizer.ggml.{name}_token_id")
    return mutate


def _broken_string_array(d: Doc) -> None:
    body = struct.pack("<IQ", T_STRING, 3) + struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 1 << 40)
    d.set("tokenizer.ggml.merges", (T_ARRAY, body))


def _string_array_length_2_63(d: Doc) -> None:
    body = struct.pack("<IQ", T_STRING, 3) + struct.pack("<Q", (1 << 63) - 1) + b"a" * 64
    d.set("tokenizer.ggml.merges", (T_ARRAY, body))


def _nested_array(d: Doc) -> None:
    d.set("general.tags", (T_ARRAY, struct.pack("<IQ", T_ARRAY, 1) + array(T_UINT32, [1])[1]))


# (id, mutation, regex the message must match)
CASES = [
    # header
    ("bad-magic", _set(magic=b"GGUX"), r"not a GGUF file.*b'GGUX'|b'GGUX'.*not a GGUF file"),
    ("version-0", _set(version=0), r"version = 0.*versions 2 and 3"),
    ("version-1", _set(version=1), r"version = 1.*versions 2 and 3"),
    ("version-4", _set(version=4), r"version = 4.*versions 2 and 3"),
    ("version-big-endian", _set(version=0x03000000), r"version = 50331648.*big-endian"),
    ("n-tensors-2^63", _set(n_tensors=1 << 63), r"n_tensors = 9223372036854775808.*fit in the file"),
    ("n-tensors-plus-one", _set(n_tensors=22), r"tensor #21 name.*must be 1\.\.63 bytes|truncated"),
    ("n-kv-2^40", _set(n_kv=1 << 40), r"n_kv = 1099511627776.*fit in the file"),
    ("n-kv-max", _set(n_kv=(1 << 64) - 1), r"n_kv = 18446744073709551615"),
    ("n-kv-70000", _set(n_kv=70000), r"n_kv = 70000.*must be <= 65536"),
    # key/value structure
    ("empty-key", _empty_key, r"key #20 = ''.*keys must not be empty"),
    ("duplicate-key", _dup_key, r"general\.name = 'duplicate'.*each key may appear once"),
    ("value-type-13", _raw_kv("general.x", 13, b"\0" * 8), r"general\.x \(value type\) = 13.*0\.\.12"),
    ("value-type-max", _raw_kv("general.x", 0xFFFFFFFF, b"\0" * 8), r"value type\) = 4294967295"),
    ("array-of-arrays", _nested_array, r"general\.tags \(array element type\) = 'ARRAY'.*arrays of arrays"),
    ("array-elem-type-13", _raw_kv("general.x", T_ARRAY, struct.pack("<IQ", 13, 1) + b"\0" * 8),
     r"array element type\) = 13"),
    ("array-length-2^62", _raw_kv("tokenizer.ggml.scores", T_ARRAY, struct.pack("<IQ", T_FLOAT32, 1 << 62)),
     r"tokenizer\.ggml\.scores array length = 4611686018427387904.*must be <= 1073741824"),
    ("array-length-lies", _kv("tokenizer.ggml.scores", array(T_FLOAT32, [0.0] * 259, n=10_000_000)),
     r"tokenizer\.ggml\.scores array data = '40000000 bytes'.*truncated"),
    ("string-length-2^40", _raw_kv("general.name", T_STRING, struct.pack("<Q", 1 << 40)),
     r"general\.name length = 1099511627776.*must be <= 1073741824"),
    ("string-length-lies", _raw_kv("general.name", T_STRING, struct.pack("<Q", 1 << 29) + b"x"),
     r"general\.name = '536870912 bytes'.*truncated"),
    ("key-length-2^40", lambda d: d.kv.insert(0, (b"", (0, b""))) or setattr(d, "magic", b"GGUF"),
     r"key #0 = ''.*keys must not be empty"),
    ("string-array-count-2^29", _raw_kv("tokenizer.ggml.merges", T_ARRAY, struct.pack("<IQ", T_STRING, 1 << 29)),
     r"tokenizer\.ggml\.merges string array = '4294967296 bytes'.*truncated"),
    ("string-array-element-length", _broken_string_array,
     r"tokenizer\.ggml\.merges\[1\] length = 1099511627776.*truncated"),
    ("string-array-element-2^63", _string_array_length_2_63,  # found by scripts/fuzz_gguf.py
     r"tokenizer\.ggml\.merges\[0\] length = 9223372036854775807.*truncated"),
    # reserved general.* keys
    ("alignment-int32", _kv("general.alignment", i32(32)), r"general\.alignment = 'INT32'.*must be of type UINT32"),
    ("alignment-0", _kv("general.alignment", u32(0)), r"general\.alignment = 0.*power of two"),
    ("alignment-3", _kv("general.alignment", u32(3)), r"general\.alignment = 3.*power of two"),
    ("alignment-2^24", _kv("general.alignment", u32(1 << 24)), r"general\.alignment = 16777216.*<= 1048576"),
    ("file-type-int32", _kv("general.file_type", i32(0)), r"general\.file_type = 'INT32'.*UINT32"),
    ("architecture-u32", _kv("general.architecture", u32(1)), r"general\.architecture = 'UINT32'.*STRING"),
    # tensor infos
    ("n-dims-5", _tensor(0, ne=(16, 259, 1, 1, 1)), r"tensor 'token_embd\.weight' n_dims = 5.*<= 4"),
    ("n-dims-max", _tensor(0, n_dims=0xFFFFFFFF), r"n_dims = 4294967295.*<= 4"),
    ("ne-0", _tensor(1, ne=(0,)), r"tensor 'output_norm\.weight' ne\[0\] = 0.*>= 1"),
    ("ne-negative", _tensor(1, ne=(-1,)), r"ne\[0\] = -1.*>= 1"),
    ("ne-overflow", _tensor(0, ne=(1 << 32, 1 << 32)), r"token_embd\.weight' shape.*overflows int64"),
    ("type-400", _tensor(0, type=400), r"tensor 'token_embd\.weight' type = 400.*< 400"),
    ("type-2^31", _tensor(0, type=1 << 31), r"type = 2147483648.*< 400"),
    ("type-gap-4", _tensor(0, type=4), r"type = 4.*gap in ik's ggml_type list"),
    ("type-gap-5", _tensor(0, type=5), r"type = 5.*gap"),
    ("type-gap-42", _tensor(0, type=42), r"type = 42.*gap"),
    ("type-gap-143", _tensor(0, type=143), r"type = 143.*gap"),
    ("type-gap-396", _tensor(0, type=396), r"type = 396.*gap"),
    ("ne0-not-block-multiple", _tensor(0, type=2), r"token_embd\.weight' ne\[0\] = 16.*Q4_0 block size 32"),
    ("nbytes-overflow", _tensor(1, ne=(1 << 31, 1 << 31)), r"output_norm\.weight' byte size.*overflows int64"),
    ("offset-misaligned", _tensor(1, offset=4), r"output_norm\.weight' offset = 4.*multiple of general\.alignment"),
    ("offset-not-32-aligned", lambda d: (d.set("general.alignment", u32(4)), _tensor(1, offset=4)(d)),
     r"token_embd\.weight' offset = 0.*multiple of 32 \(data section at 7792\)"),  # found by scripts/fuzz_gguf.py
    ("offset-past-eof", _tensor(1, offset=1 << 40), r"output_norm\.weight' data.*past the end of the file"),
    ("offset-overlap", _tensor(2, offset=0), r"output\.weight' offset = 0.*overlaps the data of tensor "
                                              r"'token_embd\.weight'"),
    ("name-64-bytes", _tensor(1, name="x" * 64), r"tensor #1 name = 'x{64}'.*1\.\.63 bytes"),
    ("name-empty", _tensor(1, name=""), r"tensor #1 name = ''.*1\.\.63 bytes"),
    ("duplicate-tensor", _dup_tensor, r"tensor 'blk\.0\.attn_norm\.weight' = 'duplicate'.*unique"),
    ("data-truncated", _truncate_data, r"data.*past the end of the file"),
    # hyperparameters
    ("block-count-0", _kv("llama.block_count", u32(0)), r"llama\.block_count = 0.*1\.\.512"),
    ("block-count-513", _kv("llama.block_count", u32(513)), r"llama\.block_count = 513.*1\.\.512"),
    ("block-count-float", _kv("llama.block_count", f32(2.0)), r"llama\.block_count = 'FLOAT32'.*integer"),
    ("head-count-0", _kv("llama.attention.head_count", u32(0)), r"llama\.attention\.head_count = 0.*>= 1"),
    ("head-count-kv-3", _kv("llama.attention.head_count_kv", u32(3)), r"head_count_kv = 3.*divide.*\(2\)"),
    ("expert-count-513", _kv("llama.expert_count", u32(513)), r"llama\.expert_count = 513.*0\.\.512"),
    ("expert-used-gt-count", lambda d: (d.set("llama.expert_count", u32(4)), d.set("llama.expert_used_count",
                                        u32(5))), r"llama\.expert_used_count = 5.*expert_count \(4\)"),
    ("expert-used-0", _kv("llama.expert_count", u32(4)), r"llama\.expert_used_count = 0.*MoE"),
    ("expert-used-without-experts", _kv("llama.expert_used_count", u32(2)), r"expert_used_count = 2.*\(0\)"),
    ("rope-scaling-bogus", _kv("llama.rope.scaling.type", string("bogus")),
     r"llama\.rope\.scaling\.type = 'bogus'.*one of \('none', 'linear', 'yarn'\)"),
    ("rope-scaling-u32", _kv("llama.rope.scaling.type", u32(1)), r"rope\.scaling\.type = 'UINT32'.*STRING"),
    ("full-attention-interval-0", _kv("llama.full_attention_interval", u32(0)),
     r"llama\.full_attention_interval = 0.*divides by it"),
    ("moe-step-0", _kv("llama.interleave_moe_layer_step", u32(0)), r"interleave_moe_layer_step = 0"),
    ("head-count-float-array", _kv("llama.attention.head_count", array(T_FLOAT32, [2.0, 2.0])),
     r"llama\.attention\.head_count = 'ARRAY of FLOAT32'.*INT32 or UINT32 or BOOL"),
    ("ff-length-float-array", _kv("llama.feed_forward_length", array(T_FLOAT32, [32.0, 32.0])),
     r"llama\.feed_forward_length = 'ARRAY of FLOAT32'"),
    ("swiglu-int-array", _kv("llama.swiglu_limits", array(T_INT32, [1, 1])),
     r"llama\.swiglu_limits = 'ARRAY of INT32'.*FLOAT32"),
    # vocabulary
    ("tokens-scalar", _kv("tokenizer.ggml.tokens", u32(3)), r"tokenizer\.ggml\.tokens = 'UINT32'.*must be an array"),
    ("tokens-int-array", _kv("tokenizer.ggml.tokens", array(T_INT32, list(range(259)))),
     r"tokenizer\.ggml\.tokens = 'ARRAY of INT32'.*array of STRING"),
    ("merges-int-array", _kv("tokenizer.ggml.merges", array(T_INT32, [1, 2])), r"merges = 'ARRAY of INT32'"),
    ("scores-uint8", _kv("tokenizer.ggml.scores", array(T_UINT8, [0] * 259)),
     r"tokenizer\.ggml\.scores = 'ARRAY of UINT8'.*FLOAT32"),
    ("token-type-uint8", _kv("tokenizer.ggml.token_type", array(T_UINT8, [1] * 259)),
     r"token_type = 'ARRAY of UINT8'.*INT32 or UINT32"),
    ("token-type-float", _kv("tokenizer.ggml.token_type", array(T_FLOAT32, [1.0] * 259)),
     r"token_type = 'ARRAY of FLOAT32'"),
    ("scores-short", _kv("tokenizer.ggml.scores", array(T_FLOAT32, [0.0] * 10)),
     r"tokenizer\.ggml\.scores = '10 entries'.*one entry per token \(259\)"),
    ("duplicate-token", _tokens(TOKENS + ["<s>"]), r"tokenizer\.ggml\.tokens\[259\] = '<s>'.*unique"),
    ("empty-token-collision", _tokens(TOKENS + ["", "[EMPTY_259]"]),
     r"tokens\[260\] = '\[EMPTY_259\]'.*unique"),
    ("token-nul-duplicate", _tokens(TOKENS + ["<s>\0x"]),  # found by scripts/fuzz_gguf.py
     r"tokens\[259\] = '<s>'.*cut at a NUL byte"),
    ("tokens-empty", _tokens([]), r"tokenizer\.ggml\.tokens = '\[\]'.*at least one"),
    ("default-special-out-of-vocab", _drop_specials(["a", "b"]),
     r"tokenizer\.ggml\.eos_token_id = None.*llama default id 2.*vocabulary of 2 tokens"),
    ("gpt2-default-bos", lambda d: (_drop_specials(["a", "b", "c"])(d), d.set("tokenizer.ggml.model",
                                    string("gpt2"))), r"bos_token_id = None.*gpt2 default id 11"),
    ("spm-missing-byte-tokens", _tokens(["<unk>", "<s>", "</s>", "hello"]),
     r"tokenizer\.ggml\.tokens = '0 of 256 byte tokens'.*first missing: <0x00>"),
    ("charsmap-u32", _kv("tokenizer.ggml.precompiled_charsmap", array(T_UINT32, [1, 2])),
     r"precompiled_charsmap = 'ARRAY of UINT32'.*UINT8 or INT8"),
    ("charsmap-short", _kv("tokenizer.ggml.precompiled_charsmap", array(T_UINT8, [1, 2])),
     r"precompiled_charsmap = '2 bytes'.*>= 4 bytes"),
    ("plamo2-byte-token", _tokens(TOKENS + ["<0x-1>"], **{"tokenizer.ggml.model": string("plamo2"),
                                                          "tokenizer.ggml.padding_token_id": u32(0)}),
     r"tokens\[259\] = '<0x-1>'.*two hex digits"),
    ("bert-byte-token", _kv("tokenizer.ggml.model", string("bert")),
     r"tokenizer\.ggml\.token_type\[3\] = 6.*bert vocabulary has no byte tokens"),
    ("tokenizer-model-u32", _kv("tokenizer.ggml.model", u32(0)), r"tokenizer\.ggml\.model = 'UINT32'.*STRING"),
    ("special-id-float", _kv("tokenizer.ggml.bos_token_id", f32(1.0)), r"bos_token_id = 'FLOAT32'.*integer"),
]

assert len({c[0] for c in CASES}) == len(CASES)


def _written(tmp_path: Path, mutate) -> Path:
    doc = tiny_llama()
    mutate(doc)
    path = tmp_path / "hostile.gguf"
    doc.write(path)
    return path


def test_tiny_llama_is_valid_and_loads(tmp_path):
    path = tmp_path / "tiny.gguf"
    tiny_llama().write(path)
    summary = check_gguf(path)
    assert (summary.n_tensors, summary.architecture) == (21, "llama")
    with ikllama.ModelConfig().load_gguf(path) as model:
        assert model.n_vocab == 259
        # no "\u2581" token in this vocabulary: SPM's space marker comes back through byte tokens
        text = model.detokenize(model.tokenize("hi \u4e2d", add_special=False))
        assert text.replace("\u2581", " ").strip() == "hi \u4e2d"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_gguf_is_refused(tmp_path, case):
    _, mutate, pattern = case
    path = _written(tmp_path, mutate)
    with pytest.raises(GGUFFormatError, match=pattern) as info:
        check_gguf(path)
    assert "re-download or re-convert" in str(info.value)
    assert info.value.field and info.value.rule
    # the load path runs the same validator before ik sees the file
    with pytest.raises(ModelLoadError, match=pattern):
        ikllama.ModelConfig(vocab_only=True).load_gguf(path)


def _boundaries() -> list[tuple[str, int]]:
    _, marks = tiny_llama().serialize()
    cuts = [("0", 0), ("3", 3)]
    for name, off in marks.items():
        if name != "end":
            cuts.append((f"{name}-1", off - 1))
            cuts.append((name, off))
    cuts.append(("end-1", marks["end"] - 1))
    return [c for c in cuts if c[1] >= 0]


BOUNDARIES = _boundaries()


@pytest.mark.parametrize("cut", BOUNDARIES, ids=[c[0] for c in BOUNDARIES])
def test_truncated_at_every_section_boundary(tmp_path, cut):
    data, _ = tiny_llama().serialize()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:cut[1]])
    with pytest.raises(GGUFFormatError, match=r"truncated|past the end|not a GGUF file"):
        check_gguf(path)
    with pytest.raises(ModelLoadError):
        ikllama.ModelConfig(vocab_only=True).load_gguf(path)


def test_process_still_loads_after_hostile_files(tmp_path):
    for _, mutate, _ in CASES[:20]:
        with pytest.raises(ModelLoadError):
            ikllama.ModelConfig().load_gguf(_written(tmp_path, mutate))
    good = tmp_path / "good.gguf"
    tiny_llama().write(good)
    with ikllama.ModelConfig().load_gguf(good) as model:
        assert model.tokenize("ok", add_special=False)


def test_real_models_pass(smollm_path, gemma_path, vendor_tree):
    files = [smollm_path, gemma_path] + sorted((vendor_tree / "models").glob("ggml-vocab-*.gguf"))
    assert len(files) >= 18
    for path in files:
        summary = check_gguf(path)
        assert summary.n_kv > 10 and "tokenizer.ggml.tokens" in summary.kv, path
    assert check_gguf(smollm_path).n_tensors == 272


def _header_enum(vendor_tree: Path) -> dict[int, str]:
    text = (vendor_tree / "ggml" / "include" / "ggml.h").read_text()
    body = text[text.index("enum ggml_type {"):text.index("GGML_TYPE_COUNT,")]
    return {int(v): n for n, v in re.findall(r"^\s*GGML_TYPE_(\w+)\s*=\s*(\d+)\s*,", body, re.M)}


def test_type_table_matches_vendored_header_and_library(vendor_tree):
    from ikllama._lib import lib

    enum = _header_enum(vendor_tree)
    assert {t: v[0] for t, v in GGML_TYPES.items()} == enum
    for t in range(GGML_TYPE_COUNT):
        blck = lib.ggml_blck_size(t)
        if t not in GGML_TYPES:
            assert blck == 0, f"type {t} is a gap in the table but ik gives it block size {blck}"
            continue
        _, b, size, meta = GGML_TYPES[t]
        assert (blck, lib.ggml_type_size(t), lib.ggml_row_size(t, b) - lib.ggml_type_size(t)) == (b, size, meta), t


def test_untrusted_probe_loads_in_child(tmp_path):
    path = tmp_path / "tiny.gguf"
    tiny_llama().write(path)
    with ikllama.ModelConfig(untrusted=True).load_gguf(path) as model:
        assert model.n_vocab == 259


def test_untrusted_probe_survives_a_child_that_dies(tmp_path):
    """A file ik kills the process on after a validator bypass: the probe reports the signal."""
    from ikllama.modelfile.untrusted import probe_in_child

    path = _written(tmp_path, _tokens(["<unk>", "<s>", "</s>", "hello"]))
    code = ("import sys, ikllama.modelfile.rules as r; r.check_metadata = lambda *a: None; "
            "import ikllama.modelfile.untrusted as u; sys.exit(u._child_main(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120,
                          env=__import__("ikllama.modelfile.untrusted", fromlist=["_child_env"])._child_env())
    assert proc.returncode < 0 and b"out_of_range" in proc.stderr  # ik terminates on the byte fallback
    with pytest.raises(ModelLoadError, match="byte tokens"):
        probe_in_child(path)


def test_cli_check(tmp_path, capsys):
    from ikllama.cli import main

    good = tmp_path / "good.gguf"
    tiny_llama().write(good)
    assert main(["check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = _written(tmp_path, _kv("general.alignment", u32(0)))
    assert main(["check", str(bad)]) == 1
    assert "general.alignment = 0" in capsys.readouterr().err


def test_cli_check_untrusted_json(tmp_path, capsys):
    import json

    from ikllama.cli import main

    good = tmp_path / "good.gguf"
    tiny_llama().write(good)
    assert main(["check", "--untrusted", "--json", str(good)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["probe"]["n_vocab"] == 259 and out["n_tensors"] == 21


def test_bounded_reads_never_allocate_by_count(tmp_path):
    """Counts of 2^63 in every count field fail fast (no allocation, no long loop)."""
    import time

    for mutate in (_set(n_kv=1 << 63), _set(n_tensors=1 << 63),
                   _raw_kv("x", T_ARRAY, struct.pack("<IQ", T_BOOL, 1 << 63)),
                   _raw_kv("x", T_ARRAY, struct.pack("<IQ", T_STRING, (1 << 30))),
                   _tensor(0, n_dims=1 << 31)):
        path = _written(tmp_path, mutate)
        t0 = time.perf_counter()
        with pytest.raises(GGUFFormatError):
            check_gguf(path)
        assert time.perf_counter() - t0 < 0.5


def test_u64_helper_roundtrip():
    assert u64(5) == (10, struct.pack("<Q", 5))
    assert Tensor("a", (1,)).n_dims is None


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_fuzz_mutants_never_kill_a_child(tmp_path_factory, seed):
    """The CI form of scripts/fuzz_gguf.py: mutants of the tiny llama, each loaded in a forked child."""
    from ikllama.testing.gguf_fuzz import mutate, run_one

    rng = random.Random(seed)
    data = mutate(tiny_llama(), rng)
    outcome = run_one(data, tmp_path_factory.mktemp("fz"), full=True)
    assert not outcome.died and outcome.kind != "leak", (seed, outcome)


@pytest.mark.parametrize("case", ["type-gap-42", "n-dims-5", "ne-0", "type-400", "ne-overflow", "alignment-0",
                                  "alignment-int32", "alignment-3"])
def test_patched_parser_refuses_without_the_validator(tmp_path, case):
    """vendor/patches/0011: ik's own GGUF parser returns NULL (no abort, no SIGFPE) for these files."""
    from ikllama.testing.gguf_fuzz import run_one

    mutate = dict((c[0], c[1]) for c in CASES)[case]
    doc = tiny_llama()
    mutate(doc)
    outcome = run_one(doc.serialize()[0], tmp_path, full=False, raw=True)
    assert outcome.kind == "refused", outcome
