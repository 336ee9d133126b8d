"""Speculative decoding is lossless: prompt lookup and draft models give, token for token, what plain
generation gives (greedy and seeded sampling, stop strings, parallel forks, after KV edits), and the
sampled distribution at draft-verified rows is the model's own."""

from __future__ import annotations

import math
import subprocess
from collections import Counter

import numpy as np
import pytest

import ikllama
from ikllama import LLM, DraftModelSession, Pos, PromptLookupSession, SimpleInference, SpeculativeStats
from ikllama.sampling import Sampler, SamplerConfig
from ikllama.speculative import check_same_vocab

# The model copies the line over and over: prompt lookup drafts (and the main model accepts) whole lines.
FOX = ("Write the sentence 'The quick brown fox jumps over the lazy dog.' twenty times, one per line:\n"
       "The quick brown fox jumps over the lazy dog.\nThe quick brown fox jumps over the lazy dog.\n")
# Code that is partly repeated, partly changed: drafts are sometimes right, sometimes not.
FIB = ("Here is a Python function:\n```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
       "        a, b = b, a + b\n    return a\n```\nRepeat the function exactly:\n```python\n")
# Free prose of 256+ tokens: nothing to look up, so only a draft model helps.
ROME = ("<|im_start|>user\nWrite a long essay about the history of Rome.<|im_end|>\n"
        "<|im_start|>assistant\n")
SEEDED = SamplerConfig(seed=1234, temperature=0.9)


def context(model: ikllama.Model, n_ctx: int = 1024, n_seq: int = 1) -> ikllama.Context:
    return model.context().with_n_ctx(n_ctx).with_n_seq_max(n_seq).with_threads(1).build()


def generate(model, prompt, n, *, session=None, sampling=None, stop=()):
    """(Answer, the fork's cached tokens afterwards) of one generation on a fresh context."""
    with context(model) as ctx, SimpleInference(ctx, sampling=sampling) as inf:
        inf.prefill(prompt)
        answer = inf.generate(n, stop=stop, speculative=session)
        return answer, ctx.tokens(0)


_plain: dict[tuple[str, int], ikllama.Answer] = {}


def plain(model, prompt, n):
    """Plain greedy generation, computed once per (prompt, n)."""
    if (prompt, n) not in _plain:
        _plain[prompt, n] = generate(model, prompt, n)[0]
    return _plain[prompt, n]


@pytest.fixture(scope="module")
def smollm_q8(smollm_path, ik_tools, tmp_path_factory):
    """SmolLM2 requantized from Q4_1 to Q8_0 by ik's llama-quantize: same vocabulary, other weights."""
    out = tmp_path_factory.mktemp("requant") / "smollm2-q8_0.gguf"
    subprocess.run([str(ik_tools / "llama-quantize"), "--allow-requantize", str(smollm_path), str(out), "Q8_0", "1"],
                   check=True, capture_output=True, timeout=300)
    with ikllama.ModelConfig().load_gguf(out) as model:
        yield model


# -- prompt lookup ----------------------------------------------------------------------------------------
def test_prompt_lookup_on_repetitive_text_is_lossless_and_fast(smollm):
    session = PromptLookupSession()
    answer, _ = generate(smollm, FOX, 256, session=session)
    expected = plain(smollm, FOX, 256)
    assert len(expected.tokens) == 256
    assert answer.tokens == expected.tokens and answer.text == expected.text
    st = session.stats
    assert st.generated == 256 and st.accepted <= st.drafted
    assert st.acceptance_rate >= 0.9, st
    assert st.tokens_per_batch > 1.5, st
    assert st.tokens_per_second > 0 and st.seconds > 0


def test_prompt_lookup_with_rejected_drafts_is_lossless(smollm):
    session = PromptLookupSession()
    answer, cached = generate(smollm, FIB, 256, session=session)
    expected = plain(smollm, FIB, 256)
    assert answer.tokens == expected.tokens and answer.finish_reason == expected.finish_reason
    assert 0 < session.stats.accepted < session.stats.drafted  # both paths of the verification ran
    prompt = smollm.tokenize(FIB, True, True)
    assert cached == prompt + answer.tokens[:-1] or cached == prompt + answer.tokens  # no rejected draft left


def test_session_arguments_are_checked():
    with pytest.raises(ValueError, match="n_draft_max"):
        PromptLookupSession(n_draft_max=0)
    with pytest.raises(ValueError, match="ngram_min"):
        PromptLookupSession(ngram_min=5, ngram_max=3)


# -- draft model -------------------------------------------------------------------------------------------
def test_draft_model_drafting_for_itself_accepts_nearly_everything(smollm):
    with DraftModelSession(smollm, n_threads=1) as session:
        answer, _ = generate(smollm, ROME, 256, session=session)
    expected = plain(smollm, ROME, 256)
    assert len(expected.tokens) == 256 and answer.tokens == expected.tokens
    assert session.stats.acceptance_rate >= 0.95, session.stats
    assert session.stats.tokens_per_batch > 4


def test_requantized_draft_model_is_lossless(smollm, smollm_q8):
    with DraftModelSession(smollm_q8, n_threads=1) as session:
        answer, _ = generate(smollm, ROME, 256, session=session)
    assert answer.tokens == plain(smollm, ROME, 256).tokens
    assert 0.3 < session.stats.acceptance_rate < 1.0, session.stats


def test_draft_model_with_another_vocabulary_is_refused(smollm, gemma):
    with pytest.raises(ValueError, match="vocabulary"):
        check_same_vocab(smollm, gemma)
    with DraftModelSession(gemma, n_threads=1) as session, context(smollm) as ctx, SimpleInference(ctx) as inf:
        inf.prefill(FOX)
        with pytest.raises(ValueError, match="vocabulary"):
            inf.generate(8, speculative=session)
        assert ctx.n_past(0) == len(smollm.tokenize(FOX, True, True))  # nothing was generated


def test_draft_context_must_serve_every_fork(smollm):
    with DraftModelSession(smollm, n_threads=1) as session, context(smollm, n_seq=2) as ctx, \
            SimpleInference(ctx) as inf:
        inf.prefill(FOX)
        with pytest.raises(ValueError, match="n_seq_max=2"):
            inf.generate(8, speculative=session)


# -- stop strings, seeded sampling ---------------------------------------------------------------------------
def test_stop_strings_with_speculation(smollm):
    # The stop string ends inside an accepted draft: the rest of the verified batch must go.
    stop = ["lazy dog.\nThe quick brown fox jumps over the lazy dog.\nThe quick brown fox jumps over the lazy"]
    base, base_cache = generate(smollm, FOX, 256, stop=stop)
    assert base.stop_string == stop[0] and base.finish_reason == "stop" and len(base.tokens) < 256
    for session in (PromptLookupSession(), DraftModelSession(smollm, n_threads=1)):
        with session:
            answer, cache = generate(smollm, FOX, 256, session=session, stop=stop)
        assert (answer.text, answer.tokens, answer.stop_string) == (base.text, base.tokens, base.stop_string)
        assert cache == base_cache
        assert session.stats.accepted > 0


def test_seeded_sampling_is_identical_with_each_session(smollm, smollm_q8):
    base, _ = generate(smollm, ROME, 64, sampling=SEEDED)
    other, _ = generate(smollm, ROME, 64, sampling=SamplerConfig(seed=99, temperature=0.9))
    assert other.tokens != base.tokens  # the seed matters: the comparison below means something
    sessions = [PromptLookupSession(), DraftModelSession(smollm, n_threads=1),
                DraftModelSession(smollm_q8, n_threads=1)]
    for session in sessions:
        with session:
            answer, _ = generate(smollm, ROME, 64, sampling=SEEDED, session=session)
        assert answer.tokens == base.tokens, type(session).__name__
    assert sessions[1].stats.accepted > 10 and sessions[2].stats.accepted > 10
    fox_base, _ = generate(smollm, FOX, 64, sampling=SEEDED)
    with PromptLookupSession() as session:
        fox, _ = generate(smollm, FOX, 64, sampling=SEEDED, session=session)
    assert fox.tokens == fox_base.tokens and session.stats.accepted > 20


def test_sampled_distribution_at_verified_rows_matches_the_model(smollm):
    """Chi-square over many seeds: tokens 2 and 3 (sampled from rows of verification batches, token 3 from
    a draft's row when token 2 accepted it) follow the model's probabilities given what came before."""
    config = dict(temperature=1.0, top_k=3, top_p=1.0, min_p=0.0)
    prompt = "My favourite food is"
    n_seeds = 240
    samples = []
    with context(smollm, 256) as ctx, SimpleInference(ctx) as inf, \
            DraftModelSession(smollm, n_draft_max=2, n_threads=1) as session:
        inf.prefill(prompt)
        checkpoint = inf.save()
        for seed in range(n_seeds):
            answer = inf.generate(3, sampling=SamplerConfig(seed=seed, **config), speculative=session)
            samples.append(tuple(answer.tokens))
            inf.rollback(checkpoint)
        assert session.stats.drafted >= n_seeds and session.stats.accepted > n_seeds // 10
        # The model's probabilities, from plain single-token decodes of each prefix seen.
        prompt_tokens = ctx.tokens(0)
        probs: dict[tuple[int, ...], dict[int, float]] = {}
        with Sampler.create(SamplerConfig(seed=0, **config), smollm) as sampler:
            for prefix in {s[:k] for s in samples for k in (1, 2) if len(s) > k}:
                ctx.truncate(Pos(len(prompt_tokens), 0))
                batch = ctx.new_batch(len(prefix))
                batch.add_sequence(list(prefix), Pos(len(prompt_tokens), 0))
                ctx.decode(batch)
                row = len(prefix) - 1
                top = np.argsort(ctx.logits(row))[-3:]
                probs[prefix] = {int(t): sampler.prob(ctx, row, int(t)) for t in top}
                assert abs(sum(probs[prefix].values()) - 1.0) < 1e-3  # top_k=3: all the mass
    chi2, dof = 0.0, 0
    for k in (1, 2):  # token 2 given token 1, token 3 given tokens 1-2
        groups = Counter(s[:k] for s in samples if len(s) > k)  # (a sample may end at EOS)
        for prefix, n in groups.items():
            seen = Counter(s[k] for s in samples if len(s) > k and s[:k] == prefix)
            assert set(seen) <= set(probs[prefix])  # never a token outside the model's top 3
            for token, p in probs[prefix].items():
                expected = n * p
                if expected >= 5:
                    chi2 += (seen[token] - expected) ** 2 / expected
                    dof += 1
    assert dof >= 6
    # Far beyond the 99.9th percentile of chi-square(dof) only if the distribution is wrong.
    assert chi2 < dof + 4.5 * math.sqrt(2 * dof), (chi2, dof)


# -- parallel, KV edits, LLM ----------------------------------------------------------------------------------
def test_parallel_forks_with_prompt_lookup(smollm):
    """Three forks of repeated lines (one ends early at EOS). Clear-cut greedy choices on purpose: with
    several forks, the cache layout (which differs with and without drafts) moves logits by up to ~0.2
    on SmolLM2 (the known multi-sequence difference), enough to flip the near-ties of free prose."""
    def lines(s):
        return f"Write the sentence '{s}' twenty times, one per line:\n{s}\n{s}\n"

    prompts = [FOX, lines("I love to eat red apples in the morning."), lines("Rome is the capital city of Italy.")]

    def run(session):
        with context(smollm, 2048, n_seq=3) as ctx, SimpleInference(ctx) as inf:
            for fork, p in enumerate(prompts):
                inf.prefill(p, fork)
            return inf.generate_parallel([0, 1, 2], 128, speculative=session)

    base = run(None)
    assert len(base[0].tokens) == 128 and len(base[2].tokens) < 128
    session = PromptLookupSession()
    spec = run(session)
    for fork in range(3):
        assert spec[fork].tokens == base[fork].tokens, fork
        assert spec[fork].text == base[fork].text
    st = session.stats
    assert 100 < st.accepted < st.drafted and st.generated == sum(len(a.tokens) for a in base)
    assert st.tokens_per_batch > 3


def test_after_truncate_back_to_the_prompt(smollm):
    for session in (PromptLookupSession(), DraftModelSession(smollm, n_threads=1)):
        with session, context(smollm) as ctx, SimpleInference(ctx) as inf:
            n = inf.prefill(ROME)
            checkpoint = inf.save()
            first = inf.generate(96, speculative=session)
            inf.rollback(checkpoint)  # truncates the fork back to the prompt (the draft cache still runs ahead)
            assert ctx.n_past(0) == n
            again = inf.generate(96, speculative=session)
            assert again.tokens == first.tokens == plain(smollm, ROME, 256).tokens[:96]


def test_generate_after_context_truncate(smollm):
    """``ctx.truncate`` directly (not ``rollback``) between two generations: the next one must re-derive its
    first logits row, which the truncation removed."""
    n = len(smollm.tokenize(FOX, True, True))
    for session in (None, PromptLookupSession()):
        with context(smollm) as ctx, SimpleInference(ctx) as inf:
            inf.prefill(FOX)
            first = inf.generate(32, speculative=session)
            ctx.truncate(Pos(n, 0))
            assert inf.generate(32, speculative=session).tokens == first.tokens


def test_after_cut_in_the_middle_of_the_prompt(smollm):
    n = len(smollm.tokenize(FIB, True, True))

    def run(session):
        with context(smollm) as ctx, SimpleInference(ctx) as inf:
            inf.prefill(FIB)
            ctx.cut(Pos(10, 0), Pos(20, 0))  # re-encodes the rest of the prompt
            assert ctx.n_past(0) == n - 10
            return inf.generate(128, speculative=session).tokens

    base = run(None)
    for session in (PromptLookupSession(), DraftModelSession(smollm, n_threads=1)):
        with session:
            assert run(session) == base
            assert session.stats.accepted > 0


def test_llm_create_completion_with_prompt_lookup(smollm_path):
    with LLM(smollm_path, n_ctx=1024, n_threads=1) as llm:
        for kwargs in ({"temperature": 0.0}, {"temperature": 0.9, "seed": 5}):
            base = llm.create_completion(FOX, max_tokens=128, **kwargs)
            session = PromptLookupSession()
            spec = llm.create_completion(FOX, max_tokens=128, speculative=session, **kwargs)
            assert spec["choices"][0]["text"] == base["choices"][0]["text"]
            assert spec["usage"] == base["usage"]
            assert session.stats.accepted > 20
            chunks = llm.create_completion(FOX, max_tokens=128, stream=True, speculative=PromptLookupSession(),
                                           **kwargs)
            assert "".join(c["choices"][0]["text"] for c in chunks) == base["choices"][0]["text"]


def test_stats_dataclass():
    st = SpeculativeStats()
    assert (st.drafted, st.accepted, st.batches, st.generated) == (0, 0, 0, 0)
    assert st.acceptance_rate == 0.0 and st.tokens_per_second == 0.0 and st.tokens_per_batch == 0.0
    st = SpeculativeStats(drafted=10, accepted=4, batches=5, generated=12, seconds=2.0)
    assert st.acceptance_rate == 0.4 and st.tokens_per_second == 6.0 and st.tokens_per_batch == 2.4
