"""The same prompt with each KV-cache type, Hadamard on and off: memory, speed, and where output diverges.

    python examples/kv_quant.py [--model PATH] [--prompt TEXT] [-n TOKENS] [--n-ctx 32768]

ik's Hadamard transform rotates each head before it is quantized, spreading outliers so that low-bit
caches lose less. Configurations the CPU build cannot run are reported, not crashed into.
"""

from __future__ import annotations

import argparse
import time

import ikllama
from ikllama import GgmlType
from ikllama.streaming import stream_continuation

CONFIGS = [("F16", False), ("Q8_0", False), ("Q8_0", True), ("Q6_0", False), ("Q6_0", True), ("Q4_0", False),
           ("Q4_0", True), ("IQ4_NL", False), ("IQ4_NL", True), ("Q5_0", True)]


def generate(ctx, prompt: str, n: int) -> tuple[str, float]:
    t0 = time.perf_counter()
    text = "".join(stream_continuation(ctx, ctx.str_to_tokens(prompt), n))
    return text, n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--prompt", default="The history of the refrigerator began in the 18th century, when")
    parser.add_argument("-n", "--max-tokens", type=int, default=64)
    parser.add_argument("--n-ctx", type=int, default=32768, help="context length the memory column is for")
    args = parser.parse_args()

    with ikllama.ModelConfig().load_gguf(args.model or ikllama.default_model()) as model:
        reference = None
        print(f"{'K/V type':8} {'Hadamard':8} {'KV MiB':>8} {'vs F16':>6} {'tok/s':>6}  diverges from F16 at")
        for name, hadamard in CONFIGS:
            t = GgmlType[name]
            size = ikllama.kv_cache_bytes(model, args.n_ctx, t, t)
            builder = model.context().with_n_ctx(1024).with_kv_cache(t, t, hadamard, hadamard)
            try:
                ctx = builder.build()
            except ikllama.UnsupportedConfigError as exc:
                print(f"{name:8} {'on' if hadamard else 'off':8} unsupported on this backend: {str(exc)[:70]}...")
                continue
            with ctx:
                text, speed = generate(ctx, args.prompt, args.max_tokens)
            if reference is None:
                reference, ref_mib = text, size.mib
            diverge = next((i for i, (a, b) in enumerate(zip(reference, text)) if a != b), None)
            where = "never" if diverge is None and len(text) == len(reference) else f"char {diverge}"
            print(f"{name:8} {'on' if hadamard else 'off':8} {size.mib:8.1f} {size.mib / ref_mib:6.2f} {speed:6.1f}  {where}")
        print(f"\nF16 output: {reference!r}")


if __name__ == "__main__":
    main()
