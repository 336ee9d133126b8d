"""A fork-server harness for fuzzing the model load path (used by ``scripts/fuzz_gguf.py`` and the tests).

The parent never loads a model: :func:`prepare_parent` removes debuggers from ``PATH`` (ik's abort
handler would attach gdb) and initialises the backend once; :func:`run_one` forks a child per input
that sets memory/CPU/core limits, sends stderr to a file, loads the file through the public loader
(``ModelConfig(vocab_only=True).load_gguf``, then a full load when ``full``), tokenizes a probe string
and exits 0 (loaded), 1 (``ModelLoadError``: refused cleanly) or 11 (any other Python exception, a
binding bug). Anything else -- a signal, a hang past the deadline -- is a process death. ``raw=True``
calls ``llama_model_load_from_file`` directly, without the validator, to map ik's own behaviour.

Mutators (:func:`mutate`) work on :class:`~ikllama.testing.hostile_gguf.Doc`: structural (types,
counts, lengths, dims, tensor types, offsets), semantic (hyperparameters and vocabulary of the tiny
llama) and byte level (boundary values written over the serialised header).
"""

from __future__ import annotations

import os
import random
import re
import resource
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from ..modelfile.check import check_gguf
from ..modelfile.rules import T_ARRAY, T_STRING
from .hostile_gguf import (T_BOOL, T_FLOAT32, T_INT32, T_UINT8, T_UINT32, Doc, Tensor, array, f32, string,
                           tiny_llama, u32)

__all__ = ["prepare_parent", "run_one", "mutate", "doc_from_file", "Outcome", "BOUNDARY"]

BOUNDARY = (0, 1, 2, 3, 4, 5, 9, 12, 13, 31, 32, 33, 63, 64, 65, 255, 256, 399, 400, 511, 512, 513, 1 << 16,
            (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)
_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
_SIZE = {t: struct.calcsize(f) for t, f in _FMT.items()}
_ASSERT = re.compile(rb"([\w./-]+:\d+: (?:GGML_ASSERT\([^\n]*|[^\n]*fatal error[^\n]*)|GGML_ABORT[^\n]*|"
                     rb"terminate called[^\n]*|what\(\):[^\n]*)")


@dataclass
class Outcome:
    """One input's fate: ``kind`` is ok / refused / leak / signal / hang; ``detail`` groups crashes."""

    kind: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def died(self) -> bool:
        return self.kind in ("signal", "hang")


def prepare_parent() -> None:
    """Run once in the parent before forking: drop debuggers from PATH, initialise ik (no model)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, x)) for x in ("gdb", "lldb"))]
    os.environ["PATH"] = os.pathsep.join(dirs)
    from ..backend import ensure_init

    ensure_init()


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _child(path: str, full: bool, raw: bool, stderr_path: str) -> int:
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (5, 6))
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + (4 << 30),) * 2)
    from ..config import ModelConfig
    from ..errors import ModelLoadError

    try:
        if raw:
            from .._lib import ffi, lib

            params = lib.llama_model_default_params()
            params.vocab_only = not full
            ptr = lib.llama_model_load_from_file(os.fsencode(path), params)
            if ptr == ffi.NULL:
                return 1
            lib.llama_free_model(ptr)
            return 0
        for vocab_only in (True, False) if full else (True,):
            with ModelConfig(vocab_only=vocab_only).load_gguf(path) as model:
                model.detokenize(model.tokenize("Hello \u4e2d\u6587 \U0001f642 <s>\n", parse_special=True))
        return 0
    except ModelLoadError:
        return 1
    except BaseException:  # a binding bug: reported as "leak"
        import traceback

        traceback.print_exc()
        return 11


def run_one(data: bytes, workdir: Path, full: bool = True, raw: bool = False, deadline: float = 10.0) -> Outcome:
    """Write ``data`` and load it in a forked child; classify how the child ended."""
    path = workdir / "input.gguf"
    err = workdir / "stderr.txt"
    path.write_bytes(data)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        code = 12
        try:
            code = _child(str(path), full, raw, str(err))
        finally:
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - t0 > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return Outcome("hang", "wall deadline", time.monotonic() - t0)
        time.sleep(0.002)
    dt = time.monotonic() - t0
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        m = _ASSERT.search(err.read_bytes()[-20000:]) if err.exists() else None
        first = m.group(1).decode("utf-8", "replace")[:160] if m else ""
        kind = "hang" if sig in (signal.SIGKILL, signal.SIGXCPU) else "signal"
        return Outcome(kind, f"{name} {first}".strip(), dt)
    code = os.WEXITSTATUS(status)
    kind = {0: "ok", 1: "refused"}.get(code, "leak")
    detail = ""
    if kind == "leak":
        lines = err.read_text(errors="replace").strip().splitlines() if err.exists() else []
        detail = lines[-1][:160] if lines else f"exit {code}"
    return Outcome(kind, detail, dt)


# -- seeds ------------------------------------------------------------------------------------------
def doc_from_file(path: str | os.PathLike[str]) -> Doc:
    """Re-read a valid GGUF (checked first) into a :class:`Doc` with every value re-encoded."""
    summary = check_gguf(path)
    raw = Path(path).read_bytes()
    doc = Doc(version=summary.version, alignment=summary.alignment)
    for key, kv in summary.kv.items():
        if kv.type == T_STRING:
            doc.kv.append((key, string(kv.value)))
        elif kv.type == T_ARRAY and kv.elem == T_STRING:
            doc.kv.append((key, array(T_STRING, kv.items or [])))
        elif kv.type == T_ARRAY:
            body = raw[kv.data:kv.data + kv.n * _SIZE[kv.elem]]
            doc.kv.append((key, (T_ARRAY, struct.pack("<IQ", kv.elem, kv.n) + body)))
        else:
            doc.kv.append((key, (kv.type, struct.pack(_FMT[kv.type], kv.value))))
    blob = raw[summary.data_offset:]
    for label, ne, ttype, off, nbytes in summary.tensors:
        doc.tensors.append(Tensor(label[8:-1], ne, ttype, off, nbytes))
    doc.data = blob
    return doc


# -- mutators ---------------------------------------------------------------------------------------
def _any_value(rng: random.Random) -> tuple[int, bytes]:
    t = rng.choice([0, 1, 4, 5, 6, 7, 8, 9, 10, 13, -1])
    if t == 8:
        return string(rng.choice(["", "none", "yarn", "linear", "bogus", "x" * 300]))
    if t == 9:
        elem = rng.choice([T_UINT8, T_INT32, T_UINT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, 13])
        n = rng.choice([0, 1, 2, 3, 259, 1 << 20, 1 << 40])
        if elem == T_STRING:
            return array(T_STRING, ["a", "b", "a"], n=n)
        body = struct.pack("<IQ", elem & 0xFFFFFFFF, n) + b"\1" * rng.choice([0, 4, 16, 1036])
        return (T_ARRAY, body)
    if t in (13, -1):
        return (t & 0xFFFFFFFF, b"\0" * rng.choice([0, 1, 8]))
    v = rng.choice(BOUNDARY)
    if t == 6:
        return f32(rng.choice([0.0, -1.0, 1e30, float("nan"), float("inf")]))
    return (t, (v & ((1 << (8 * _SIZE[t])) - 1)).to_bytes(_SIZE[t], "little"))


_SEMANTIC_KEYS = ("general.alignment", "general.file_type", "general.architecture", "llama.block_count",
                  "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
                  "llama.attention.head_count_kv", "llama.rope.dimension_count", "llama.expert_count",
                  "llama.expert_used_count", "llama.rope.scaling.type", "llama.context_length",
                  "llama.vocab_size", "llama.full_attention_interval", "tokenizer.ggml.model",
                  "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                  "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                  "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                  "tokenizer.ggml.padding_token_id", "tokenizer.ggml.precompiled_charsmap")


def _mutate_doc(doc: Doc, rng: random.Random) -> None:
    op = rng.randrange(12)
    if op == 0 and doc.kv:  # value type / payload of one key
        i = rng.randrange(len(doc.kv))
        doc.kv[i] = (doc.kv[i][0], _any_value(rng))
    elif op == 1:  # a semantic key set to something odd
        value = _any_value(rng) if rng.random() < 0.5 else u32(rng.choice(BOUNDARY[:24]))
        doc.set(rng.choice(_SEMANTIC_KEYS), value)
    elif op == 2 and doc.kv:  # duplicate, drop or empty a key
        i = rng.randrange(len(doc.kv))
        choice = rng.randrange(3)
        if choice == 0:
            doc.kv.append(doc.kv[i])
        elif choice == 1:
            del doc.kv[i]
        else:
            doc.kv[i] = (rng.choice([b"", b"x" * 70000, "general.alignment"]), doc.kv[i][1])
    elif op == 3:
        doc.n_kv = rng.choice(BOUNDARY)
    elif op == 4:
        doc.n_tensors = rng.choice(BOUNDARY)
    elif op == 5:
        doc.version = rng.choice([0, 1, 2, 4, 0x03000000, 0xFFFFFFFF])
    elif op == 6 and doc.tensors:  # tensor type, including the gaps
        doc.tensors[rng.randrange(len(doc.tensors))].type = rng.choice(
            [rng.randrange(400), 4, 5, 42, 143, 396, 399, 400, (1 << 31), 0xFFFFFFFF])
    elif op == 7 and doc.tensors:  # dims
        t = doc.tensors[rng.randrange(len(doc.tensors))]
        ne = list(t.ne)
        ne[rng.randrange(len(ne))] = rng.choice([0, -1, 1, 3, 1 << 31, 1 << 32, (1 << 63) - 1, -(1 << 63)])
        t.ne = tuple(ne)
        if rng.random() < 0.3:
            t.n_dims = rng.choice([0, 5, 0xFFFFFFFF])
    elif op == 8 and doc.tensors:  # offsets
        t = doc.tensors[rng.randrange(len(doc.tensors))]
        t.offset = rng.choice([0, 1, 4, 31, (t.offset or 0) + 32, 1 << 40, (1 << 64) - 1])
    elif op == 9 and doc.tensors:  # names
        t = doc.tensors[rng.randrange(len(doc.tensors))]
        t.name = rng.choice(["", "x" * 63, "x" * 64, "x" * 65, doc.tensors[0].name])
    elif op == 10:  # vocabulary content
        toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
        edit = rng.randrange(4)
        if edit == 0:
            toks.append(rng.choice(toks))
        elif edit == 1:
            toks = toks[:rng.choice([0, 1, 2, 3, 100])]
        elif edit == 2:
            toks += ["", "[EMPTY_259]", "<0x-1>", "<0xZZ>"]
        else:
            toks[rng.randrange(len(toks))] = "\xff" * rng.randrange(1, 5)
        doc.set("tokenizer.ggml.tokens", array(T_STRING, toks))
        if rng.random() < 0.5:
            doc.set("tokenizer.ggml.model", string(rng.choice(["llama", "gpt2", "bert", "t5", "plamo2", "rwkv"])))
    elif op == 11:  # per-layer arrays of the wrong element type
        key = rng.choice(["llama.attention.head_count", "llama.feed_forward_length",
                          "llama.attention.head_count_kv", "llama.swiglu_limits", "llama.rope.freq_base_per_layer"])
        elem = rng.choice([T_FLOAT32, T_INT32, T_UINT32, T_BOOL, T_UINT8])
        n = rng.choice([1, 2, 3, 513])
        vals = [2.0] * n if elem == T_FLOAT32 else [2 if elem != T_BOOL else 1] * n
        doc.set(key, array(elem, vals))


def _mutate_bytes(data: bytearray, rng: random.Random) -> None:
    limit = min(len(data), 1 << 16)
    for _ in range(rng.randint(1, 3)):
        if limit < 8:
            return
        pos = rng.randrange(0, limit - 8) & ~3
        width = rng.choice([4, 8])
        v = rng.choice(BOUNDARY + (len(data), len(data) - pos)) & ((1 << (8 * width)) - 1)
        data[pos:pos + width] = v.to_bytes(width, "little")


def mutate(seed: Doc, rng: random.Random) -> bytes:
    """One mutated input from ``seed`` (structure-aware most of the time, bytes otherwise, maybe truncated)."""
    doc = Doc(list(seed.kv), [Tensor(t.name, t.ne, t.type, t.offset, t.nbytes, t.n_dims) for t in seed.tensors],
              seed.version, seed.magic, seed.n_kv, seed.n_tensors, seed.alignment, seed.data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        _mutate_doc(doc, rng)
    data, marks = doc.serialize()
    if rng.random() < 0.2:
        buf = bytearray(data)
        _mutate_bytes(buf, rng)
        data = bytes(buf)
    if rng.random() < 0.05:
        data = data[:rng.choice(list(marks.values()))]
    return data


def seeds(vendor_models: Path | None = None) -> list[tuple[str, Doc, bool]]:
    """(name, doc, full-load?) seeds: the tiny llama, a 1-layer one, and the vendored vocab files."""
    out = [("tiny-llama", tiny_llama(), True), ("tiny-llama-1", tiny_llama(n_layer=1, n_embd=8, n_ff=8), True)]
    if vendor_models is not None:
        for p in sorted(vendor_models.glob("ggml-vocab-*.gguf")):
            if p.stat().st_size < 3_000_000:
                out.append((p.name, doc_from_file(p), False))
    return out

