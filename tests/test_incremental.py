"""Incremental prefill: decoding while the user types must leave the cache exactly as a normal
prefill would, so the answer is the same; edits trim the cache from the first changed token."""

from __future__ import annotations

import pytest

import ikllama
from ikllama.chat import Formatter, Message, Role
from ikllama.incremental import IncrementalPrefill

MESSAGE = "Name three rivers in Europe and the seas they flow into."
SYSTEM = [Message(Role.SYSTEM, "You are a helpful assistant.")]


@pytest.fixture(scope="module")
def ctx(smollm):
    with smollm.context().with_n_ctx(1024).build() as c:
        yield c


def _plain(ctx, formatter, message, n=16):
    ctx.clear()
    with ikllama.SimpleInference(ctx) as inf:
        inf.prefill(formatter.format([*SYSTEM, Message(Role.USER, message)]))
        return ctx.tokens(0), inf.generate(n)


def test_typing_then_submit_equals_plain_prefill(ctx, smollm):
    formatter = Formatter.for_model(smollm)
    plain_tokens, plain = _plain(ctx, formatter, MESSAGE)
    ctx.clear()
    with ikllama.SimpleInference(ctx) as inf:
        live = IncrementalPrefill.for_chat(inf, formatter, SYSTEM)
        for i in range(1, len(MESSAGE) + 1):
            live.update(MESSAGE[:i])
        left = live.submit(MESSAGE)
        assert ctx.tokens(0) == plain_tokens
        # Only the held-back tokens and the template's end of turn remain at submit.
        footer = len(smollm.tokenize(live.after, False, True))
        assert left <= live.holdback + footer + 1
        answer = inf.generate(16)
    assert answer.tokens[0] == plain.tokens[0]
    assert answer.tokens == plain.tokens


def test_update_holds_back_the_last_tokens(ctx, smollm):
    ctx.clear()
    with ikllama.SimpleInference(ctx) as inf:
        live = IncrementalPrefill(inf, before="Question: ", holdback=2)
        live.update("What is the tallest mountain")
        full = smollm.tokenize("Question: What is the tallest mountain", smollm.add_bos, True)
        assert ctx.tokens(0) == full[:-2]
        live.update("What is the tallest mountain in Africa")
        full = smollm.tokenize("Question: What is the tallest mountain in Africa", smollm.add_bos, True)
        assert ctx.tokens(0) == full[:-2]


def test_edit_trims_from_the_first_difference(ctx, smollm):
    ctx.clear()
    with ikllama.SimpleInference(ctx) as inf:
        live = IncrementalPrefill(inf, before="Note: ", holdback=0)
        live.update("the quick brown fox jumps over the lazy dog")
        before = ctx.tokens(0)
        decoded = live.decoded
        live.update("the quick red fox jumps over the lazy dog")  # edit in the middle
        after = ctx.tokens(0)
        expected = smollm.tokenize("Note: the quick red fox jumps over the lazy dog", smollm.add_bos, True)
        assert after == expected
        same = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b)
        # Everything from the first changed token was decoded again, nothing before it.
        assert live.decoded - decoded == len(after) - same


def test_submit_of_fully_decoded_text_still_yields_logits(ctx, smollm):
    ctx.clear()
    with ikllama.SimpleInference(ctx) as inf:
        live = IncrementalPrefill(inf, before="Count: one, two,", holdback=0)
        live.update(" three,")
        assert live.submit(" three,") == 1  # the last token is decoded again for its logits
        assert inf.generate(4).text.strip()


def test_bad_holdback():
    with pytest.raises(ValueError, match="holdback"):
        IncrementalPrefill.__init__(object.__new__(IncrementalPrefill), None, holdback=-1)  # type: ignore[arg-type]
