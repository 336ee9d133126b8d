"""Greedy output through the low-level Context/Batch protocol equals ik's own llama-simple, token for token
(the tool is built from the same vendored tree by scripts/build_tools.sh)."""

from __future__ import annotations

import subprocess

import pytest

from helpers import greedy

PROMPTS = [
    "The capital of France is",
    "Here is a short story about a robot who learns to paint. Once upon a time, in a quiet workshop at the edge "
    "of a busy city, there lived a small robot named",
]


def llama_simple(tools, model_path, prompt: str, n_predict: int) -> str:
    out = subprocess.run([str(tools / "llama-simple"), "-m", str(model_path), "-p", prompt, "-n", str(n_predict),
                          "-t", "2"], capture_output=True, text=True, errors="replace", check=True)
    text = out.stderr
    start = text.index(prompt) + len(prompt)
    end = text.index("\nmain: decoded", start)
    return text[start:end].rstrip("\n")


@pytest.mark.parametrize("which", ["smollm", "gemma"])
@pytest.mark.parametrize("prompt", PROMPTS, ids=["short", "long"])
def test_greedy_equals_llama_simple(request, ik_tools, which, prompt):
    model = request.getfixturevalue(which)
    path = request.getfixturevalue(f"{which}_path")
    with model.context().with_n_ctx(1024).with_threads(2).build() as ctx:
        prompt_tokens = ctx.str_to_tokens(prompt, add_special=True)
        assert len(prompt_tokens) > 32 or prompt is PROMPTS[0]
        n_gen = 40
        ours = greedy(ctx, prompt_tokens, n_gen)
    # llama-simple's -n counts the prompt, so it prints n_gen tokens (fewer at end of generation).
    theirs = llama_simple(ik_tools, path, prompt, len(prompt_tokens) + n_gen)
    ours_text = model.detokenize(ours).rstrip("\n")
    assert ours_text == theirs
    assert len(ours) >= 10
