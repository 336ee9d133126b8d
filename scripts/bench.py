#!/usr/bin/env python3
"""Speed of ikllama against ik's own llama-bench from the same build, measured interleaved.

For each round, llama-bench runs once (warm-up + repetitions) and ikllama runs the same work in
this process; the ratio of the medians over all rounds is printed. Sections:

  pp   prompt processing: one decode of N tokens (n_batch = ubatch = N) through Context.decode,
       against llama-bench -p N -n 0
  tg   generation: N tokens one by one through Context.sample (C-side greedy) + Context.decode,
       against llama-bench -p 0 -n N

Usage: python scripts/bench.py [--model PATH] [--threads 2] [--rounds 5] [--sections pp,tg]
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


def ours_tg(ctx, n_gen: int, reps: int) -> float:
    from ikllama import Pos

    step = ctx.new_batch(1)
    speeds = []
    for i in range(reps + 1):
        ctx.clear()
        step.clear()
        step.add(ctx.vocab.n_vocab // 2, Pos(0, 0), logits=True)
        ctx.decode(step)
        t0 = time.perf_counter()
        for _ in range(n_gen):
            token = ctx.sample(0)
            token = token if token is not None else 0  # keep going through end-of-generation
            step.clear()
            step.add(token, Pos(ctx.n_past(), 0), logits=True)
            ctx.decode(step)
        dt = time.perf_counter() - t0
        if i:
            speeds.append(n_gen / dt)
    return statistics.mean(speeds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--sections", default="pp,tg")
    args = parser.parse_args()

    import ikllama

    model_path = args.model or ikllama.default_model()
    sections = args.sections.split(",")
    results: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in sections}
    with ikllama.ModelConfig().load_gguf(model_path) as model:
        n = args.n_prompt
        builder = (model.context().with_n_ctx(n + args.n_gen + 256).with_n_batch(n).with_n_ubatch(min(n, 512))
                   .with_threads(args.threads).with_flash_attn(True))
        tokens = [(7 * i + 11) % model.n_vocab for i in range(n)]
        with builder.build() as ctx:
            overhead = binding_overhead(ctx, tokens) if "pp" in sections else None
            for r in range(args.rounds):
                # Alternate who goes first, so that drifts of this machine's speed cancel out.
                for section in sections:
                    if section == "pp":
                        ours = lambda: ours_pp(ctx, tokens, args.reps)  # noqa: E731
                        theirs = lambda: llama_bench(model_path, args.threads, n, 0, args.reps)  # noqa: E731
                    else:
                        ours = lambda: ours_tg(ctx, args.n_gen, args.reps)  # noqa: E731
                        theirs = lambda: llama_bench(model_path, args.threads, 0, args.n_gen, args.reps)  # noqa: E731
                    if r % 2:
                        t = theirs()
                        results[section][0].append(ours())
                        results[section][1].append(t)
                    else:
                        results[section][0].append(ours())
                        results[section][1].append(theirs())
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"model {model_path.name}, {args.threads} threads, {args.rounds} interleaved rounds x {args.reps} reps")
    if overhead is not None:
        print(f"binding overhead: {overhead * 100:.3f} % of a {args.n_prompt}-token decode is ikllama's own Python")
    for section, (ours, theirs) in results.items():
        label = f"pp{args.n_prompt}" if section == "pp" else f"tg{args.n_gen}"
        o, t = statistics.median(ours), statistics.median(theirs)
        per_round = statistics.median(a / b for a, b in zip(ours, theirs))
        print(f"{label:>6}: ikllama {o:8.1f} t/s | llama-bench {t:8.1f} t/s | ratio {o / t:.3f} "
              f"(median of per-round ratios {per_round:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
