"""Migrating from llama-cpp-python: the same code, on ik_llama.cpp.

Option 1 changes one import (``from ikllama.compat import Llama``); option 2 changes none, for code
you cannot edit: ``ikllama.compat.install()`` makes ``import llama_cpp`` give ikllama.compat (or,
for a whole environment, ``python -m ikllama.compat enable``).

    python examples/from_llama_cpp_python.py [--model PATH] [-n 24]
"""

from __future__ import annotations

import argparse

import ikllama.compat

ikllama.compat.install()  # from here on, `import llama_cpp` is ikllama.compat

from llama_cpp import Llama, LlamaGrammar  # noqa: E402  (unchanged llama-cpp-python code below)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="GGUF path (default: ikllama's small default model)")
    p.add_argument("-n", type=int, default=24, help="tokens to generate")
    args = p.parse_args()
    if args.model is None:
        from ikllama.models import default_model

        args.model = str(default_model())

    llm = Llama(model_path=args.model, n_ctx=1024, verbose=False)
    out = llm("Q: Name the planets in the solar system. A:", max_tokens=args.n, stop=["Q:", "\n\n"], temperature=0)
    print("completion:", out["choices"][0]["text"].strip(), f"[{out['choices'][0]['finish_reason']}]")

    print("stream: ", end="")
    for chunk in llm("The capital of France is", max_tokens=args.n, temperature=0, stream=True):
        print(chunk["choices"][0]["text"], end="", flush=True)
    print()

    chat = llm.create_chat_completion([{"role": "user", "content": "Say hello in French."}],
                                      max_tokens=args.n, temperature=0)
    print("chat:", chat["choices"][0]["message"]["content"])

    grammar = LlamaGrammar.from_string('root ::= "yes" | "no"')
    print("grammar:", llm("Is water wet? Answer yes or no:", grammar=grammar, max_tokens=4)["choices"][0]["text"])
    print("tokens:", llm.tokenize(b"Hello world"), "usage:", out["usage"])
    llm.close()


if __name__ == "__main__":
    main()
