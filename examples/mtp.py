"""Multi-token prediction: a GLM4-MoE model's own NextN layer drafts tokens that the model verifies in one batch.

    python examples/mtp.py [--model PATH] [--prompt TEXT] [--max-tokens N] [--n-draft N] [--threads N]

The output is the same with and without MTP (every token is still sampled from the main model); MTP
only changes how many tokens one decode yields. --model is a GLM4-MoE GGUF that keeps its NextN
tensors (GLM-4.5/4.6/4.7). Without it, the tiny test model of ``ikllama.testing.tiny_glm4moe``
(whose NextN head predicts the main model exactly) is written into a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ikllama
from ikllama import MtpSession, SimpleInference


def run(model: ikllama.Model, args: argparse.Namespace, use_mtp: bool
        ) -> tuple[ikllama.Answer, float, ikllama.SpeculativeStats | None]:
    """Generate greedily on a fresh MTP main context; with ``use_mtp`` an MtpSession drafts."""
    session = MtpSession(model, n_draft_max=args.n_draft, n_ctx=2048, n_threads=args.threads) if use_mtp else None
    builder = model.context().with_mtp(True).with_n_ctx(2048)
    if args.threads:
        builder = builder.with_threads(args.threads)
    try:
        with builder.build() as ctx, \
                SimpleInference(ctx, speculative=session) as inference:
            inference.prefill(args.prompt)  # also warms the MTP layer's cache up
            t0 = time.perf_counter()
            answer = inference.generate(args.max_tokens)
            seconds = time.perf_counter() - t0
    finally:
        if session is not None:
            session.close()
    return answer, seconds, session.stats if session is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GLM4-MoE GGUF with NextN layers (default: a tiny generated one)")
    parser.add_argument("--prompt", default="The quick brown fox jumps over")
    parser.add_argument("-n", "--max-tokens", type=int, default=128)
    parser.add_argument("--n-draft", type=int, default=3, help="tokens the NextN layer drafts per step")
    parser.add_argument("-t", "--threads", type=int, help="CPU threads (default: ikllama's choice)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from ikllama.testing.tiny_glm4moe import write_tiny_glm4moe

            path = write_tiny_glm4moe(Path(tmp) / "tiny-glm4moe.gguf", variant="predictive")
            print(f"no --model given: using the tiny predictive GLM4-MoE test model written to {path} "
                  "(it decodes in a fraction of a millisecond, so drafting costs more than it saves: "
                  "the speed-up needs a real model)")
        with ikllama.ModelConfig(mtp=True).load_gguf(path) as model:
            plain, t_plain, _ = run(model, args, use_mtp=False)
            answer, t_mtp, stats = run(model, args, use_mtp=True)

    assert stats is not None
    print(f"{args.prompt}{answer.text}")
    print(f"same output as without MTP: {answer.tokens == plain.tokens}")
    print(f"drafted {stats.drafted} | accepted {stats.accepted} | acceptance rate {stats.acceptance_rate:.1%} | "
          f"{stats.tokens_per_batch:.2f} tokens per decode")
    print(f"without MTP: {len(plain.tokens)} tokens in {t_plain:.2f} s, {len(plain.tokens) / t_plain:.1f} tokens/s")
    print(f"with MTP:    {len(answer.tokens)} tokens in {t_mtp:.2f} s, {stats.tokens_per_second:.1f} tokens/s")


if __name__ == "__main__":
    main()
