"""A tiny GLM4-MoE GGUF with one NextN (MTP) layer, written in a second, to test MTP without a 100 GB model.

Layout (:data:`SHAPE`), as ik's loader (``create_glm4_moe_tensors``) and ``build_glm4_moe`` expect:

- blocks 0 .. n_layer-1 where block 0 is dense (``leading_dense_block_count``), block 1 is MoE and the
  last block (index 2) is the NextN layer: a full MoE block plus the ``blk.2.nextn.*`` tensors
  (``eh_proj``, ``embed_tokens``, ``enorm``, ``hnorm``, ``shared_head_head``, ``shared_head_norm``);
  ``glm4moe.nextn_predict_layers = 1``;
- attention with Q/K/V biases and Q/K norms, 4 query heads and 2 KV heads of 64, RoPE over 32 dims;
- 4 routed experts (2 used, sigmoid gating, ``exp_probs_b``) of width 64 plus one shared expert;
- the tokenizer: every ``tokenizer.*`` key of a vocab GGUF, by default ik's vendored GPT-2 one
  (50257 tokens). The four vocab-sized matrices are Q8_0 (F16 would pass 20 MB), the rest F32.

Variants:

- ``"random"``: every weight random, so the NextN head is unrelated to the main model.
- ``"predictive"``: after token ``t`` the main model emits ``g[t]`` (``g`` = :func:`successor_table`),
  and the NextN head, given token ``t``, also predicts ``g[t]``, so MTP drafts are always accepted.
  Attention output and all FFN down projections are zero, so each block adds nothing to the residual
  stream (the builders add the block input back) and the final hidden state is ``E[t]``. ``E`` has
  rows of RMS 1, which RMSNorm leaves unchanged, and ``output[s] = E[g^-1(s)]``, so the largest logit is
  ``|E[t]|^2`` at ``g[t]``. In the NextN block ``eh_proj = [I | 0]`` keeps the ``enorm(E[t])`` half of
  ``concat(enorm(emb), hnorm(hidden))`` and drops the hidden half; the block adds nothing again, and
  ``shared_head_head = output``.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ARCH", "SHAPE", "TinyShape", "default_vocab", "successor_table", "write_tiny_glm4moe"]

log = logging.getLogger(__name__)

ARCH = "glm4moe"  # ik's LLM_ARCH_GLM4_MOE name, the only architecture with an MTP graph


@dataclass(frozen=True)
class TinyShape:
    """Hyperparameters of the tiny model (ik's head-size and Q8_0 block constraints hold: 64 % 32 == 0)."""

    n_layer: int = 3  # NextN block included: it is the last index
    n_dense_lead: int = 1
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    n_rot: int = 32
    n_ff: int = 128  # dense FFN
    n_expert: int = 4
    n_expert_used: int = 2
    n_expert_shared: int = 1
    n_ff_exp: int = 64
    rms_eps: float = 1e-5
    n_ctx_train: int = 4096
    rope_freq_base: float = 1e6


SHAPE = TinyShape()

_STD = 0.02  # weights of the random parts
_GATING_SIGMOID = 2  # LLM_EXPERT_GATING_FUNC_SIGMOID
_TOKEN_NORMAL = 1  # LLAMA_TOKEN_TYPE_NORMAL

# GGUF value types: struct format of the scalars, numpy dtype of numeric arrays.
_STRING, _ARRAY = 8, 9
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_DTYPE = {0: "u1", 1: "i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8",
          12: "<f8"}


def default_vocab() -> Path:
    """ik's GPT-2 vocab GGUF: installed beside this module by the build, or in the source checkout."""
    name = "ggml-vocab-gpt-2.gguf"
    here = Path(__file__).resolve()
    for candidate in (here.with_name(name), here.parents[3] / "vendor" / "ik_llama.cpp" / "models" / name):
        if candidate.exists():
            return candidate
    return here.with_name(name)


def _read_tokenizer_kv(path: Path) -> dict[str, tuple[int, Any, int | None]]:
    """The ``tokenizer.*`` metadata of a GGUF as {key: (type, value, array item type)}.

    A direct parse of the header: ``gguf.GGUFReader`` takes about 5 s on a 50k-token vocab.
    """
    data = path.read_bytes()
    magic, version, _n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    if magic != b"GGUF" or version < 2:
        raise ValueError(f"{path} is not a GGUF v2+ file")
    off = 24

    def string(at: int) -> tuple[bytes, int]:
        (n,) = struct.unpack_from("<Q", data, at)
        return data[at + 8:at + 8 + n], at + 8 + n

    def scalar(vtype: int, at: int) -> tuple[Any, int]:
        if vtype == _STRING:
            return string(at)
        fmt = _SCALAR[vtype]
        return struct.unpack_from(fmt, data, at)[0], at + struct.calcsize(fmt)

    out: dict[str, tuple[int, Any, int | None]] = {}
    for _ in range(n_kv):
        raw_key, off = string(off)
        key = raw_key.decode("utf-8")
        (vtype,) = struct.unpack_from("<I", data, off)
        off += 4
        if vtype != _ARRAY:
            value, off = scalar(vtype, off)
            sub = None
        else:
            sub, count = struct.unpack_from("<IQ", data, off)
            off += 12
            if sub == _STRING:
                value = []
                for _ in range(count):
                    item, off = string(off)
                    value.append(item)
            elif sub in _DTYPE:
                arr = np.frombuffer(data, dtype=_DTYPE[sub], count=count, offset=off)
                off += arr.nbytes
                value = arr.tolist()
            else:
                raise ValueError(f"{path}: key {key!r} holds nested arrays, which no tokenizer uses")
        if key.startswith("tokenizer."):
            out[key] = (vtype, value, sub)
    if "tokenizer.ggml.tokens" not in out:
        raise ValueError(f"{path} has no tokenizer.ggml.tokens: not a vocab GGUF")
    return out


def _successors(tok_kv: dict[str, tuple[int, Any, int | None]], seed: int) -> np.ndarray:
    n_vocab = len(tok_kv["tokenizer.ggml.tokens"][1])
    types = np.asarray(tok_kv["tokenizer.ggml.token_type"][1]) if "tokenizer.ggml.token_type" in tok_kv \
        else np.full(n_vocab, _TOKEN_NORMAL)
    # Only normal tokens are permuted: a chain started on text never reaches EOS or another control token.
    normal = np.flatnonzero(types == _TOKEN_NORMAL)
    g = np.arange(n_vocab, dtype=np.int64)
    g[normal] = normal[np.random.default_rng([seed, 1]).permutation(len(normal))]
    return g


def successor_table(seed: int = 0, vocab_from: str | Path | None = None) -> np.ndarray:
    """``g``, the map the ``"predictive"`` variant built with the same ``seed`` and vocab follows:
    after token ``t`` its main model emits ``g[t]``. A permutation of the normal tokens; the others
    (control, byte, ...) map to themselves."""
    return _successors(_read_tokenizer_kv(Path(vocab_from) if vocab_from else default_vocab()), seed)


class _Weights:
    """Collects (name, array) pairs; vocab-sized matrices are quantized to Q8_0 once per array."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.items: list[tuple[str, np.ndarray, Any]] = []
        self._q8: dict[int, np.ndarray] = {}

    def rand(self, *shape: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * _STD).astype(np.float32)

    def add(self, name: str, arr: np.ndarray) -> None:
        self.items.append((name, np.ascontiguousarray(arr, dtype=np.float32), None))

    def add_q8(self, name: str, arr: np.ndarray) -> None:
        import gguf

        key = id(arr)  # the predictive variant shares E and the output matrix with the NextN block
        if key not in self._q8:
            self._q8[key] = gguf.quants.quantize(np.ascontiguousarray(arr, dtype=np.float32),
                                                 gguf.GGMLQuantizationType.Q8_0)
        self.items.append((name, self._q8[key], gguf.GGMLQuantizationType.Q8_0))


def _block(w: _Weights, il: int, s: TinyShape, predictive: bool) -> None:
    """One transformer block; in the predictive variant its output projections are zero."""
    e, hd = s.n_embd, s.head_dim
    p = f"blk.{il}."

    def out(*shape: int) -> np.ndarray:
        return np.zeros(shape, np.float32) if predictive else w.rand(*shape)

    ones = np.ones(e, np.float32)
    w.add(p + "attn_norm.weight", ones)
    w.add(p + "attn_q.weight", w.rand(s.n_head * hd, e))
    w.add(p + "attn_q.bias", w.rand(s.n_head * hd))
    w.add(p + "attn_k.weight", w.rand(s.n_head_kv * hd, e))
    w.add(p + "attn_k.bias", w.rand(s.n_head_kv * hd))
    w.add(p + "attn_v.weight", w.rand(s.n_head_kv * hd, e))
    w.add(p + "attn_v.bias", w.rand(s.n_head_kv * hd))
    w.add(p + "attn_q_norm.weight", np.ones(hd, np.float32))
    w.add(p + "attn_k_norm.weight", np.ones(hd, np.float32))
    w.add(p + "attn_output.weight", out(e, s.n_head * hd))
    w.add(p + "post_attention_norm.weight", ones)  # ik's ffn_norm for GLM4-MoE
    if il < s.n_dense_lead:
        w.add(p + "ffn_gate.weight", w.rand(s.n_ff, e))
        w.add(p + "ffn_up.weight", w.rand(s.n_ff, e))
        w.add(p + "ffn_down.weight", out(e, s.n_ff))
        return
    n_ff_sh = s.n_ff_exp * s.n_expert_shared
    w.add(p + "ffn_gate_inp.weight", w.rand(s.n_expert, e))
    w.add(p + "exp_probs_b.bias", w.rand(s.n_expert))
    w.add(p + "ffn_gate_exps.weight", w.rand(s.n_expert, s.n_ff_exp, e))
    w.add(p + "ffn_up_exps.weight", w.rand(s.n_expert, s.n_ff_exp, e))
    w.add(p + "ffn_down_exps.weight", out(s.n_expert, e, s.n_ff_exp))
    w.add(p + "ffn_gate_shexp.weight", w.rand(n_ff_sh, e))
    w.add(p + "ffn_up_shexp.weight", w.rand(n_ff_sh, e))
    w.add(p + "ffn_down_shexp.weight", out(e, n_ff_sh))


def _unit_rms_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return (x / np.sqrt((x * x).mean(axis=1, keepdims=True))).astype(np.float32)


def _hparams(writer: Any, s: TinyShape) -> None:
    a = ARCH
    for key, value in (("context_length", s.n_ctx_train), ("embedding_length", s.n_embd),
                       ("block_count", s.n_layer), ("feed_forward_length", s.n_ff),
                       ("attention.head_count", s.n_head), ("attention.head_count_kv", s.n_head_kv),
                       ("attention.key_length", s.head_dim), ("attention.value_length", s.head_dim),
                       ("rope.dimension_count", s.n_rot), ("expert_count", s.n_expert),
                       ("expert_used_count", s.n_expert_used), ("expert_shared_count", s.n_expert_shared),
                       ("expert_feed_forward_length", s.n_ff_exp),
                       ("leading_dense_block_count", s.n_dense_lead), ("expert_gating_func", _GATING_SIGMOID),
                       ("nextn_predict_layers", 1)):
        writer.add_uint32(f"{a}.{key}", value)
    writer.add_float32(f"{a}.rope.freq_base", s.rope_freq_base)
    writer.add_float32(f"{a}.attention.layer_norm_rms_epsilon", s.rms_eps)
    writer.add_float32(f"{a}.expert_weights_scale", 1.0)
    writer.add_bool(f"{a}.expert_weights_norm", True)


def write_tiny_glm4moe(path: str | Path, *, variant: str = "random", seed: int = 0,
                       vocab_from: str | Path | None = None) -> Path:
    """Write the tiny GLM4-MoE + NextN GGUF to ``path`` and return it (see the module docstring).

    ``variant`` is ``"random"`` or ``"predictive"``; ``seed`` fixes every weight and, for
    ``"predictive"``, the map :func:`successor_table` returns; ``vocab_from`` is the GGUF whose
    ``tokenizer.*`` keys are copied (default: :func:`default_vocab`). About 17 MB with the GPT-2 vocab.
    """
    import gguf

    if variant not in ("random", "predictive"):
        raise ValueError(f"variant={variant!r}: expected 'random' or 'predictive'")
    path = Path(path)
    vocab = Path(vocab_from) if vocab_from else default_vocab()
    if not vocab.exists():
        raise FileNotFoundError(f"vocab GGUF {vocab} not found. Fix: pass vocab_from=<a ggml-vocab-*.gguf>.")
    tok_kv = _read_tokenizer_kv(vocab)
    n_vocab = len(tok_kv["tokenizer.ggml.tokens"][1])
    s = SHAPE
    predictive = variant == "predictive"
    w = _Weights(np.random.default_rng([seed, 0]))

    if predictive:
        g = _successors(tok_kv, seed)
        embd = _unit_rms_rows(w.rng, n_vocab, s.n_embd)
        # Row s of the head is E[g^-1(s)]; the 1/sqrt(n_embd) scale keeps the top logit at sqrt(n_embd).
        head = embd[np.argsort(g)] / np.float32(np.sqrt(s.n_embd))
        mtp_embd, mtp_head = embd, head
    else:
        embd, head = w.rand(n_vocab, s.n_embd), w.rand(n_vocab, s.n_embd)
        mtp_embd, mtp_head = w.rand(n_vocab, s.n_embd), w.rand(n_vocab, s.n_embd)

    w.add_q8("token_embd.weight", embd)
    w.add("output_norm.weight", np.ones(s.n_embd, np.float32))
    w.add_q8("output.weight", head)
    for il in range(s.n_layer):
        _block(w, il, s, predictive)
    nextn = f"blk.{s.n_layer - 1}.nextn."
    if predictive:
        eh_proj = np.zeros((s.n_embd, 2 * s.n_embd), np.float32)
        eh_proj[:, :s.n_embd] = np.eye(s.n_embd, dtype=np.float32)  # keep enorm(emb), drop hnorm(hidden)
    else:
        eh_proj = w.rand(s.n_embd, 2 * s.n_embd)
    w.add(nextn + "eh_proj.weight", eh_proj)
    w.add_q8(nextn + "embed_tokens.weight", mtp_embd)
    w.add(nextn + "enorm.weight", np.ones(s.n_embd, np.float32))
    w.add(nextn + "hnorm.weight", np.ones(s.n_embd, np.float32))
    w.add_q8(nextn + "shared_head_head.weight", mtp_head)
    w.add(nextn + "shared_head_norm.weight", np.ones(s.n_embd, np.float32))

    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_name(f"tiny-glm4moe-{variant}")
    writer.add_string("ikllama.tiny.variant", variant)
    writer.add_uint32("ikllama.tiny.seed", seed)
    _hparams(writer, s)
    for key, (vtype, value, sub) in tok_kv.items():
        writer.add_key_value(key, value, gguf.GGUFValueType(vtype), None if sub is None else gguf.GGUFValueType(sub))
    for name, arr, qtype in w.items:
        writer.add_tensor(name, arr, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    log.debug("wrote %s (%s, seed %d, %d tokens from %s)", path, variant, seed, n_vocab, vocab.name)
    return path
