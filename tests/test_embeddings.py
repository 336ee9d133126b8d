"""Embedder: packed multi-sequence pooling against one-by-one decoding and per-token hidden states.

Tolerances. ik's quantized matmuls pick their kernel by the number of rows in the batch (measured
here: a text decoded in a batch of up to ~28 rows gives the same vector to 1e-7 relative, from 32
rows on it differs by 1.5-2 % relative, cosine 1 - 1e-4 .. 5e-4). A packed decode is larger than
a one-by-one decode, so "batch == one by one" is asserted by cosine per row: worst measured
0.99974 (MEAN) and 0.99947 (LAST) on SmolLM2, hence 0.999 and 0.998. Where the row count is the
same (neighbours swapped, per-token vs pooled of one text) the results agree to 1e-7 and are
asserted tightly: a leak between sequences or a pooling error shows up as O(1) differences.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from ikllama import PoolingType
from ikllama.embeddings import Embedder, embed, model_pooling, similarity
from ikllama.errors import ClosedError, UnsupportedConfigError

TEXTS = [
    "The cat sat on the mat.",
    "A kitten is sleeping on the rug.",
    "Tax law governs corporate deductions.",
    "hello",
    "The quick brown fox jumps over the lazy dog",
    "Paris is the capital of France.",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
    "I love pizza",
    "one two three four",
    "Rain is expected tomorrow afternoon in most of the northern regions.",
    "x",
]

# (anchor, paraphrase, unrelated); margins measured on SmolLM2 MEAN: 0.18..0.36, Gemma3 MEAN: 0.13..0.56.
TRIPLES = [
    ("The cat is sleeping on the sofa.", "A kitten naps on the couch.",
     "Corporate tax deductions are governed by federal law."),
    ("How do I bake chocolate chip cookies?", "What is a good recipe for chocolate cookies?",
     "The stock market fell sharply on Tuesday."),
    ("The weather today is sunny and warm.", "It is a bright, hot day outside.",
     "Python lists can be sorted with the sort method."),
    ("He plays guitar in a rock band.", "He is the guitarist of a rock group.",
     "Photosynthesis converts sunlight into chemical energy."),
    ("The train to London leaves at noon.", "The London train departs at 12 o'clock.",
     "My grandmother grows tomatoes in her garden."),
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def one_by_one(e: Embedder, texts: list[str], **kw) -> np.ndarray:
    return np.concatenate([e.embed(t, **kw) for t in texts])


@pytest.mark.parametrize("pooling, min_cos", [(PoolingType.MEAN, 0.999), (PoolingType.LAST, 0.998)])
def test_batch_matches_one_by_one(smollm, pooling, min_cos):
    with Embedder(smollm, pooling=pooling, normalize=False) as e:
        batched = e.embed(TEXTS)
        single = one_by_one(e, TEXTS)
    assert batched.shape == (len(TEXTS), smollm.n_embd) and batched.dtype == np.float32
    assert cosines(batched, single).min() > min_cos
    # order: each batched row is closest to its own one-by-one vector
    assert list(np.argmax(similarity(batched, single), axis=1)) == list(range(len(TEXTS)))


def test_neighbours_do_not_leak(smollm):
    a = "The cat sat on the mat."
    xs = ["Tax law governs corporate deductions.", "I love pizza and pasta", "one two three four"]
    ys = ["Quantum physics is hard to learn", "Dogs bark loudly at night", "five six seven eight"]
    assert [len(smollm.tokenize(t)) for t in xs] == [len(smollm.tokenize(t)) for t in ys]  # same batch shape
    for pooling in (PoolingType.MEAN, PoolingType.LAST):
        with Embedder(smollm, pooling=pooling, normalize=False) as e:
            with_x, with_y = e.embed([a, *xs]), e.embed([a, *ys])
            copies = e.embed([a] * 8)
        np.testing.assert_allclose(with_x[0], with_y[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(copies, np.repeat(copies[:1], 8, axis=0), rtol=0, atol=1e-5)


def test_normalization(smollm):
    with Embedder(smollm) as e:
        unit = e.embed(TEXTS)
        raw = e.embed(TEXTS, normalize=False)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    norms = np.linalg.norm(raw, axis=1)
    assert norms.min() > 5.0  # SmolLM2's mean hidden state is far from unit length (measured 30..70)
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-6)
    with Embedder(smollm, normalize=False) as e:
        np.testing.assert_allclose(e.embed(TEXTS), raw, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(e.embed(TEXTS, normalize=True), axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_paraphrases_score_higher_than_unrelated(which, request):
    model = request.getfixturevalue(which)
    with Embedder(model) as e:
        for anchor, para, other in TRIPLES:
            v = e.embed([anchor, para, other])
            assert similarity(v[0], v[1]) > similarity(v[0], v[2]) + 0.05, (anchor, para, other)


def test_rank_and_similarity(smollm):
    docs = [t[2] for t in TRIPLES[:3]] + ["A kitten naps on the couch."]
    with Embedder(smollm) as e:
        ranked = e.rank("The cat is sleeping on the sofa.", docs)
        assert ranked[0][0] == 3
        assert sorted(i for i, _ in ranked) == list(range(len(docs)))
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True)
        # abs 1e-3: rank() decodes 5 texts at once, similarity() 2 (batch-size dependent kernels)
        assert e.similarity("The cat is sleeping on the sofa.", docs[3]) == pytest.approx(ranked[0][1], abs=1e-3)
        assert e.rank("anything", []) == []
    m = similarity(np.eye(3), np.eye(3)[:2])
    assert m.shape == (3, 2) and m[0, 0] == pytest.approx(1.0) and m[2, 0] == pytest.approx(0.0)


def test_packing_respects_limits_and_order(smollm, caplog):
    texts = TEXTS + [t[0] for t in TRIPLES] + ["a much longer input " * 4]  # 17 inputs, 150+ tokens
    lengths = [len(smollm.tokenize(t)) for t in texts]
    assert len(texts) > 4 and sum(lengths) > 32 and max(lengths) <= 32
    with Embedder(smollm, n_ctx=64, n_batch=32, n_seq_max=4, normalize=False) as e:
        with caplog.at_level(logging.DEBUG, logger="ikllama"):
            packed = e.embed(texts)
        single = one_by_one(e, texts)
    packs = [tuple(map(int, re.findall(r"\d+", r.getMessage()))) for r in caplog.records
             if r.getMessage().startswith("embedding pack")]
    assert sum(n for n, _ in packs) == len(texts)
    assert all(n <= 4 and tokens <= 32 for n, tokens in packs)
    assert any(n > 1 for n, _ in packs) and len(packs) >= len(texts) // 4
    assert cosines(packed, single).min() > 0.999
    assert list(np.argmax(similarity(packed, single), axis=1)) == list(range(len(texts)))


def test_mean_of_4_8_12_tokens(smollm):
    """ik's f32 matmul doubles a K=4/8/12 product (AVX-512); the Embedder pads such packs."""
    four = "one two three four"
    assert len(smollm.tokenize(four)) == 4
    with Embedder(smollm, normalize=False) as e:
        reference = e.embed_tokens(four).mean(axis=0)
        for n in (1, 2, 3):  # packs of 4, 8 and 12 tokens
            got = e.embed([four] * n)
            for row in got:
                assert np.linalg.norm(row - reference) / np.linalg.norm(reference) < 1e-4


def test_too_long_input(smollm):
    long_text = "word " * 200
    n = len(smollm.tokenize(long_text))
    with Embedder(smollm, n_ctx=64, pooling=PoolingType.LAST, normalize=False) as e:
        assert e.max_tokens == 64
        with pytest.raises(ValueError, match=rf"input 2 is {n} tokens long.*at most 64"):
            e.embed(["short", "also short", long_text])
        truncated = e.embed(["short", long_text], truncate=True)[1]
    with Embedder(smollm) as big:
        hidden = big.embed_tokens(long_text)
    assert hidden.shape[0] == n
    # causal model, LAST pooling: the truncated text's vector is the hidden state at position 63
    assert similarity(truncated, hidden[63]) > 0.998


def test_empty_inputs(smollm):
    with Embedder(smollm) as e:
        out = e.embed([])
        assert out.shape == (0, smollm.n_embd) and out.dtype == np.float32
        assert smollm.tokenize("") == []
        with pytest.raises(ValueError, match="input 1 .* no tokens"):
            e.embed(["hi", ""])
        assert e.embed("hi").shape == (1, smollm.n_embd)


def test_pooling_types_differ(smollm):
    assert model_pooling(smollm) is None
    with Embedder(smollm) as default:
        assert default.pooling == PoolingType.MEAN
        mean = default.embed(TEXTS)
    with Embedder(smollm, pooling=PoolingType.LAST) as e:
        last = e.embed(TEXTS)
    with Embedder(smollm, pooling=PoolingType.CLS) as e:
        cls = e.embed(TEXTS)
    multi = [i for i, t in enumerate(TEXTS) if len(smollm.tokenize(t)) > 1]
    for a, b in ((mean, last), (mean, cls), (last, cls)):
        assert cosines(a[multi], b[multi]).max() < 0.95
    # a one-token text: its mean, first and last token are the same row
    one = TEXTS.index("hello")
    np.testing.assert_allclose(cls[one], last[one], atol=1e-5)
    np.testing.assert_allclose(mean[one], last[one], atol=1e-5)


def test_embed_tokens(smollm, gemma):
    text = "The quick brown fox jumps over the lazy dog"
    for model in (smollm, gemma):
        with Embedder(model, normalize=False) as e:
            tokens = e.embed_tokens(text)
            pooled = e.embed(text)[0]
        assert tokens.shape == (len(model.tokenize(text)), model.n_embd) and tokens.dtype == np.float32
        # same row count -> same kernels: pooling is exactly the mean of the per-token states
        assert np.linalg.norm(tokens.mean(axis=0) - pooled) / np.linalg.norm(pooled) < 1e-4
    with Embedder(smollm, pooling=PoolingType.NONE) as e, Embedder(smollm) as mean:
        np.testing.assert_allclose(e.embed_tokens(text), mean.embed_tokens(text), atol=1e-5)
        with pytest.raises(ValueError, match="embed_tokens"):
            e.embed(text)


def test_rerank_is_unsupported(smollm):
    with Embedder(smollm) as e:
        with pytest.raises(UnsupportedConfigError, match="no rank pooling"):
            e.rerank("query", ["doc"])


def test_close_and_module_embed(smollm, smollm_path):
    e = Embedder(smollm)
    first = e.embed(TEXTS[:3])
    e.close()
    e.close()
    assert e.closed
    with pytest.raises(ClosedError):
        e.embed("x")
    np.testing.assert_allclose(embed(smollm, TEXTS[:3]), first, atol=1e-6)
    assert cosines(embed(smollm_path, TEXTS[:3], n_seq_max=2), first).min() > 0.999
    with pytest.raises(ValueError, match="n_batch"):
        Embedder(smollm, n_ctx=8)


def test_long_packs_stay_in_one_micro_batch(smollm):
    """ik pools per micro-batch: a pack of 900 tokens must not be split (n_ubatch defaults to 512)."""
    texts = [f"Paragraph {i}: " + "the river flows past the old mill and the village green. " * 25 for i in range(4)]
    assert all(250 < len(smollm.tokenize(t)) < 350 for t in texts)
    with Embedder(smollm, n_ctx=1024, normalize=False) as e:
        assert e.max_tokens == 1024
        packed = e.embed(texts)
        single = one_by_one(e, texts)
    assert cosines(packed, single).min() > 0.999
