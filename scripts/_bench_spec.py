"""Speculative section of scripts/bench.py: tokens/s and acceptance with and without each session.

- prompt lookup on a repetitive prompt (SmolLM2; the model copies a line over and over),
- SmolLM2 drafting for itself and a Q8_0 requantized SmolLM2 drafting for the Q4_1 original,
- MTP on the tiny predictive and random GLM4-MoE models the test suite writes.
Every speculative run is also checked to give the same tokens as the plain run.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

REPETITIVE = ("Write the sentence 'The quick brown fox jumps over the lazy dog.' twenty times, one per line:\n"
              "The quick brown fox jumps over the lazy dog.\nThe quick brown fox jumps over the lazy dog.\n")


def _run(ctx: Any, prompt: str, n_gen: int, session: Any = None, prefill_hook: bool = False) -> tuple[list, float]:
    import ikllama

    ctx.clear()
    with ikllama.SimpleInference(ctx, speculative=session if prefill_hook else None) as inf:
        inf.prefill(prompt)
        t0 = time.perf_counter()
        answer = inf.generate(n_gen, ignore_eos=True, speculative=session)
        return answer.tokens, len(answer.tokens) / (time.perf_counter() - t0)


def _line(label: str, plain: tuple[list, float], spec: tuple[list, float], stats: Any) -> str:
    same = "same tokens" if plain[0] == spec[0] else "DIFFERENT TOKENS"
    return (f"{label:<36} plain {plain[1]:7.1f} t/s | speculative {spec[1]:7.1f} t/s | x{spec[1] / plain[1]:.2f} | "
            f"acceptance {stats.acceptance_rate:.2f} ({stats.accepted}/{stats.drafted}), "
            f"{stats.tokens_per_batch:.2f} tokens/decode | {same}")


def run(tools: Path, threads: int, n_gen: int = 192) -> list[str]:
    import ikllama
    from ikllama.models import SMOLLM2_135M, fetch
    from ikllama.testing.tiny_glm4moe import write_tiny_glm4moe

    lines = []
    path = fetch(SMOLLM2_135M)
    with tempfile.TemporaryDirectory() as tmp, ikllama.ModelConfig().load_gguf(path) as model, \
            model.context().with_n_ctx(2048).with_threads(threads).build() as ctx:
        prompt = REPETITIVE
        _run(ctx, "warm up", 8)
        plain = _run(ctx, prompt, n_gen)
        lookup = ikllama.PromptLookupSession()
        lines.append(_line("prompt lookup, repetitive prompt", plain, _run(ctx, prompt, n_gen, lookup), lookup.stats))

        story = ("<|im_start|>user\nWrite a long essay about the history of Rome.<|im_end|>\n"
                 "<|im_start|>assistant\n")
        plain = _run(ctx, story, n_gen)
        with ikllama.ModelConfig().load_gguf(path) as same, \
                ikllama.DraftModelSession(same, n_threads=threads) as draft:
            lines.append(_line("draft: SmolLM2 for itself", plain, _run(ctx, story, n_gen, draft), draft.stats))
        q8 = Path(tmp) / "smollm2-q8_0.gguf"
        subprocess.run([str(tools / "llama-quantize"), "--allow-requantize", str(path), str(q8), "Q8_0"],
                       check=True, capture_output=True)
        with ikllama.ModelConfig().load_gguf(q8) as other, \
                ikllama.DraftModelSession(other, n_threads=threads) as draft:
            lines.append(_line("draft: Q8_0 SmolLM2 for Q4_1", plain, _run(ctx, story, n_gen, draft), draft.stats))

        for variant in ("predictive", "random"):
            tiny = write_tiny_glm4moe(Path(tmp) / f"tiny-{variant}.gguf", variant=variant)
            with ikllama.ModelConfig(mtp=True).load_gguf(tiny) as glm, \
                    glm.context().with_mtp(True).with_n_ctx(1024).with_n_batch(64).with_threads(threads).build() as gctx:
                plain = _run(gctx, "Hello world, this is", n_gen)
                with ikllama.MtpSession(glm, n_ctx=1024, n_threads=threads) as mtp:
                    spec = _run(gctx, "Hello world, this is", n_gen, mtp, prefill_hook=True)
                    lines.append(_line(f"MTP, tiny GLM4-MoE ({variant} head)", plain, spec, mtp.stats))
    return lines
