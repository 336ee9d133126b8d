"""The C sampling pipeline (``SamplerConfig`` / ``Sampler`` / ``Builder.with_sampling``) on a real model:
seeding, what each stage does to the distribution, validation, clone / reset, and lifetime."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest

import ikllama
from ikllama import Pos, Sampler, SamplerConfig, SimpleInference
from ikllama.streaming import stream_continuation

PROMPT = "Once upon a time, in a small village, there lived"
N_CTX = 256
THREADS = 1  # two cores shared with a compiler: one thread avoids OpenMP spin contention

# Plain sampling at temperature 1 over the whole vocabulary: the reference each stage is compared with.
PLAIN = SamplerConfig(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)


@pytest.fixture(scope="module")
def ctx(smollm):
    with smollm.context().with_n_ctx(N_CTX).with_n_seq_max(2).with_threads(THREADS).build() as c:
        yield c


def run(ctx, config: SamplerConfig | None, prompt: str = PROMPT, n: int = 40) -> ikllama.Answer:
    """A fresh generation of ``n`` tokens on fork 0 with ``config`` (greedy when None)."""
    ctx.drop(0)
    with SimpleInference(ctx, sampling=config or SamplerConfig.greedy()) as inf:
        inf.prefill(prompt)
        return inf.generate(n)


@pytest.fixture(scope="module")
def greedy(ctx) -> ikllama.Answer:
    """The greedy 40-token continuation of PROMPT."""
    return run(ctx, None)


def prompt_row(ctx, prompt: str = PROMPT, fork: int = 0) -> int:
    """Decode ``prompt`` on an emptied fork; returns the row holding its next-token logits."""
    ctx.drop(fork)
    tokens = ctx.str_to_tokens(prompt)
    batch = ctx.new_batch(len(tokens))
    batch.add_sequence(tokens, Pos(0, fork))
    ctx.decode(batch)
    return len(tokens) - 1


def top_tokens(ctx, row: int, n: int) -> list[int]:
    logits = ctx.logits(row)
    return [int(t) for t in logits.argsort()[::-1][:n]]


# -- seeds --------------------------------------------------------------------------------------------

def test_same_seed_same_text_other_seed_other_text(ctx, greedy):
    first = run(ctx, SamplerConfig(temperature=1.0, seed=1234))
    again = run(ctx, SamplerConfig(temperature=1.0, seed=1234))
    assert first.tokens == again.tokens and first.text == again.text
    assert len(first.tokens) >= 20 and first.text != greedy.text  # really sampled, not greedy
    others = {run(ctx, SamplerConfig(temperature=1.0, seed=s)).text for s in (1, 2)}
    assert first.text not in others and len(others) == 2


def test_with_sampling_builder_is_seeded_per_fork(smollm):
    config = SamplerConfig(temperature=1.0, seed=99)
    with smollm.context().with_n_ctx(N_CTX).with_threads(THREADS).with_sampling(config).build() as c:
        text = c.inference(PROMPT, 30)
        assert c.inference(PROMPT, 30) == text  # drop() forgets the fork's sampler: the seed restarts
        # Context.sample (the low-level protocol) uses the same per-fork C sampler.
        c.drop(0)
        assert "".join(stream_continuation(c, c.str_to_tokens(PROMPT), 30)) == text
        assert text != run(c, None, n=30).text


def test_rng_is_per_sampler(ctx, smollm):
    """Sampling another sequence in between does not move a sampler's draws (no shared RNG)."""
    row = prompt_row(ctx)
    config = SamplerConfig(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    with Sampler.create(config, smollm) as alone:
        reference = [alone.sample(ctx, row) for _ in range(30)]
    assert len(set(reference)) > 5
    other_config = SamplerConfig(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=8)
    with Sampler.create(config, smollm) as a, Sampler.create(other_config, smollm) as b:
        interleaved, other = [], []
        for _ in range(30):
            interleaved.append(a.sample(ctx, row))
            other.append(b.sample(ctx, row))
            other.append(b.sample(ctx, row))
    assert interleaved == reference
    assert other[:30] != reference


# -- each stage acts ----------------------------------------------------------------------------------

def test_top_k_1_at_high_temperature_is_greedy(ctx, smollm, greedy):
    assert run(ctx, SamplerConfig(temperature=5.0, top_k=1, seed=3)).tokens == greedy.tokens
    row = prompt_row(ctx)
    with Sampler.create(SamplerConfig(temperature=5.0, top_k=1), smollm) as s:
        assert s.prob(ctx, row, greedy.tokens[0]) == pytest.approx(1.0)
    with Sampler.create(SamplerConfig(temperature=5.0, top_k=2), smollm) as s:
        assert s.prob(ctx, row, greedy.tokens[0]) < 0.99


def test_min_p_1_is_greedy(ctx, greedy):
    assert run(ctx, SamplerConfig(temperature=1.0, top_k=0, top_p=1.0, min_p=1.0, seed=5)).tokens == greedy.tokens
    assert run(ctx, SamplerConfig(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=5)).tokens != greedy.tokens


def test_logit_bias_minus_inf_bans_a_token(ctx, smollm, greedy):
    banned, count = Counter(greedy.tokens).most_common(1)[0]
    assert count >= 2
    out = run(ctx, SamplerConfig.greedy(logit_bias={banned: -math.inf}))
    assert banned not in out.tokens and len(out.tokens) == 40
    row = prompt_row(ctx)
    first = greedy.tokens[0]
    with Sampler.create(PLAIN, smollm) as plain, \
            Sampler.create(SamplerConfig(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                                         logit_bias={first: -math.inf}), smollm) as s:
        assert plain.prob(ctx, row, first) > 0.05
        assert s.prob(ctx, row, first) == 0.0


def test_logit_bias_plus_large_forces_a_token(ctx, smollm, greedy):
    forced = smollm.tokenize(" banana", False, False)[0]
    assert forced not in greedy.tokens
    assert run(ctx, SamplerConfig.greedy(logit_bias={forced: 100.0}), n=10).tokens == [forced] * 10
    assert run(ctx, SamplerConfig(temperature=1.0, seed=1, logit_bias={forced: 100.0}), n=10).tokens == [forced] * 10


REPETITIVE = "List of fruits: apple, banana,"  # SmolLM2 greedy: " pear, pear, apple, pear, pear, ..."


@pytest.mark.parametrize("penalty", [{"repeat_penalty": 1.3}, {"presence_penalty": 1.0},
                                     {"frequency_penalty": 0.5}], ids=lambda p: next(iter(p)))
def test_penalties_break_repetition(ctx, penalty):
    greedy = run(ctx, None, REPETITIVE)
    words = Counter(t for t in greedy.tokens if ctx.token_to_bytes(t).strip().isalpha())
    word, count = words.most_common(1)[0]
    assert count >= 12  # the continuation really repeats a word (" pear")
    penalized = run(ctx, SamplerConfig.greedy(**penalty), REPETITIVE)
    assert penalized.text != greedy.text
    assert penalized.tokens.count(word) < count
    assert len(set(penalized.tokens)) > len(set(greedy.tokens))


def test_grammar_yes_no(ctx, smollm):
    grammar = 'root ::= ("yes" | "no")'
    seen = set()
    for seed in range(6):
        answer = run(ctx, SamplerConfig(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed, grammar=grammar),
                     "Is the sky green? Answer:", n=10)
        assert answer.text in ("yes", "no")
        assert answer.complete and answer.finish_reason == "stop"
        seen.add(answer.text)
    assert seen == {"yes", "no"}  # the grammar leaves the choice to the model, it does not fix it
    greedy = run(ctx, SamplerConfig.greedy(grammar=grammar), "Is the sky green? Answer:", n=10)
    assert greedy.text in ("yes", "no")
    row = prompt_row(ctx, "Is the sky green? Answer:")
    with Sampler.create(SamplerConfig.greedy(grammar=grammar), smollm) as s:
        assert not s.grammar_done(ctx)
        bad = smollm.tokenize(" maybe", False, False)[0]
        with pytest.raises(ikllama.GrammarError):
            s.accept(ctx, bad)
        for token in smollm.tokenize("no", False, False):
            s.accept(ctx, token)
        assert s.grammar_done(ctx)
        with pytest.raises(ikllama.GrammarError):  # "no" is complete: nothing but the end is left
            s.accept(ctx, smollm.tokenize("pe", False, False)[0])
        assert smollm.is_eog(s.sample(ctx, row))


@pytest.mark.parametrize("grammar", ['root ::= ("yes" | ', "root ::= undefined_rule", "not gbnf at all"])
def test_unparsable_grammar_raises_value_error(smollm, grammar):
    with pytest.raises(ValueError, match="grammar"):
        Sampler.create(SamplerConfig(grammar=grammar), smollm)


# Stages the pipeline applies to the candidate list before the draw: Sampler.prob sees their effect.
QUEUE_STAGES = {
    "xtc": dict(xtc_probability=1.0, xtc_threshold=0.05),
    "top_n_sigma": dict(top_n_sigma=0.5),
    "typical": dict(typical_p=0.3),
    "tfs": dict(tfs_z=0.5),
    "dynatemp": dict(dynatemp_range=0.9, dynatemp_exponent=1.0),
}
# Stages that pick the token themselves (or act on the history): compared through outputs.
OTHER_STAGES = {
    "mirostat1": dict(mirostat=1, mirostat_tau=3.0),
    "mirostat2": dict(mirostat=2, mirostat_tau=3.0),
    "dry": dict(dry_multiplier=1.5, dry_allowed_length=1),
    "adaptive_p": dict(adaptive_target=0.3, adaptive_decay=0.5),
}


def with_plain(**changes) -> SamplerConfig:
    return dataclasses.replace(PLAIN, **changes)


@pytest.mark.parametrize("name", [*QUEUE_STAGES, *OTHER_STAGES])
def test_stage_runs_and_yields_valid_tokens(ctx, smollm, name):
    changes = {**QUEUE_STAGES, **OTHER_STAGES}[name]
    answer = run(ctx, with_plain(seed=11, **changes), n=30)
    assert answer.tokens and all(0 <= t < smollm.n_vocab and not smollm.is_eog(t) for t in answer.tokens)
    assert len(answer.tokens) == 30 or answer.complete
    assert "\ufffd" not in answer.text[:-1]


@pytest.mark.parametrize("name", QUEUE_STAGES)
def test_queue_stage_changes_the_distribution(ctx, smollm, name):
    row = prompt_row(ctx)
    top = top_tokens(ctx, row, 12)
    with Sampler.create(PLAIN, smollm) as plain, Sampler.create(with_plain(**QUEUE_STAGES[name]), smollm) as s:
        before = [plain.prob(ctx, row, t) for t in top]
        after = [s.prob(ctx, row, t) for t in top]
    assert sum(after) <= 1.0 + 1e-5
    assert max(abs(a - b) for a, b in zip(after, before)) > 0.02, (before, after)


def test_xtc_excludes_the_top_choices(ctx, smollm):
    row = prompt_row(ctx)
    top = top_tokens(ctx, row, 2)
    with Sampler.create(PLAIN, smollm) as plain, Sampler.create(with_plain(**QUEUE_STAGES["xtc"]), smollm) as s:
        assert plain.prob(ctx, row, top[1]) > 0.05  # at least two tokens above the threshold
        assert s.prob(ctx, row, top[0]) == 0.0


@pytest.mark.parametrize("name", OTHER_STAGES)
def test_other_stage_changes_the_output(ctx, plain_runs, name):
    assert any(run(ctx, with_plain(seed=s, **OTHER_STAGES[name]), n=20).tokens != plain_runs(s) for s in (21, 22))


@pytest.fixture(scope="module")
def plain_runs(ctx):
    """20 tokens of PLAIN sampling per seed, computed once."""
    cache: dict[int, list[int]] = {}

    def tokens(seed: int) -> list[int]:
        if seed not in cache:
            cache[seed] = run(ctx, with_plain(seed=seed), n=20).tokens
        return cache[seed]

    return tokens


def test_mirostat2_with_tiny_target_surprise_is_greedy(ctx, greedy):
    """mirostat v2 keeps the tokens whose surprise is below mu (2*tau at first): tau -> 0 leaves the argmax.
    (v1 estimates a top-k from the Zipf exponent instead, which stays above 1 here.)"""
    assert run(ctx, SamplerConfig(temperature=1.0, mirostat=2, mirostat_tau=0.01, seed=4), n=30).tokens \
        == greedy.tokens[:30]
    assert run(ctx, SamplerConfig(temperature=1.0, mirostat=2, mirostat_tau=8.0, seed=4), n=30).tokens \
        != greedy.tokens[:30]


def test_dry_breaks_a_loop_under_greedy(ctx):
    prompt = "Repeat after me: hello hello hello"
    greedy = run(ctx, None, prompt, n=30)
    assert set(greedy.tokens) == {greedy.tokens[0]}  # " hello" forever
    dry = run(ctx, SamplerConfig.greedy(dry_multiplier=0.8), prompt, n=30)
    assert len(set(dry.tokens)) > 3


# -- validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, field", [
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_k": -1}, "top_k"), ({"min_p": 2.0}, "min_p"),
    ({"mirostat": 3}, "mirostat"), ({"seed": -1}, "seed"), ({"logit_bias": {10 ** 7: 1.0}}, "logit_bias"),
    ({"logit_bias": {5: math.nan}}, "logit_bias"), ({"order": ("top_k", "nucleus")}, "order"),
    ({"temperature": math.nan}, "temperature"), ({"typical_p": 0.0}, "typical_p"), ({"repeat_penalty": 0.0},
                                                                                    "repeat_penalty"),
])
def test_invalid_settings_name_the_field(smollm, changes, field):
    config = SamplerConfig(**changes)
    with pytest.raises(ValueError, match=field):
        Sampler.create(config, smollm)
    # Builder.with_sampling checks what it can without the vocabulary; the id range is checked by
    # the time the context's generation layer starts.
    with pytest.raises(ValueError, match=field):
        with smollm.context().with_sampling(config).with_n_ctx(N_CTX).build() as c:
            SimpleInference(c)


def test_logit_bias_id_checked_against_the_vocabulary(smollm):
    edge = SamplerConfig(logit_bias={smollm.n_vocab: 1.0})
    edge.validate()  # no vocabulary given: only the sign is checked
    with pytest.raises(ValueError, match="logit_bias"):
        edge.validate(smollm.n_vocab)
    with pytest.raises(ValueError, match="logit_bias"):
        Sampler.create(edge, smollm)
    Sampler.create(SamplerConfig(logit_bias={smollm.n_vocab - 1: -math.inf}), smollm).close()


@pytest.mark.parametrize("off", ["off", None, 0])
def test_top_k_off_is_accepted(ctx, smollm, off):
    config = SamplerConfig(temperature=1.0, top_k=off, top_p=1.0, min_p=0.0)
    assert config.top_k_value == 0
    row = prompt_row(ctx)
    rare = top_tokens(ctx, row, 100)[-1]  # outside the default top-40
    with Sampler.create(config, smollm) as s, Sampler.create(SamplerConfig(temperature=1.0), smollm) as k40:
        assert s.prob(ctx, row, rare) > 0.0
        assert k40.prob(ctx, row, rare) == 0.0


# -- clone and reset -------------------------------------------------------------------------------------

def drive(ctx, samplers: list[Sampler], prompt: str, n: int) -> list[list[int]]:
    """Generate ``n`` tokens with the first sampler, feeding every sampler the same logits each step."""
    row = prompt_row(ctx, prompt)
    out: list[list[int]] = [[] for _ in samplers]
    for _ in range(n):
        for tokens, s in zip(out, samplers):
            tokens.append(s.sample(ctx, row))
        batch = ctx.new_batch(1)
        batch.add(out[0][-1], Pos(ctx.n_past(0), 0), logits=True)
        ctx.decode(batch)
        row = 0
    return out


@pytest.mark.parametrize("changes", [{}, {"repeat_penalty": 1.3, "dry_multiplier": 0.8}, {"mirostat": 2},
                                     {"adaptive_target": 0.3}, {"xtc_probability": 0.5}],
                         ids=["plain", "penalties+dry", "mirostat2", "adaptive_p", "xtc"])
def test_clone_continues_identically(ctx, smollm, changes):
    config = SamplerConfig(temperature=1.2, seed=31, **changes)
    with Sampler.create(config, smollm) as original:
        drive(ctx, [original], PROMPT, 5)  # some history, RNG and mirostat state to copy
        with original.clone() as copy:
            a, b = drive(ctx, [original, copy], PROMPT + " a", 20)
    assert a == b
    assert len(set(a)) > 3


def test_clone_copies_grammar_progress(ctx, smollm):
    config = SamplerConfig.greedy(grammar='root ::= "ab" "cd"')
    with Sampler.create(config, smollm) as s:
        s.accept(ctx, smollm.tokenize("ab", False, False)[0])
        with s.clone() as c:
            with pytest.raises(ikllama.GrammarError):
                c.accept(ctx, smollm.tokenize("ab", False, False)[0])
            c.reset()
            c.accept(ctx, smollm.tokenize("ab", False, False)[0])  # reset went back to the start


@pytest.mark.parametrize("changes", [{}, {"mirostat": 1}, {"adaptive_target": 0.3},
                                     {"xtc_probability": 0.5}],
                         ids=["plain", "mirostat1", "adaptive_p", "xtc"])
def test_reset_restarts_the_sequence(ctx, smollm, changes):
    config = SamplerConfig(temperature=1.2, seed=41, **changes)
    with Sampler.create(config, smollm) as s:
        first = drive(ctx, [s], PROMPT, 15)[0]
        s.reset()
        assert drive(ctx, [s], PROMPT, 15)[0] == first
        s.reset(seed=42)
        reseeded = drive(ctx, [s], PROMPT, 15)[0]
    with Sampler.create(SamplerConfig(temperature=1.2, seed=42, **changes), smollm) as fresh:
        assert drive(ctx, [fresh], PROMPT, 15)[0] == reseeded
    assert reseeded != first


# -- structure and lifetime ------------------------------------------------------------------------------

class _CallCounter:
    """Forwards to the compiled library and counts the calls by name (a spy: every call still runs)."""

    def __init__(self, lib):
        self._lib = lib
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name):
        target = getattr(self._lib, name)
        if not callable(target):
            return target

        def call(*args):
            self.calls[name] += 1
            return target(*args)

        return call


def test_one_c_call_per_sampled_token(ctx, monkeypatch):
    import ikllama.inference as inference
    import ikllama.sampling as sampling

    spy = _CallCounter(sampling.lib)
    monkeypatch.setattr(sampling, "lib", spy)
    monkeypatch.setattr(inference, "lib", spy)  # the generation loop calls the sampler directly
    decodes = []
    real_decode_steps = type(ctx).decode_steps
    monkeypatch.setattr(type(ctx), "decode_steps", lambda self, steps: (decodes.append(len(steps)),
                                                                        real_decode_steps(self, steps))[1])
    answer = run(ctx, SamplerConfig(temperature=1.0, seed=9, top_k=0, top_p=1.0, min_p=0.0), n=20)
    assert len(answer.tokens) == 20
    assert spy.calls.pop("ikl_sampler_new") == 1
    assert spy.calls.pop("ikl_sampler_free") == 1
    assert spy.calls == Counter({"ikl_sampler_next": 20}), spy.calls  # no prob / sample / accept round trips
    assert decodes == [1] * 19  # one decode per token after the first, none for the last


def test_sampler_outlives_a_closed_model(smollm_path):
    model = ikllama.ModelConfig().load_gguf(smollm_path)
    ctx = model.context().with_n_ctx(N_CTX).with_threads(THREADS).build()
    sampler = Sampler.create(SamplerConfig(temperature=1.0, seed=5), model)
    model.close()
    with pytest.raises(ikllama.ClosedError):
        model.context()
    row = prompt_row(ctx)
    token = sampler.sample(ctx, row)
    assert 0 <= token < sampler.model.n_vocab
    ctx.close()
    assert model._h is not None  # the sampler still reads the vocabulary
    sampler.reset(3)
    sampler.close()
    assert model._h is None  # the weights went with the last sampler
    with pytest.raises(ikllama.ClosedError):
        sampler.reset()


def test_open_context_still_generates_after_model_close(smollm_path):
    model = ikllama.ModelConfig().load_gguf(smollm_path)
    with model.context().with_n_ctx(N_CTX).with_threads(THREADS).build() as c:
        expected = c.inference("The capital of France is", 5)
        model.close()
        assert c.inference("The capital of France is", 5) == expected
