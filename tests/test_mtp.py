"""``MtpSession`` on the tiny GLM4-MoE + NextN model: the "predictive" variant's head drafts what the main
model emits (nearly all accepted), the "random" one's drafts are nearly all rejected, and either way the
output equals plain generation: greedy, seeded, with stop strings, after KV edits, in parallel forks."""

from __future__ import annotations

import pytest

import ikllama
from ikllama import LLM, MtpSession, Pos, SimpleInference, SpeculativeStats, UnsupportedConfigError
from ikllama.sampling import SamplerConfig
from ikllama.testing.tiny_glm4moe import write_tiny_glm4moe

PROMPT = "The quick brown fox jumps over"
VARIANTS = ("predictive", "random")


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_glm4moe_mtp")
    return {v: write_tiny_glm4moe(d / f"{v}.gguf", variant=v, seed=0) for v in VARIANTS}


@pytest.fixture(scope="module")
def tiny(tiny_paths):
    """Both variants loaded with mtp=True (ik keeps the NextN tensors)."""
    models = {v: ikllama.ModelConfig(mtp=True).load_gguf(p) for v, p in tiny_paths.items()}
    yield models
    for m in models.values():
        m.close()


def main_ctx(model, n_ctx: int = 1024, n_seq: int = 1) -> ikllama.Context:
    return model.context().with_mtp(True).with_n_ctx(n_ctx).with_n_seq_max(n_seq).with_threads(1).build()


def session(model, **kw) -> MtpSession:
    return MtpSession(model, n_threads=1, **kw)


def generate(model, n, *, mtp=None, sampling=None, stop=(), prompt=PROMPT):
    """(Answer, cached tokens) on a fresh MTP main context; ``mtp`` is also told about the prefill."""
    with main_ctx(model) as ctx, SimpleInference(ctx, sampling=sampling, speculative=mtp) as inf:
        inf.prefill(prompt)
        answer = inf.generate(n, stop=stop)
        return answer, ctx.tokens(0)


# -- acceptance and losslessness ------------------------------------------------------------------------------
def test_predictive_head_is_accepted_and_lossless(tiny):
    model = tiny["predictive"]
    base, base_cache = generate(model, 256)
    assert len(base.tokens) == 256
    with session(model, n_draft_max=3) as s:
        answer, cache = generate(model, 256, mtp=s)
    assert answer.tokens == base.tokens and answer.text == base.text and cache == base_cache
    st = s.stats
    assert st.acceptance_rate >= 0.9, st
    assert st.tokens_per_batch > 2, st
    assert st.generated == 256 and st.drafted >= 150 and st.tokens_per_second > 0


def test_random_head_is_rejected_and_lossless(tiny):
    model = tiny["random"]
    base, base_cache = generate(model, 256)
    assert len(base.tokens) == 256
    with session(model, n_draft_max=3) as s:
        answer, cache = generate(model, 256, mtp=s)
    assert answer.tokens == base.tokens and cache == base_cache
    assert s.stats.drafted > 200 and s.stats.acceptance_rate < 0.2, s.stats


@pytest.mark.parametrize("variant", VARIANTS)
def test_session_not_told_about_the_prefill_catches_up(tiny, variant):
    model = tiny[variant]
    base, _ = generate(model, 64)
    with session(model) as s, main_ctx(model) as ctx, SimpleInference(ctx) as inf:
        inf.prefill(PROMPT)  # the session never saw these decodes: it re-derives the hidden states
        assert inf.generate(64, speculative=s).tokens == base.tokens
    if variant == "predictive":
        assert s.stats.acceptance_rate >= 0.9


def test_p_min_stops_drafts_and_stays_lossless(tiny):
    model = tiny["random"]
    base, _ = generate(model, 128)
    with session(model, p_min=0.99) as s:
        answer, _ = generate(model, 128, mtp=s)
    assert answer.tokens == base.tokens
    assert s.stats.drafted == 0 and s.stats.batches > 100  # the random head is never that sure


# -- stop strings, sampling, edits, parallel --------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_stop_strings(tiny, variant):
    model = tiny[variant]
    full, _ = generate(model, 64)
    stop = full.text[60:72]
    assert stop and stop in full.text
    base, base_cache = generate(model, 64, stop=[stop])
    assert base.stop_string == stop and len(base.tokens) < 64
    with session(model) as s:
        answer, cache = generate(model, 64, mtp=s, stop=[stop])
    assert (answer.text, answer.tokens, answer.stop_string) == (base.text, base.tokens, base.stop_string)
    assert cache == base_cache


@pytest.mark.parametrize("variant", VARIANTS)
def test_seeded_sampling_is_identical(tiny, variant):
    model = tiny[variant]
    # min_p off: with the default 0.05 only the predictive model's top token would survive.
    sampling = SamplerConfig(seed=11, temperature=0.9, min_p=0.0)
    base, _ = generate(model, 128, sampling=sampling)
    assert base.tokens != generate(model, 128, sampling=SamplerConfig(seed=12, temperature=0.9, min_p=0.0))[0].tokens
    with session(model) as s:
        answer, _ = generate(model, 128, mtp=s, sampling=sampling)
    assert answer.tokens == base.tokens
    assert s.stats.drafted > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_truncate_back_to_the_prompt_and_regenerate(tiny, variant):
    model = tiny[variant]
    base, _ = generate(model, 96)
    with session(model) as s, main_ctx(model) as ctx, SimpleInference(ctx, speculative=s) as inf:
        n = inf.prefill(PROMPT)
        checkpoint = inf.save()
        first = inf.generate(96)
        inf.rollback(checkpoint)  # truncates the fork back to the prompt
        assert ctx.n_past(0) == n
        again = inf.generate(96)
        ctx.truncate(Pos(n - 3, 0))  # into the prompt, then the rest of it again
        inf.prefill(ctx.vocab.tokenize(PROMPT, False, False)[n - 3:])
        third = inf.generate(96)
    assert first.tokens == again.tokens == third.tokens == base.tokens


def test_cut_in_the_middle_of_the_prompt(tiny):
    model = tiny["predictive"]
    prompt = PROMPT + " the lazy dog and runs away into the forest"

    def run(s):
        with main_ctx(model) as ctx, SimpleInference(ctx, speculative=s) as inf:
            inf.prefill(prompt)
            ctx.cut(Pos(2, 0), Pos(5, 0))  # the MTP cache no longer matches: the session catches up
            return inf.generate(96).tokens

    base = run(None)
    with session(model) as s:
        assert run(s) == base
    assert s.stats.acceptance_rate >= 0.9


def test_parallel_forks(tiny):
    model = tiny["predictive"]
    prompts = [PROMPT, "Hello world, this is", "One two three"]

    def run(s):
        with main_ctx(model, 2048, 3) as ctx, SimpleInference(ctx, speculative=s) as inf:
            for fork, p in enumerate(prompts):
                inf.prefill(p, fork)
            return [a.tokens for a in inf.generate_parallel([0, 1, 2], 96)]

    base = run(None)
    with session(model, n_seq_max=3) as s:
        assert run(s) == base
    assert s.stats.acceptance_rate >= 0.9


def test_llm_with_mtp_equals_llm_without(tiny_paths):
    path = tiny_paths["predictive"]
    with LLM(path, n_ctx=512, n_threads=1) as plain:
        assert plain.mtp is None
        base = [plain.create_completion(PROMPT, max_tokens=64, temperature=0.0),
                plain.create_completion(PROMPT, max_tokens=64, temperature=0.9, seed=4)]
    with LLM(path, n_ctx=512, n_threads=1, mtp=True) as llm:
        assert isinstance(llm.mtp, MtpSession)
        got = [llm.create_completion(PROMPT, max_tokens=64, temperature=0.0),
               llm.create_completion(PROMPT, max_tokens=64, temperature=0.9, seed=4)]
        assert llm.mtp.stats.accepted > 30
    for b, g in zip(base, got):
        assert g["choices"][0]["text"] == b["choices"][0]["text"] and g["usage"] == b["usage"]


# -- errors -----------------------------------------------------------------------------------------------------
def test_mtp_model_refuses_a_plain_context(tiny):
    with pytest.raises(UnsupportedConfigError, match="with_mtp"):
        tiny["predictive"].context().with_n_ctx(256).build()


def test_mtp_on_another_architecture(smollm):
    with pytest.raises(ValueError, match="glm4moe"):
        MtpSession(smollm)
    with pytest.raises(UnsupportedConfigError, match="glm4moe"):
        smollm.context().with_mtp(True).build()


def test_mtp_on_a_model_loaded_without_mtp(tiny_paths):
    with ikllama.ModelConfig().load_gguf(tiny_paths["predictive"]) as model:
        with pytest.raises(ValueError, match="mtp=True"):
            MtpSession(model)


def test_main_context_from_another_model(tiny, tiny_paths):
    """The session must run with a with_mtp main context of its own model (ik allows no other pairing)."""
    with ikllama.ModelConfig().load_gguf(tiny_paths["predictive"]) as other, \
            other.context().with_n_ctx(256).with_threads(1).build() as ctx, SimpleInference(ctx) as inf, \
            session(tiny["predictive"]) as s:
        assert not ctx.config.mtp
        inf.prefill(PROMPT)
        with pytest.raises(ValueError, match="another model"):
            inf.generate(8, speculative=s)
    with main_ctx(tiny["predictive"], n_seq=2) as ctx, SimpleInference(ctx) as inf, \
            session(tiny["predictive"]) as s:
        inf.prefill(PROMPT)
        with pytest.raises(ValueError, match="n_seq_max=2"):
            inf.generate(8, speculative=s)


def test_stats(tiny):
    with session(tiny["predictive"], n_draft_max=2) as s:
        assert isinstance(s.stats, SpeculativeStats) and s.stats.acceptance_rate == 0.0
        generate(tiny["predictive"], 31, mtp=s)
    st = s.stats
    # 1 token from the prefill's logits, then 10 batches of 1 + 2 drafts, all accepted.
    assert st.generated == 31 and st.batches == 10
    assert st.accepted == st.drafted == 20 and st.acceptance_rate == 1.0
    assert st.tokens_per_batch == pytest.approx(3.1)
    assert st.seconds > 0 and st.tokens_per_second == pytest.approx(31 / st.seconds)
    assert 0 < st.draft_seconds < st.seconds
