#!/usr/bin/env python3
"""Speed of ikllama against ik's own llama-bench from the same build, measured interleaved.

For each round, llama-bench runs once (warm-up + repetitions) and ikllama runs the same work in
this process; the ratio of the medians over all rounds is printed. Sections:

  pp   prompt processing: one decode of N tokens (n_batch = ubatch = N) through Context.decode,
       against llama-bench -p N -n 0
  tg   generation end to end: N tokens through SimpleInference.generate (C-side greedy sampling,
       detokenization, stop checks, decode), against llama-bench -p 0 -n N
  overhead  microseconds per generated token spent in ikllama's Python, for SmolLM2 (49k vocab)
       and Gemma-3 (262k vocab)
  parallel  aggregate generation t/s over --npl sequences through generate_parallel, against
       ik's llama-batched-bench (flash attention on) at the same settings
  lcpp streamed create_completion through llama-cpp-python (PyPI, own venv) and through
       ikllama.LLM: prompt and generation t/s side by side
  spec speculative decoding: t/s and acceptance with and without prompt lookup, a draft model and MTP

Usage: python scripts/bench.py [--model PATH] [--threads 2] [--rounds 5] [--sections pp,tg,overhead,parallel,lcpp]
The tools come from scripts/build_tools.sh (IKLLAMA_TOOLS_DIR, default build/tools/bin).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tools_dir() -> Path:
    d = Path(os.environ.get("IKLLAMA_TOOLS_DIR") or ROOT / "build" / "tools" / "bin")
    if not (d / "llama-bench").exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "build_tools.sh")], check=True)
    return d


def llama_bench(model: Path, threads: int, n_prompt: int, n_gen: int, reps: int) -> float:
    cmd = [str(tools_dir() / "llama-bench"), "-m", str(model), "-t", str(threads), "-p", str(n_prompt),
           "-n", str(n_gen), "-r", str(reps), "-fa", "1", "-b", str(max(n_prompt, 1)), "-ub", "512",
           "-o", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)[0]["avg_ts"])


def ours_pp(ctx, tokens: list[int], reps: int) -> float:
    from ikllama import Pos

    batch = ctx.new_batch(len(tokens))
    batch.add_sequence(tokens, Pos(0, 0))
    speeds = []
    for i in range(reps + 1):  # the first run warms up, as llama-bench's does
        ctx.clear()
        t0 = time.perf_counter()
        ctx.decode(batch)
        dt = time.perf_counter() - t0
        if i:
            speeds.append(len(tokens) / dt)
    return statistics.mean(speeds)


def binding_overhead(ctx, tokens: list[int]) -> float:
    """Fraction of a prompt decode spent in ikllama's own Python (batch checks and bookkeeping)."""
    from ikllama import Pos

    batch = ctx.new_batch(len(tokens))
    batch.add_sequence(tokens, Pos(0, 0))
    ours, total = [], []
    for _ in range(5):
        ctx.clear()
        t0 = time.perf_counter()
        ctx._validate_batch(batch._entries())
        batch._struct()
        ours.append(time.perf_counter() - t0)
        ctx.clear()
        t0 = time.perf_counter()
        ctx.decode(batch)
        total.append(time.perf_counter() - t0)
    return statistics.median(ours) / statistics.median(total)


def paired(results: dict, section: str, r: int, ours, theirs) -> None:
    """One measurement of each, alternating who goes first so that drifts of the machine cancel out."""
    if r % 2:
        t = theirs()
        results[section][0].append(ours())
        results[section][1].append(t)
    else:
        results[section][0].append(ours())
        results[section][1].append(theirs())


def report(label: str, ours: list[float], theirs: list[float], name: str) -> None:
    o, t = statistics.median(ours), statistics.median(theirs)
    per_round = statistics.median(a / b for a, b in zip(ours, theirs))
    print(f"{label:>10}: ikllama {o:8.1f} t/s | {name} {t:8.1f} t/s | ratio {o / t:.3f} "
          f"(median of per-round ratios {per_round:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--npl", type=int, default=8, help="sequences of the parallel section")
    parser.add_argument("--npp", type=int, default=128, help="prompt tokens per sequence, parallel section")
    parser.add_argument("--sections", default="pp,tg,overhead,parallel,lcpp,spec")
    args = parser.parse_args()

    import ikllama

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _bench_gen
    import _bench_lcpp
    import _bench_spec

    model_path = args.model or ikllama.default_model()
    sections = args.sections.split(",")
    paired_sections = [s for s in sections if s in ("pp", "tg", "parallel", "lcpp")]
    results: dict[str, tuple[list, list]] = {s: ([], []) for s in paired_sections}
    n = args.n_prompt
    overhead = None
    with ikllama.ModelConfig().load_gguf(model_path) as model:
        builder = (model.context().with_n_ctx(n + args.n_gen + 256).with_n_batch(n).with_n_ubatch(min(n, 512))
                   .with_threads(args.threads).with_flash_attn(True))
        tokens = [(7 * i + 11) % model.n_vocab for i in range(n)]
        with builder.build() as ctx:
            if "pp" in sections:
                overhead = binding_overhead(ctx, tokens)
            for r in range(args.rounds):
                for section in paired_sections:
                    if section == "pp":
                        paired(results, section, r, lambda: ours_pp(ctx, tokens, args.reps),
                               lambda: llama_bench(model_path, args.threads, n, 0, args.reps))
                    elif section == "tg":
                        paired(results, section, r, lambda: _bench_gen.ours_generate(ctx, args.n_gen, args.reps),
                               lambda: llama_bench(model_path, args.threads, 0, args.n_gen, args.reps))
                    elif section == "parallel":
                        paired(results, section, r,
                               lambda: _bench_gen.ours_parallel(model, args.threads, args.npp, args.n_gen, args.npl),
                               lambda: _bench_gen.batched_bench(tools_dir(), model_path, args.threads, args.npp,
                                                                args.n_gen, args.npl))
                    else:
                        paired(results, section, r,
                               lambda: _bench_lcpp.ours(model_path, n, args.n_gen, args.threads, 1),
                               lambda: _bench_lcpp.theirs(model_path, n, args.n_gen, args.threads, 1))
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    spec_lines = _bench_spec.run(tools_dir(), args.threads) if "spec" in sections else []
    if "overhead" in sections:
        from ikllama.models import GEMMA3_270M, SMOLLM2_135M, fetch

        overhead_us = {name: _bench_gen.python_overhead_us(fetch(spec), args.threads)
                       for name, spec in (("SmolLM2-135M (49k vocab)", SMOLLM2_135M),
                                          ("Gemma-3-270M (262k vocab)", GEMMA3_270M))}

    print(f"model {model_path.name}, {args.threads} threads, {args.rounds} interleaved rounds x {args.reps} reps")
    if overhead is not None:
        print(f"binding overhead: {overhead * 100:.3f} % of a {n}-token decode is ikllama's own Python")
    for section, (ours, theirs) in results.items():
        if section == "pp":
            report(f"pp{n}", ours, theirs, "llama-bench")
        elif section == "tg":
            report(f"tg{args.n_gen}", ours, theirs, "llama-bench")
        elif section == "parallel":
            report(f"{args.npl}x tg{args.n_gen}", ours, theirs, "llama-batched-bench")
        else:
            for key in ("pp", "tg"):
                report(f"LLM {key}", [o[key] for o in ours], [t[key] for t in theirs],
                       f"llama-cpp-python {theirs[0].get('version', '')}")
    if "overhead" in sections:
        for name, (py_us, c_us) in overhead_us.items():
            print(f"per generated token, {name}: Python {py_us:.1f} us, C sampler {c_us:.1f} us")
    for line in spec_lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
