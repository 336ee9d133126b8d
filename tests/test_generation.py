"""The generation layer (``Context.inference``, ``SimpleInference``, ``Answer``, brakes, stop strings) on real
models: greedy output equals ik's own llama-cli, and every way an answer can end is exercised."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from ikllama import AnswerStatus, Brake, SamplerConfig, SimpleInference, token_limit

THREADS = 1  # two cores shared with a compiler: one thread avoids OpenMP spin contention (same for llama-cli)
N_CTX = 512
PROMPT = "The capital of France is"  # SmolLM2 greedy: " Paris.\n\nThe answer is: 2018-01-22 12:12:53." + EOS
CLI_PROMPTS = [PROMPT, "def fibonacci(n):", "Here is a list of three colors:"]


@pytest.fixture(scope="module")
def ctx(smollm):
    with smollm.context().with_n_ctx(N_CTX).with_n_seq_max(2).with_threads(THREADS).build() as c:
        yield c


@pytest.fixture
def inf(ctx):
    ctx.clear()
    with SimpleInference(ctx) as i:
        yield i


def fresh(inf, prompt: str = PROMPT, fork: int = 0):
    inf.ctx.drop(fork)
    inf.reset_sampler(fork)
    inf.prefill(prompt, fork)


def pieces(ctx, tokens: list[int]) -> list[bytes]:
    return [ctx.token_to_bytes(t) for t in tokens]


# -- greedy equals ik's llama-cli ------------------------------------------------------------------------

def llama_cli(tools, model_path, prompt: str, n_predict: int) -> str:
    """ik's llama-cli, greedy, printing only the generated text on stdout.

    It tokenizes the prompt like ``SimpleInference.prefill`` on an empty fork (``common_tokenize(ctx,
    prompt, add_special=true, parse_special=true)``: BOS where the model asks for one), runs no chat
    template without ``-cnv``, and prints pieces with ``special=false`` (an end-of-generation token
    prints nothing). ``-n`` counts generated tokens only. The sampler chain at ``--temp 0`` is argmax.
    ``--no-escape`` keeps the prompt as written; ``--no-warmup`` only skips an empty run.
    """
    out = subprocess.run([str(tools / "llama-cli"), "-m", str(model_path), "-p", prompt, "-n", str(n_predict),
                          "--temp", "0", "--no-display-prompt", "--no-escape", "--no-warmup", "--simple-io",
                          "-t", str(THREADS), "-c", str(N_CTX), "-s", "1"],
                         capture_output=True, stdin=subprocess.DEVNULL, check=True, timeout=300)
    return out.stdout.decode("utf-8")


@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_greedy_inference_equals_llama_cli(request, ik_tools, which):
    model = request.getfixturevalue(which)
    path = request.getfixturevalue(f"{which}_path")
    n = 30
    with model.context().with_n_ctx(N_CTX).with_threads(THREADS).build() as c:
        ours = [c.inference(p, n) for p in CLI_PROMPTS]
    for prompt, text in zip(CLI_PROMPTS, ours):
        assert text == llama_cli(ik_tools, path, prompt, n), prompt
    assert all(len(t) > 20 for t in ours)


# -- stop strings -----------------------------------------------------------------------------------------

def split_stop(ctx, tokens: list[int]) -> tuple[str, int, int]:
    """A stop string made of the end of token ``i`` and the start of token ``i + 1``, first seen at that
    boundary; returns it, its offset in the text and ``i``."""
    texts = [p.decode() for p in pieces(ctx, tokens)]
    full = "".join(texts)
    offset = 0
    for i in range(len(texts) - 1):
        offset += len(texts[i])
        left, right = texts[i].strip(), texts[i + 1]
        if i > 0 and len(left) >= 2 and len(right.strip()) >= 2:
            stop = texts[i][-2:] + right[:2]
            if full.find(stop) == offset - 2:
                return stop, offset - 2, i
    raise AssertionError(f"no token boundary to split in {full!r}")


def test_stop_string_spanning_tokens(inf):
    fresh(inf)
    greedy = inf.generate(30)
    full = greedy.text
    stop, at, i = split_stop(inf.ctx, greedy.tokens)
    fresh(inf)
    answer = inf.generate(30, stop=["never there", stop])
    assert answer.text == full[:at] and at > 0  # ends right before the stop string: nothing of it leaked
    assert answer.stop_string == stop
    assert answer.complete and answer.finish_reason == "stop"
    assert answer.tokens == greedy.tokens[:i + 2]  # generation ended on the token completing the stop
    fresh(inf)
    stream = inf.generate(30, stop=[stop], stream=True)
    streamed = list(stream)
    assert "".join(streamed) == stream.answer.text == full[:at]
    assert stream.answer.stop_string == stop
    assert all(stop not in "".join(streamed[:k + 1]) for k in range(len(streamed)))


def test_stop_string_prefix_held_back_then_released(inf):
    """Text that starts like a stop string is held until it turns out not to be one, then emitted."""
    fresh(inf)
    greedy = inf.generate(30)
    first, second = (p.decode() for p in pieces(inf.ctx, greedy.tokens[:2]))
    stop = first + "\x00"  # the whole first piece starts it; the second piece shows it is not one
    fresh(inf)
    stream = inf.generate(30, stop=[stop], stream=True)
    streamed = list(stream)
    assert streamed[0] == first + second  # held for one token, then released together
    assert "".join(streamed) == greedy.text and stream.answer.stop_string is None
    assert stream.answer.complete  # ended at EOS


# -- multi-byte characters -------------------------------------------------------------------------------------

CJK = "Chinese: 你好，我的名字是"  # SmolLM2 answers with CJK characters split over two byte-level tokens each


def test_multibyte_characters_split_across_tokens(inf):
    fresh(inf, CJK)
    stream = inf.generate(20, stream=True)
    streamed = list(stream)
    answer = stream.answer
    raw = b"".join(pieces(inf.ctx, answer.tokens))
    assert any(not _valid_utf8(p) for p in pieces(inf.ctx, answer.tokens))  # some token is half a character
    assert all("\ufffd" not in p for p in streamed)
    assert "".join(streamed) == answer.text == raw.decode("utf-8")
    assert any(ord(ch) > 0x2E80 for ch in answer.text)


def test_multibyte_characters_forced_by_a_grammar(inf):
    """A grammar on text forces CJK characters that SmolLM2 spells as byte tokens: no piece is broken."""
    fresh(inf)
    stream = inf.generate(20, stream=True, sampling=SamplerConfig.greedy(grammar='root ::= "你好世界"'))
    streamed = list(stream)
    tokens = stream.answer.tokens
    assert stream.answer.text == "".join(streamed) == "你好世界" and stream.answer.complete
    assert any(not _valid_utf8(p) for p in pieces(inf.ctx, tokens))
    assert all(p and "\ufffd" not in p for p in streamed)
    assert len(streamed) < len(tokens)  # byte tokens were joined before being emitted


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- brakes ---------------------------------------------------------------------------------------------------

@pytest.fixture
def greedy_pieces(inf):
    fresh(inf)
    answer = inf.generate(20)
    texts = [p.decode() for p in pieces(inf.ctx, answer.tokens)]
    assert "".join(texts) == answer.text
    return texts


def test_brake_finish_keeps_the_piece(inf, greedy_pieces):
    fresh(inf)
    answer = inf.generate(20, brakes=[lambda so_far, piece, n, fork: Brake.FINISH if n == 4 else Brake.CONTINUE])
    assert answer.text == "".join(greedy_pieces[:4])
    assert answer.complete and answer.finish_reason == "stop" and len(answer.tokens) == 4


def test_brake_stop_drops_the_piece_and_marks_partial(inf, greedy_pieces):
    fresh(inf)
    stream = inf.generate(20, stream=True,
                          brakes=[lambda so_far, piece, n, fork: Brake.STOP if n == 4 else Brake.CONTINUE])
    streamed = list(stream)
    assert stream.answer.text == "".join(streamed) == "".join(greedy_pieces[:3])
    assert stream.answer.partial and len(stream.answer.tokens) == 4


def test_brake_delay_holds_pieces_until_continue(inf, greedy_pieces):
    seen = []

    def brake(so_far, piece, n, fork):
        seen.append((so_far, piece))
        return Brake.DELAY if 2 <= n <= 4 else Brake.CONTINUE

    fresh(inf)
    stream = inf.generate(6, brakes=[brake], stream=True)
    streamed = list(stream)
    assert streamed == [greedy_pieces[0], "".join(greedy_pieces[1:5]), greedy_pieces[5]]
    assert stream.answer.text == "".join(greedy_pieces[:6])
    assert seen[3] == ("".join(greedy_pieces[:4]), greedy_pieces[3])  # the brake sees held text too
    assert stream.answer.partial and stream.answer.finish_reason == "length"


def test_brake_delay_then_stop_drops_what_was_held(inf, greedy_pieces):
    fresh(inf)
    answer = inf.generate(20, brakes=[lambda s, p, n, f: Brake.DELAY if n < 5 else Brake.STOP])
    assert answer.text == "" and answer.partial and len(answer.tokens) == 5


def test_brake_delay_released_at_the_end(inf, greedy_pieces):
    fresh(inf)
    answer = inf.generate(5, brakes=[lambda s, p, n, f: Brake.DELAY if n >= 3 else Brake.CONTINUE])
    assert answer.text == "".join(greedy_pieces[:5])  # the token limit releases held text, not drops it


def test_brake_next_ends_one_fork_others_continue(inf):
    fresh(inf, PROMPT, 0)
    fresh(inf, "Once upon a time", 1)
    calls = []

    def brake(so_far, piece, n, fork):
        calls.append(fork)
        return Brake.NEXT if fork == 0 and n == 3 else Brake.CONTINUE

    first, second = inf.generate_parallel([0, 1], 10, brakes=[brake])
    assert first.complete and len(first.tokens) == 3
    assert first.text == "".join(p.decode() for p in pieces(inf.ctx, first.tokens[:2]))
    assert second.partial and second.finish_reason == "length" and len(second.tokens) == 10
    assert calls.count(0) == 3 and calls.count(1) == 10


def test_token_limit(inf, greedy_pieces):
    fresh(inf)
    answer = inf.generate(20, brakes=[token_limit(5)])
    assert answer.text == "".join(greedy_pieces[:5]) and answer.complete and len(answer.tokens) == 5
    with pytest.raises(ValueError, match="token_limit"):
        token_limit(0)


# -- save / rollback --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampling", [None, SamplerConfig(temperature=1.0, seed=17)], ids=["greedy", "seeded"])
def test_rollback_then_generate_again_is_identical(ctx, sampling):
    ctx.clear()
    with SimpleInference(ctx, sampling=sampling or SamplerConfig.greedy()) as inf:
        inf.prefill(PROMPT)
        checkpoint = inf.save()
        n_prompt = ctx.n_past(0)
        first = inf.generate(20)
        assert ctx.n_past(0) > n_prompt
        inf.rollback(checkpoint)
        assert ctx.n_past(0) == n_prompt and ctx.tokens(0) == ctx.str_to_tokens(PROMPT)
        again = inf.generate(20)
    assert again.tokens == first.tokens and again.text == first.text


# -- parallel --------------------------------------------------------------------------------------------------

PARALLEL_PROMPTS = ["The capital of France is", "Once upon a time, a small robot", "def fibonacci(n):",
                    "The three primary colors are", "My favourite recipe for pancakes:", "In 1969, the first humans",
                    "Water boils at", "A haiku about autumn:"]


def _first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def _margins(ctx, inf, prompt: str, tokens: list[int]) -> list[float]:
    """Top-1 minus top-2 logit at each step of generating ``tokens`` alone (replayed one token at a time,
    the same single-token decodes generate() makes)."""
    ctx.clear()
    inf.prefill(prompt)
    row = ctx._outputs[-1]
    margins = []
    for token in tokens:
        top2 = np.sort(ctx.logits(row))[-2:]
        margins.append(float(top2[1] - top2[0]))
        ctx.decode_steps([(token, 0)])
        row = 0
    return margins


# When several sequences share the cache their cells interleave, and ik's SIMD softmax sums group the
# terms differently than for a sequence alone: last-bit differences, which stay invisible until one
# flips an int8 code of a requantized activation (traced layer by layer on SmolLM2). So the guarantee
# that holds is: token for token equal, except that a fork may take the other branch of a near-tie of
# the model itself. A real defect (a skipped or foreign KV cell, as fixed by patch 0005, with logits
# off by up to 39) diverges at confident steps and fails this test.
NEAR_TIE = 0.25


@pytest.mark.parametrize("n_forks", [4, 8])
def test_parallel_greedy_equals_each_prompt_alone(smollm, n_forks):
    prompts = PARALLEL_PROMPTS[:n_forks]
    with smollm.context().with_n_ctx(1024).with_n_seq_max(n_forks).with_threads(THREADS).build() as c, \
            SimpleInference(c) as inf:
        alone = []
        for prompt in prompts:
            c.clear()
            inf.prefill(prompt)
            alone.append(inf.generate(64).tokens)
        c.clear()
        for fork, prompt in enumerate(prompts):
            inf.prefill(prompt, fork)
        answers = inf.generate_parallel(list(range(n_forks)), 64)
        assert [a.fork_id for a in answers] == list(range(n_forks))
        identical = 0
        for i, answer in enumerate(answers):
            k = _first_difference(answer.tokens, alone[i])
            if k is None:
                identical += 1
                continue
            margin = _margins(c, inf, prompts[i], alone[i][:k + 1])[k]
            assert margin < NEAR_TIE, (prompts[i], k, margin)
    assert identical >= n_forks // 2  # most forks match all the way


# -- answer status ----------------------------------------------------------------------------------------------

def test_status_length(inf):
    fresh(inf)
    answer = inf.generate(5)
    assert answer.status is AnswerStatus.PARTIAL and answer.partial and answer.finish_reason == "length"
    assert len(answer.tokens) == 5


def test_status_stop_at_end_of_generation(inf, smollm):
    fresh(inf)
    answer = inf.generate(100)
    assert answer.status is AnswerStatus.COMPLETE and answer.finish_reason == "stop" and answer.stop_string is None
    assert 5 < len(answer.tokens) < 100 and not any(smollm.is_eog(t) for t in answer.tokens)


def test_status_context_full(smollm):
    with smollm.context().with_n_ctx(64).with_threads(THREADS).build() as c, SimpleInference(c) as inf:
        inf.prefill("Repeat after me: hello hello hello")  # SmolLM2 greedy: " hello" forever
        n_prompt = c.n_past(0)
        answer = inf.generate(1000)
        assert answer.status is AnswerStatus.INCOMPLETE and answer.finish_reason == "context"
        assert n_prompt + len(answer.tokens) == c.n_ctx
        assert c.n_past(0) == c.n_ctx - 1  # the last token was sampled, never decoded
