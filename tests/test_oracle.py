"""``SimpleOracle``: a multi-turn chat kept in the KV cache (SmolLM2), measured with ik's own counters."""

from __future__ import annotations

import pytest

from ikllama import Message, Role, SamplerConfig, SimpleOracle
from ikllama.batch import common_prefix

SYSTEM = ("You are a patient teacher of geography. You answer questions about countries, capitals, rivers and "
          "mountains in one or two short sentences, and you never make anything up.")


def prompt_tokens(oracle: SimpleOracle, messages: list[Message]) -> list[int]:
    """The tokens the oracle decodes for ``messages``: its template with the generation prompt."""
    text = oracle.formatter.format(messages, add_generation_prompt=True)
    bos = oracle.formatter.bos_token
    model = oracle.ctx.model
    return model.tokenize(text, model.add_bos and not (bos and text.startswith(bos)), True)


def ask_counted(oracle: SimpleOracle, text: str, fork_id: int = 0, **kw):
    """Ask, and return (answer, prompt tokens decoded, tokens ik should have decoded, full prompt length)."""
    ctx = oracle.ctx
    full = prompt_tokens(oracle, [*oracle.history(fork_id), Message(Role.USER, text)])
    keep = min(common_prefix(ctx.tokens(fork_id), full), len(full) - 1)
    ctx.reset_timings()
    answer = oracle.ask(text, fork_id, **kw)
    return answer, ctx.timings().n_p_eval, len(full) - keep, len(full)


@pytest.fixture()
def ctx(smollm):
    with smollm.context().with_n_ctx(1024).with_n_seq_max(3).build() as c:
        yield c


def test_each_turn_decodes_only_the_new_tokens(ctx):
    oracle = SimpleOracle(ctx, system=SYSTEM, max_tokens=24)
    questions = ["What is the capital of France?", "Which river flows through it?", "And the capital of Italy?"]
    answer, decoded, expected, full = ask_counted(oracle, questions[0])
    assert decoded == expected == full  # an empty fork: the whole prompt
    for question in questions[1:]:
        answer, decoded, expected, full = ask_counted(oracle, question)
        assert decoded == expected, (decoded, expected)
        assert 1 < expected < full // 3, (expected, full)  # the new turn, not the conversation
        assert answer.text and answer.finish_reason in ("stop", "length")
    history = oracle.history()
    assert [m.role.kind for m in history] == ["system"] + ["user", "assistant"] * 3
    assert [m.content for m in history[1::2]] == questions
    # The cache holds exactly the rendered conversation (plus the last answer).
    last_prompt = prompt_tokens(oracle, history[:-1])
    assert ctx.tokens(0)[:len(last_prompt)] == last_prompt


def test_overflow_evicts_old_turns_and_keeps_the_system_prompt(smollm):
    with smollm.context().with_n_ctx(256).build() as ctx:
        oracle = SimpleOracle(ctx, system="You are a terse assistant.", max_tokens=40)
        seen = []
        for i in range(8):
            question = (f"Question number {i + 1}: please name one large city in a country of your choice and say "
                        "in a few words why people like to visit it.")
            answer = oracle.ask(question)
            assert answer.tokens and answer.finish_reason in ("stop", "length"), (i, answer)
            history = oracle.history()
            assert history[0] == Message(Role.SYSTEM, "You are a terse assistant.")
            assert history[-2].content == question and history[-1].role == Role.ASSISTANT
            assert ctx.n_past(0) <= ctx.n_ctx
            # The cache was trimmed where the text changed: it holds the conversation as it stands now.
            prompt = prompt_tokens(oracle, history[:-1])
            assert ctx.tokens(0)[:len(prompt)] == prompt
            seen.append(oracle.evicted.get(0, 0))
        # At most ~4 exchanges fit in 256 tokens: at least 3 of the 8 must have gone.
        assert seen == sorted(seen) and seen[0] == 0 and seen[-1] >= 2 * 3
        assert seen[-1] % 2 == 0  # whole exchanges go: a user turn with its answer
        assert len(oracle.history()) == 1 + 2 * 8 - seen[-1]


def test_fork_shares_the_prefix_and_branches(ctx):
    oracle = SimpleOracle(ctx, system=SYSTEM, max_tokens=24)
    oracle.ask("What is the capital of France?")
    trunk = list(oracle.history(0))
    oracle.fork(0, 1)
    oracle.fork(0, 2)
    assert oracle.history(1) == oracle.history(2) == trunk and oracle.history(1) is not oracle.history(0)
    assert ctx.tokens(1) == ctx.tokens(2) == ctx.tokens(0)
    answers = []
    for fork, seed in ((1, 1), (2, 2)):
        answer, decoded, expected, full = ask_counted(oracle, "Tell me a short story about a fox.", fork,
                                                      sampling=SamplerConfig(temperature=1.0, seed=seed),
                                                      max_tokens=20)
        assert decoded == expected < full // 3  # the shared conversation was not decoded again
        answers.append(answer.text)
    assert answers[0] != answers[1]
    assert oracle.history(0) == trunk  # the trunk is untouched
    for fork, text in zip((1, 2), answers):
        assert oracle.history(fork)[:-2] == trunk and oracle.history(fork)[-1].content == text
    # Both branches start with the trunk's cache (its conversation up to the end of its answer).
    shared = common_prefix(ctx.tokens(0), prompt_tokens(oracle, trunk))
    assert shared >= ctx.n_past(0) - 2
    assert ctx.tokens(1)[:shared] == ctx.tokens(2)[:shared] == ctx.tokens(0)[:shared]
    assert ctx.tokens(1)[shared:] != ctx.tokens(2)[shared:]


def test_reset_forgets_the_conversation(ctx):
    oracle = SimpleOracle(ctx, system=SYSTEM, max_tokens=12)
    oracle.ask("What is the capital of Spain?")
    oracle.reset(0)
    assert oracle.history(0) == [Message(Role.SYSTEM, SYSTEM)] and ctx.n_past(0) == 0
    answer, decoded, expected, full = ask_counted(oracle, "What is the capital of Spain?")
    assert decoded == expected == full  # nothing cached any more
    assert len(oracle.history()) == 3


def test_stream_adds_the_reply_at_the_end(ctx):
    oracle = SimpleOracle(ctx, max_tokens=16)
    stream = oracle.ask("Name three colours.", stream=True)
    assert oracle.history() == []  # the turn joins the history only once answered
    pieces = list(stream)
    assert len(pieces) > 1
    assert oracle.history()[0] == Message(Role.USER, "Name three colours.")
    reply = oracle.history()[-1]
    assert reply.role == Role.ASSISTANT and reply.content == "".join(pieces) == stream.answer.text
    # The next turn builds on the streamed one.
    answer, decoded, expected, full = ask_counted(oracle, "And three animals?")
    assert decoded == expected < full // 2 and answer.text
