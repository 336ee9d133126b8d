"""``ikllama run``: greedy (or sampled) continuation of a prompt, printed as it is generated."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="continue a prompt with a model (default: SmolLM2-135M)")
    run.add_argument("prompt", nargs="?", default="The capital of France is")
    run.add_argument("-m", "--model", help="GGUF path (default: SmolLM2-135M-Instruct Q4_1 from PyPI)")
    run.add_argument("-n", "--max-tokens", type=int, default=64)
    run.add_argument("-c", "--n-ctx", type=int, default=2048)
    run.add_argument("-t", "--threads", type=int, default=None)
    run.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    run.add_argument("--top-k", type=int, default=40)
    run.add_argument("--top-p", type=float, default=0.95)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--kv", default="F16", help="KV type: Q4 Q5 Q6 Q8 RAW_Q8 F16 F32 (Q* use Hadamard)")
    run.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from ..config import ModelConfig
    from ..enums import KvType
    from ..models import default_model
    from ..streaming import stream_continuation

    path = args.model or default_model()
    kv = KvType[args.kv.upper()]
    with ModelConfig().load_gguf(path) as model:
        builder = (model.context().with_n_ctx(args.n_ctx).with_gen_type_kv(kv, kv)
                   .with_sampler(args.temperature, args.top_k, args.top_p).with_seed(args.seed))
        if args.threads:
            builder = builder.with_threads(args.threads)
        with builder.build() as ctx:
            tokens = ctx.str_to_tokens(args.prompt, add_special=True)
            sys.stdout.write(args.prompt)
            t0 = time.perf_counter()
            n_gen = 0
            for piece in stream_continuation(ctx, tokens, args.max_tokens):
                sys.stdout.write(piece)
                sys.stdout.flush()
                n_gen = ctx.n_past() - len(tokens)
            sys.stdout.write("\n")
            elapsed = time.perf_counter() - t0
            timings = ctx.timings()
    print(f"[prompt {len(tokens)} tokens: {timings.prompt_tokens_per_second:.1f} t/s | "
          f"generated {n_gen} tokens in {elapsed:.2f} s: {timings.eval_tokens_per_second:.1f} t/s]", file=sys.stderr)
    return 0
