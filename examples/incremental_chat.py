"""Time to first token with and without incremental prefill (the prompt decoded while it is typed).

    python examples/incremental_chat.py [--model PATH] [--message TEXT] [--cps 15] [-n TOKENS]

Typing is simulated at --cps characters per second; with incremental prefill the decoding of the
system prompt and of each stable word happens during the pauses, so only the last tokens remain
when the message is submitted.
"""

from __future__ import annotations

import argparse
import time

import ikllama
from ikllama.chat import Formatter, Message, Role
from ikllama.incremental import IncrementalPrefill


def first_token_ms(inference: ikllama.SimpleInference, max_tokens: int) -> tuple[float, ikllama.Answer]:
    """Milliseconds until the first generated piece, and the answer."""
    t0 = time.perf_counter()
    stream = inference.generate(max_tokens, stream=True)
    ttft = None
    for _ in stream:
        if ttft is None:
            ttft = (time.perf_counter() - t0) * 1e3
    return ttft or 0.0, stream.answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--message", default="Can you explain, in two short sentences, why the sky is blue "
                                             "during the day but turns red and orange at sunset?")
    parser.add_argument("--system", default="You are a concise, helpful assistant who answers in plain words.")
    parser.add_argument("--cps", type=float, default=15.0, help="simulated typing speed, characters per second")
    parser.add_argument("-n", "--max-tokens", type=int, default=24)
    args = parser.parse_args()

    with ikllama.ModelConfig().load_gguf(args.model or ikllama.default_model()) as model, \
            model.context().with_n_ctx(2048).build() as ctx, ikllama.SimpleInference(ctx) as inference:
        formatter = Formatter.for_model(model)
        history = [Message(Role.SYSTEM, args.system)]
        typed_at = 1.0 / args.cps
        inference.prefill(args.system)  # warm-up: the first decode allocates buffers
        ctx.clear()

        # Without: the whole prompt is decoded after the user presses enter.
        time.sleep(len(args.message) * typed_at)
        t0 = time.perf_counter()
        inference.prefill(formatter.format([*history, Message(Role.USER, args.message)]))
        prefill_ms = (time.perf_counter() - t0) * 1e3
        ttft, plain = first_token_ms(inference, args.max_tokens)
        print(f"plain prefill      : time to first token {prefill_ms + ttft:7.1f} ms")

        # With: decode during typing; only the tail is left at submit.
        ctx.clear()
        inference.reset_sampler()
        live = IncrementalPrefill.for_chat(inference, formatter, history)
        for i in range(1, len(args.message) + 1):
            start = time.perf_counter()
            live.update(args.message[:i])
            time.sleep(max(0.0, typed_at - (time.perf_counter() - start)))
        t0 = time.perf_counter()
        tail = live.submit(args.message)
        submit_ms = (time.perf_counter() - t0) * 1e3
        ttft, early = first_token_ms(inference, args.max_tokens)
        print(f"incremental prefill: time to first token {submit_ms + ttft:7.1f} ms "
              f"({tail} tokens left at submit, {live.decoded} decoded in all)")
        print(f"same answer: {early.tokens == plain.tokens}")
        print(f"answer: {early.text}")


if __name__ == "__main__":
    main()
