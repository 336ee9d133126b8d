"""Tables and metadata rules used by :func:`ikllama.modelfile.check.check_gguf`.

The tensor type table mirrors ``enum ggml_type`` of the vendored ik_llama.cpp
(``ggml/include/ggml.h``) together with ik's ``type_traits`` block size, type size and row
metadata size; ``tests/test_gguf_check.py`` cross-checks it against the header and against
``ggml_blck_size`` / ``ggml_type_size`` / ``ggml_row_size`` of the built library. Ids missing
from the table are the gaps in ik's enum, where ``ggml_blck_size`` is 0 and ik divides by it.

The metadata rules cover what ik's model loader, hparams loader and vocabulary loader assert on
(or divide by) instead of throwing; every rule raises :class:`GGUFFormatError` naming the field,
the value and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ModelLoadError

__all__ = ["GGUFFormatError", "GGML_TYPES", "VALUE_TYPE_NAMES", "check_metadata"]

# name, block size, type size, row meta size (bytes before each row), per ggml_type id
GGML_TYPES: dict[int, tuple[str, int, int, int]] = {
    0: ("F32", 1, 4, 0), 1: ("F16", 1, 2, 0), 2: ("Q4_0", 32, 18, 0), 3: ("Q4_1", 32, 20, 0),
    6: ("Q5_0", 32, 22, 0), 7: ("Q5_1", 32, 24, 0), 8: ("Q8_0", 32, 34, 0), 9: ("Q8_1", 32, 36, 0),
    10: ("Q2_K", 256, 84, 0), 11: ("Q3_K", 256, 110, 0), 12: ("Q4_K", 256, 144, 0),
    13: ("Q5_K", 256, 176, 0), 14: ("Q6_K", 256, 210, 0), 15: ("Q8_K", 256, 296, 0),
    16: ("IQ2_XXS", 256, 66, 0), 17: ("IQ2_XS", 256, 74, 0), 18: ("IQ3_XXS", 256, 98, 0),
    19: ("IQ1_S", 256, 50, 0), 20: ("IQ4_NL", 32, 18, 0), 21: ("IQ3_S", 256, 110, 0),
    22: ("IQ2_S", 256, 82, 0), 23: ("IQ4_XS", 256, 136, 0), 24: ("I8", 1, 1, 0), 25: ("I16", 1, 2, 0),
    26: ("I32", 1, 4, 0), 27: ("I64", 1, 8, 0), 28: ("F64", 1, 8, 0), 29: ("IQ1_M", 256, 56, 0),
    30: ("BF16", 1, 2, 0), 31: ("Q4_0_4_4", 32, 18, 0), 32: ("Q4_0_4_8", 32, 18, 0),
    33: ("Q4_0_8_8", 32, 18, 0), 36: ("I2_S", 1, 1, 0), 39: ("MXFP4", 32, 17, 0),
    41: ("Q1_0_G128", 128, 18, 0), 97: ("Q8_0_X4", 32, 34, 0), 98: ("Q8_1_X4", 32, 36, 0),
    99: ("Q8_2_X4", 32, 36, 0), 133: ("Q6_0", 32, 26, 0), 134: ("IQ1_BN", 64, 13, 2),
    135: ("IQ2_BN", 64, 16, 4), 136: ("Q8_K64", 64, 68, 0), 137: ("IQ2_K", 256, 76, 0),
    138: ("IQ3_K", 256, 110, 0), 139: ("IQ4_K", 256, 144, 0), 140: ("IQ5_K", 256, 176, 0),
    141: ("IQ6_K", 256, 212, 0), 144: ("IQ4_KS", 256, 136, 4), 145: ("IQ2_KS", 256, 70, 2),
    146: ("IQ4_KSS", 256, 128, 4), 147: ("Q8_K16", 64, 64, 20), 148: ("Q8_K32", 256, 296, 0),
    149: ("Q8_KR8", 256, 296, 0), 150: ("Q8_K128", 128, 140, 0), 151: ("Q8_KV", 32, 32, 8),
    152: ("IQ5_KS", 256, 168, 4), 153: ("IQ2_KT", 256, 68, 4), 154: ("IQ3_KT", 256, 100, 4),
    155: ("IQ4_KT", 256, 128, 4), 156: ("IQ3_KS", 256, 102, 2), 157: ("IQ2_KL", 256, 86, 2),
    158: ("IQ1_KT", 256, 56, 4), 202: ("Q4_0_R8", 32, 18, 0), 206: ("Q5_0_R4", 32, 22, 0),
    208: ("Q8_0_R8", 32, 34, 0), 210: ("Q2_K_R4", 256, 84, 0), 211: ("Q3_K_R4", 256, 110, 0),
    212: ("Q4_K_R4", 256, 144, 0), 213: ("Q5_K_R4", 256, 176, 0), 214: ("Q6_K_R4", 256, 210, 0),
    216: ("IQ2_XXS_R4", 256, 66, 0), 217: ("IQ2_XS_R4", 256, 74, 0), 218: ("IQ3_XXS_R4", 256, 98, 0),
    219: ("IQ1_S_R4", 32, 6, 2), 220: ("IQ4_NL_R4", 32, 18, 0), 221: ("IQ3_S_R4", 256, 110, 0),
    222: ("IQ2_S_R4", 256, 82, 0), 223: ("IQ4_XS_R8", 256, 136, 0), 229: ("IQ1_M_R4", 32, 7, 2),
    230: ("BF16_R16", 1, 2, 0), 233: ("Q6_0_R4", 32, 26, 0), 335: ("IQ2_BN_R4", 64, 16, 4),
    337: ("IQ2_K_R4", 256, 76, 0), 338: ("IQ3_K_R4", 256, 110, 0), 339: ("IQ4_K_R4", 256, 144, 0),
    340: ("IQ5_K_R4", 256, 176, 0), 344: ("IQ4_KS_R4", 256, 136, 4), 352: ("IQ5_KS_R4", 256, 168, 4),
    397: ("Q8_K_R16", 256, 258, 0), 398: ("Q8_KV_R8", 32, 32, 4), 399: ("Q8_K_R8", 256, 258, 0),
}
GGML_TYPE_COUNT = 400
GGML_TYPE_I2_S = 36

# GGUF value types: name and fixed element size (None: variable / container)
VALUE_TYPE_NAMES = ("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING",
                    "ARRAY", "UINT64", "INT64", "FLOAT64")
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
T_UINT8, T_INT8 = 0, 1
INTEGER_TYPES = frozenset({0, 1, 2, 3, 4, 5, 10, 11})

LLAMA_MAX_LAYERS = 512
LLAMA_MAX_EXPERTS = 512
ROPE_SCALING_TYPES = ("none", "linear", "yarn")

# per-layer keys ik reads with get_key_or_arr / get_arr into integer or float arrays
_INT_ARRAY_KEYS = ("feed_forward_length", "attention.head_count", "attention.head_count_kv",
                   "attention.sliding_window_pattern", "rope.dimension_sections",
                   "rope.dimension_count_per_layer")
_FLOAT_ARRAY_KEYS = ("swiglu_limits", "swiglu_limits_shared", "swiglu_clamp_exp", "swiglu_clamp_shexp",
                     "rope.freq_base_per_layer")

# default special-token ids per tokenizer model (src/llama-vocab.cpp), used unless a valid key overrides
_DEFAULT_SPECIALS: dict[str, dict[str, int]] = {
    "llama": {"bos": 1, "eos": 2, "unknown": 0},
    "bert": {"bos": 101, "unknown": 100, "seperator": 102, "padding": 0, "mask": 103},
    "gpt2": {"bos": 11, "eos": 11},
    "t5": {"eos": 1, "unknown": 2, "padding": 0},
    "plamo2": {"bos": 1, "eos": 2, "unknown": 0, "padding": 3},
}
TOKEN_TYPE_BYTE = 6
# vocab types whose token_to_byte aborts: WPM, RWKV, PLaMo-2
_NO_BYTE_TOKENS = ("bert", "rwkv", "plamo2")
_SPECIAL_NAMES = ("bos", "eos", "unknown", "seperator", "padding", "mask", "eot", "eom", "cls",
                  "prefix", "suffix", "middle", "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep",
                  "fim_sep")


class GGUFFormatError(ModelLoadError):
    """A GGUF file broke a rule that ik_llama.cpp would abort (or misbehave) on.

    ``field`` names the header field, key or tensor; ``value`` is what the file holds; ``rule``
    says what was expected; ``offset`` is the byte offset in the file, when known.
    """

    def __init__(self, path: Any, field: str, value: Any, rule: str, offset: int | None = None):
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"could not load {path}: {field} = {value!r}{where}: {rule}. The file is corrupt or was "
                         f"crafted to crash the loader; re-download or re-convert it (ikllama refused it before "
                         f"ik_llama.cpp saw it)")
        self.path, self.field, self.value, self.rule, self.offset = path, field, value, rule, offset


@dataclass
class KV:
    """One metadata entry: ``type``; for scalars ``value``; for arrays ``elem`` type, count ``n``,
    ``data`` offset of the elements and, for string arrays, the decoded ``items`` (bytes)."""

    type: int
    offset: int
    value: Any = None
    elem: int = -1
    n: int = 0
    data: int = 0
    items: list[bytes] | None = None
    values: Any = None  # numpy copy of a numeric array's elements


def _type_name(t: int) -> str:
    return VALUE_TYPE_NAMES[t] if 0 <= t < len(VALUE_TYPE_NAMES) else str(t)


def _scalar_int(path: Any, kvs: dict[str, KV], key: str) -> int | None:
    kv = kvs.get(key)
    if kv is None:
        return None
    if kv.type == T_ARRAY:
        return None
    if kv.type not in INTEGER_TYPES:
        raise GGUFFormatError(path, key, _type_name(kv.type), "must be an integer", kv.offset)
    return int(kv.value)


def _expect_type(path: Any, kvs: dict[str, KV], key: str, types: tuple[int, ...]) -> KV | None:
    kv = kvs.get(key)
    if kv is not None and kv.type not in types:
        raise GGUFFormatError(path, key, _type_name(kv.type),
                              f"must be of type {' or '.join(_type_name(t) for t in types)}", kv.offset)
    return kv


def _expect_array(path: Any, kvs: dict[str, KV], key: str, elems: tuple[int, ...]) -> KV | None:
    kv = kvs.get(key)
    if kv is None:
        return None
    if kv.type != T_ARRAY:
        raise GGUFFormatError(path, key, _type_name(kv.type), "must be an array", kv.offset)
    if kv.elem not in elems:
        raise GGUFFormatError(path, key, f"ARRAY of {_type_name(kv.elem)}",
                              f"must be an array of {' or '.join(_type_name(t) for t in elems)}", kv.offset)
    return kv


def _check_general(path: Any, kvs: dict[str, KV]) -> str | None:
    kv = _expect_type(path, kvs, "general.alignment", (T_UINT32,))
    if kv is not None and (kv.value == 0 or kv.value & (kv.value - 1) or kv.value > 1 << 20):
        raise GGUFFormatError(path, "general.alignment", kv.value, "must be a power of two <= 1048576", kv.offset)
    _expect_type(path, kvs, "general.file_type", (T_UINT32,))
    kv = _expect_type(path, kvs, "general.architecture", (T_STRING,))
    return kv.value if kv is not None else None


def _check_hparams(path: Any, kvs: dict[str, KV], arch: str) -> None:
    p = arch + "."
    n_layer = _scalar_int(path, kvs, p + "block_count")
    if n_layer is not None and not 1 <= n_layer <= LLAMA_MAX_LAYERS:
        raise GGUFFormatError(path, p + "block_count", n_layer, f"must be 1..{LLAMA_MAX_LAYERS}",
                              kvs[p + "block_count"].offset)
    for suffix in _INT_ARRAY_KEYS:
        kv = kvs.get(p + suffix)
        if kv is not None and kv.type == T_ARRAY:
            _expect_array(path, kvs, p + suffix, (T_INT32, T_UINT32, T_BOOL))
    for suffix in _FLOAT_ARRAY_KEYS:
        kv = kvs.get(p + suffix)
        if kv is not None and kv.type == T_ARRAY:
            _expect_array(path, kvs, p + suffix, (T_FLOAT32,))
    n_expert = _scalar_int(path, kvs, p + "expert_count") or 0
    n_used = _scalar_int(path, kvs, p + "expert_used_count") or 0
    if not 0 <= n_expert <= LLAMA_MAX_EXPERTS:
        raise GGUFFormatError(path, p + "expert_count", n_expert, f"must be 0..{LLAMA_MAX_EXPERTS}")
    if n_used < 0 or n_used > n_expert or (n_expert > 0 and n_used == 0):
        raise GGUFFormatError(path, p + "expert_used_count", n_used,
                              f"must be 1..expert_count ({n_expert}) for an MoE model and 0 otherwise")
    n_head = _scalar_int(path, kvs, p + "attention.head_count")
    n_head_kv = _scalar_int(path, kvs, p + "attention.head_count_kv")
    if n_layer is not None and n_head is not None and n_head < 1:
        raise GGUFFormatError(path, p + "attention.head_count", n_head, "must be >= 1")
    if n_head and n_head_kv is not None and (n_head_kv < 0 or (n_head_kv and n_head % n_head_kv)):
        raise GGUFFormatError(path, p + "attention.head_count_kv", n_head_kv,
                              f"must divide attention.head_count ({n_head})")
    interval = _scalar_int(path, kvs, p + "full_attention_interval")
    if interval is not None and interval < 1:
        raise GGUFFormatError(path, p + "full_attention_interval", interval, "must be >= 1 (ik divides by it)")
    step = _scalar_int(path, kvs, p + "interleave_moe_layer_step")
    if step is not None and step < 1:
        raise GGUFFormatError(path, p + "interleave_moe_layer_step", step, "must be >= 1 (ik divides by it)")
    kv = _expect_type(path, kvs, p + "rope.scaling.type", (T_STRING,))
    if kv is not None and kv.value not in ROPE_SCALING_TYPES:
        raise GGUFFormatError(path, p + "rope.scaling.type", kv.value, f"must be one of {ROPE_SCALING_TYPES}",
                              kv.offset)


def _check_vocab(path: Any, kvs: dict[str, KV]) -> None:
    model_kv = _expect_type(path, kvs, "tokenizer.ggml.model", (T_STRING,))
    model = model_kv.value if model_kv is not None else None
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "tokenizer.ggml.precompiled_charsmap"):
        if key in kvs and kvs[key].type != T_ARRAY:
            raise GGUFFormatError(path, key, _type_name(kvs[key].type), "must be an array", kvs[key].offset)
    tokens = _expect_array(path, kvs, "tokenizer.ggml.tokens", (T_STRING,))
    _expect_array(path, kvs, "tokenizer.ggml.merges", (T_STRING,))
    _expect_array(path, kvs, "tokenizer.ggml.scores", (T_FLOAT32,))
    _expect_array(path, kvs, "tokenizer.ggml.token_type", (T_INT32, T_UINT32))
    cmap = _expect_array(path, kvs, "tokenizer.ggml.precompiled_charsmap", (T_UINT8, T_INT8))
    if cmap is not None and cmap.n < 4:
        raise GGUFFormatError(path, "tokenizer.ggml.precompiled_charsmap", f"{cmap.n} bytes", "must hold >= 4 bytes",
                              cmap.offset)
    if tokens is None or model in (None, "no_vocab", "none"):
        return
    items = tokens.items or []
    n_tokens = len(items)
    if n_tokens == 0:
        raise GGUFFormatError(path, "tokenizer.ggml.tokens", "[]", "must hold at least one token", tokens.offset)
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        kv = kvs.get(key)
        if kv is not None and kv.n < n_tokens:
            raise GGUFFormatError(path, key, f"{kv.n} entries", f"must have one entry per token ({n_tokens})",
                                  kv.offset)
    ttype = kvs.get("tokenizer.ggml.token_type")
    if model in _NO_BYTE_TOKENS and ttype is not None and ttype.values is not None:
        byte_ids = (ttype.values[:n_tokens] == TOKEN_TYPE_BYTE).nonzero()[0]
        if len(byte_ids):
            raise GGUFFormatError(path, f"tokenizer.ggml.token_type[{int(byte_ids[0])}]", TOKEN_TYPE_BYTE,
                                  f"a {model} vocabulary has no byte tokens (ik aborts in token_to_byte)",
                                  ttype.offset)
    # ik reads each token as a C string (cut at the first NUL) and renames an empty one "[EMPTY_<id>]";
    # two tokens equal after that abort the load
    odd = not all(items) or b"\0" in b"".join(items)
    texts = [t.split(b"\0", 1)[0] or b"[EMPTY_%d]" % i for i, t in enumerate(items)] if odd else items
    seen: set[bytes] = set(texts)
    if len(seen) != n_tokens:
        seen = set()
        for i, t in enumerate(texts):
            if t in seen:
                raise GGUFFormatError(path, f"tokenizer.ggml.tokens[{i}]", t.decode("utf-8", "replace"),
                                      "token strings must be unique (as C strings, cut at a NUL byte)",
                                      tokens.offset)
            seen.add(t)
    if model == "plamo2":
        for i, t in enumerate(items):
            if t.startswith(b"<0x") and not (len(t) == 6 and t.endswith(b">") and
                                              all(c in b"0123456789abcdefABCDEF" for c in t[3:5])):
                raise GGUFFormatError(path, f"tokenizer.ggml.tokens[{i}]", t.decode("utf-8", "replace"),
                                      "a plamo2 byte token must be <0xHH> with two hex digits", tokens.offset)
    overridden: dict[str, bool] = {}
    for name in _SPECIAL_NAMES:
        key = f"tokenizer.ggml.{name}_token_id"
        tid = _scalar_int(path, kvs, key)
        overridden[name] = tid is not None and 0 <= tid < n_tokens
    for name, default in _DEFAULT_SPECIALS.get(model, {}).items():
        if not overridden.get(name) and default >= n_tokens:
            raise GGUFFormatError(path, f"tokenizer.ggml.{name}_token_id", None,
                                  f"absent or out of range, and the {model} default id {default} is outside "
                                  f"the vocabulary of {n_tokens} tokens", tokens.offset)
    if model == "llama":
        # byte_to_token tries "<0xHH>", then the raw byte, with .at() (throws inside llama_tokenize)
        missing = [b for b in range(256) if b"<0x%02X>" % b not in seen and bytes([b]) not in seen]
        if missing:
            raise GGUFFormatError(path, "tokenizer.ggml.tokens", f"{256 - len(missing)} of 256 byte tokens",
                                  f"an SPM ('llama') vocabulary needs every byte token <0x00>..<0xFF> "
                                  f"(or the raw byte; first missing: <0x{missing[0]:02X}>); ik terminates on "
                                  f"the first text that needs one", tokens.offset)


def check_metadata(path: Any, kvs: dict[str, KV]) -> None:
    """Apply the metadata rules to parsed key/values (pure Python; no C call)."""
    arch = _check_general(path, kvs)
    if arch is not None:
        _check_hparams(path, kvs, arch)
    _check_vocab(path, kvs)
