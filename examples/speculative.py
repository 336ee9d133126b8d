"""Speculative decoding with a draft model and with prompt lookup: same output, fewer main-model decodes.

    python examples/speculative.py [--model PATH] [--draft PATH] [--prompt TEXT] [--max-tokens N]

A draft model (same vocabulary, ideally much smaller; default: the main model drafting for itself,
which shows the mechanics: nearly every draft is accepted) proposes tokens greedily; prompt lookup
proposes what followed the latest earlier occurrence of the last few tokens, which pays off on
repetitive text. The main model verifies each draft in one batch and every emitted token is sampled
from it, so the text equals plain generation. Without --model it uses SmolLM2-135M-Instruct Q4_1.
"""

from __future__ import annotations

import argparse
import time

import ikllama
from ikllama import DraftModelSession, PromptLookupSession, SimpleInference

PROMPT = ("Write the sentence 'The quick brown fox jumps over the lazy dog.' ten times, one per line:\n"
          "The quick brown fox jumps over the lazy dog.\nThe quick brown fox jumps over the lazy dog.\n")


def run(ctx: ikllama.Context, prompt: str, max_tokens: int, session=None) -> tuple[ikllama.Answer, float]:
    """Greedy generation after ``prompt`` (the fork is emptied first); returns the answer and its seconds."""
    ctx.drop(0)
    with SimpleInference(ctx) as inference:
        inference.prefill(prompt)
        t0 = time.perf_counter()
        answer = inference.generate(max_tokens, speculative=session)
        return answer, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="main GGUF (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--draft", help="draft GGUF with the same vocabulary (default: the main model itself)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("-n", "--max-tokens", type=int, default=128)
    parser.add_argument("--n-draft", type=int, default=8, help="most tokens drafted per step")
    parser.add_argument("-t", "--threads", type=int, help="CPU threads (default: ikllama's choice)")
    args = parser.parse_args()

    path = args.model or ikllama.default_model()
    with ikllama.ModelConfig().load_gguf(path) as model:
        draft_model = ikllama.ModelConfig().load_gguf(args.draft) if args.draft else model
        builder = model.context().with_n_ctx(2048)
        if args.threads:
            builder = builder.with_threads(args.threads)
        try:
            with builder.build() as ctx:
                plain, t_plain = run(ctx, args.prompt, args.max_tokens)
                print(f"{args.prompt}{plain.text}")
                print(f"without speculation: {len(plain.tokens)} tokens in {t_plain:.2f} s, "
                      f"{len(plain.tokens) / t_plain:.1f} tokens/s")
                sessions = [("draft model", DraftModelSession(draft_model, n_draft_max=args.n_draft, n_ctx=2048,
                                                              n_threads=args.threads)),
                            ("prompt lookup", PromptLookupSession(n_draft_max=args.n_draft))]
                for name, session in sessions:
                    with session:
                        answer, seconds = run(ctx, args.prompt, args.max_tokens, session)
                    st = session.stats
                    print(f"{name + ':':14} same output: {answer.tokens == plain.tokens} | drafted {st.drafted} | "
                          f"accepted {st.accepted} | acceptance rate {st.acceptance_rate:.1%} | "
                          f"{st.tokens_per_batch:.2f} tokens per decode | {len(answer.tokens)} tokens in "
                          f"{seconds:.2f} s, {st.tokens_per_second:.1f} tokens/s")
        finally:
            if draft_model is not model:
                draft_model.close()


if __name__ == "__main__":
    main()
