/* The per-token sampling pipeline, in this order (documented in ikllama.sampling):
 *   logits row -> logit bias -> repetition/frequency/presence penalties (last N accepted tokens)
 *   -> DRY -> [adaptive-p records the distribution]
 *   -> greedy (temperature <= 0) | mirostat v1/v2 | the queue (default top-k, tail-free, typical, top-p,
 *      min-p, XTC, top-n-sigma, temperature/dynatemp) -> [adaptive-p transform] -> a draw.
 * A grammar is checked on the drawn token only; if it rejects it, the pipeline reruns with the grammar
 * applied to every candidate (ik's common sampler does the same: masking 49k-262k candidates per token
 * through the grammar is the slow part). */
#include "ikl_sampler.h"
#include "ikl_helpers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ikl_sampler {
    ikl_sampler_params p;
    const struct llama_vocab * vocab;
    int32_t n_vocab;
    llama_token_data * cand;
    int32_t * bias_ids;
    float * bias_values;
    int32_t n_bias;
    float * scratch;            /* n_vocab floats: greedy with only a logit bias works on a biased copy */
    /* Accepted tokens, oldest first: the last `keep` are always at hist[hist_len - keep, hist_len).
     * Twice the room, compacted when full, keeps appends O(1) and the tail contiguous for ik. */
    int32_t * hist;
    int32_t hist_len, hist_cap, keep;
    struct llama_grammar * grammar;
    struct llama_grammar * grammar_start;   /* kept to reset */
    struct llama_sampler_dry * dry;
    char ** dry_breakers;
    int32_t n_dry_breakers;
    struct llama_sampler_adaptive_p * adaptive;
    float mirostat_mu;
    uint64_t rng[4];
};

/* xoshiro256** seeded by splitmix64: a per-sequence RNG, so that sequences sampled in one batch do not
 * disturb each other's draws (the context's RNG is shared by all of them). */
static uint64_t splitmix64(uint64_t * x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_seed(uint64_t s[4], uint64_t seed) {
    for (int i = 0; i < 4; ++i) s[i] = splitmix64(&seed);
}

static double rng_uniform(uint64_t s[4]) {
    return (double) (rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ik's XTC and mirostat draw from the context's RNG: seed it from ours first, so that they stay
 * reproducible per sequence whatever else shares the context. */
static void reseed_context(struct ikl_sampler * s, struct llama_context * ctx) {
    llama_set_rng_seed(ctx, (uint32_t) (rng_next(s->rng) >> 32));
}

static struct llama_sampler_dry * make_dry(const struct ikl_sampler * s) {
    if (s->p.dry_multiplier == 0.0f) return NULL;
    return llama_sampler_init_dry(s->vocab, s->p.dry_multiplier, s->p.dry_base, s->p.dry_allowed_length,
                                  s->p.dry_penalty_last_n, (const char **) s->dry_breakers,
                                  (size_t) s->n_dry_breakers);
}

struct ikl_sampler * ikl_sampler_new(const ikl_sampler_params * params, const struct llama_vocab * vocab,
                                     int32_t n_vocab, const int32_t * bias_ids, const float * bias_values,
                                     int32_t n_bias, struct llama_grammar * grammar, const char ** dry_breakers,
                                     int32_t n_dry_breakers, struct llama_sampler_adaptive_p * adaptive) {
    struct ikl_sampler * s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *params;
    s->vocab = vocab;
    s->n_vocab = n_vocab;
    s->grammar = grammar;
    s->adaptive = adaptive;
    s->n_bias = n_bias;
    s->keep = params->penalty_last_n > 1 ? params->penalty_last_n : 1;
    if (params->dry_multiplier != 0.0f && params->dry_penalty_last_n > s->keep) s->keep = params->dry_penalty_last_n;
    s->hist_cap = 2 * s->keep;
    s->cand = malloc(sizeof(llama_token_data) * (size_t) n_vocab);
    s->bias_ids = malloc(sizeof(int32_t) * (size_t) (n_bias > 0 ? n_bias : 1));
    s->bias_values = malloc(sizeof(float) * (size_t) (n_bias > 0 ? n_bias : 1));
    s->hist = malloc(sizeof(int32_t) * (size_t) s->hist_cap);
    s->dry_breakers = calloc((size_t) (n_dry_breakers > 0 ? n_dry_breakers : 1), sizeof(char *));
    s->scratch = n_bias > 0 ? malloc(sizeof(float) * (size_t) n_vocab) : NULL;
    bool ok = s->cand && s->bias_ids && s->bias_values && s->hist && s->dry_breakers && (n_bias == 0 || s->scratch);
    for (int32_t i = 0; ok && i < n_dry_breakers; ++i) {
        s->dry_breakers[i] = strdup(dry_breakers[i]);
        s->n_dry_breakers = i + 1;
        ok = s->dry_breakers[i] != NULL;
    }
    if (ok && n_bias > 0) {
        memcpy(s->bias_ids, bias_ids, sizeof(int32_t) * (size_t) n_bias);
        memcpy(s->bias_values, bias_values, sizeof(float) * (size_t) n_bias);
    }
    if (ok && grammar) ok = (s->grammar_start = llama_grammar_copy(grammar)) != NULL;
    if (ok && params->dry_multiplier != 0.0f) ok = (s->dry = make_dry(s)) != NULL;
    if (!ok) {
        ikl_sampler_free(s);
        return NULL;
    }
    s->mirostat_mu = 2.0f * params->mirostat_tau;
    rng_seed(s->rng, params->seed);
    return s;
}

void ikl_sampler_free(struct ikl_sampler * s) {
    if (!s) return;
    if (s->grammar) llama_grammar_free(s->grammar);
    if (s->grammar_start) llama_grammar_free(s->grammar_start);
    if (s->dry) llama_sampler_dry_free(s->dry);
    if (s->adaptive) ikl_adaptive_p_free(s->adaptive);
    for (int32_t i = 0; s->dry_breakers && i < s->n_dry_breakers; ++i) free(s->dry_breakers[i]);
    free(s->dry_breakers);
    free(s->cand); free(s->bias_ids); free(s->bias_values); free(s->hist); free(s->scratch);
    free(s);
}

struct ikl_sampler * ikl_sampler_clone(const struct ikl_sampler * s) {
    struct llama_grammar * g = s->grammar ? llama_grammar_copy(s->grammar) : NULL;
    struct ikl_sampler * c = ikl_sampler_new(&s->p, s->vocab, s->n_vocab, s->bias_ids, s->bias_values, s->n_bias,
                                             g, (const char **) s->dry_breakers, s->n_dry_breakers,
                                             ikl_adaptive_p_clone(s->adaptive));
    if (!c) return NULL;
    if (s->grammar_start) {
        llama_grammar_free(c->grammar_start);
        c->grammar_start = llama_grammar_copy(s->grammar_start);
    }
    memcpy(c->hist, s->hist, sizeof(int32_t) * (size_t) s->hist_len);
    c->hist_len = s->hist_len;
    /* ik's llama_sampler_dry_clone dereferences a NULL vocab: rebuild DRY and replay its window instead. */
    if (c->dry) {
        int32_t n = s->hist_len < s->p.dry_penalty_last_n ? s->hist_len : s->p.dry_penalty_last_n;
        for (int32_t i = s->hist_len - n; i < s->hist_len; ++i) llama_sampler_dry_accept(c->dry, s->hist[i]);
    }
    c->mirostat_mu = s->mirostat_mu;
    memcpy(c->rng, s->rng, sizeof c->rng);
    return c;
}

void ikl_sampler_reset(struct ikl_sampler * s, uint64_t seed) {
    s->hist_len = 0;
    s->mirostat_mu = 2.0f * s->p.mirostat_tau;
    if (s->grammar_start) {
        llama_grammar_free(s->grammar);
        s->grammar = llama_grammar_copy(s->grammar_start);
    }
    if (s->dry) llama_sampler_dry_reset(s->dry);
    if (s->adaptive) {  /* its history and RNG start over too: same seed, same draws */
        struct llama_sampler_adaptive_p * fresh = llama_init_adaptive_p(s->n_vocab, s->p.adaptive_target,
                                                                        s->p.adaptive_decay, false,
                                                                        (uint32_t) seed);
        if (fresh) {
            ikl_adaptive_p_free(s->adaptive);
            s->adaptive = fresh;
        }
    }
    rng_seed(s->rng, seed);
}

/* Greedy with nothing but (perhaps) a logit bias: no candidate array needed. */
static bool plain_greedy(const struct ikl_sampler * s) {
    const ikl_sampler_params * p = &s->p;
    bool penalties = p->penalty_last_n > 0 &&
        (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
    return p->temperature <= 0.0f && !penalties && !s->dry && !s->grammar;
}

static int32_t greedy_biased(struct ikl_sampler * s, const float * logits) {
    if (s->n_bias == 0) return ikl_argmax(logits, s->n_vocab);
    memcpy(s->scratch, logits, sizeof(float) * (size_t) s->n_vocab);
    for (int32_t i = 0; i < s->n_bias; ++i) s->scratch[s->bias_ids[i]] += s->bias_values[i];
    return ikl_argmax(s->scratch, s->n_vocab);
}

/* Candidates from the logits with bias, penalties and DRY applied. */
static llama_token_data_array prepare(struct ikl_sampler * s, struct llama_context * ctx, const float * logits) {
    llama_token_data * c = s->cand;
    for (int32_t i = 0; i < s->n_vocab; ++i) {
        c[i].id = i;
        c[i].logit = logits[i];
        c[i].p = 0.0f;
    }
    for (int32_t i = 0; i < s->n_bias; ++i) c[s->bias_ids[i]].logit += s->bias_values[i];
    llama_token_data_array arr = { c, (size_t) s->n_vocab, -1, false };
    const ikl_sampler_params * p = &s->p;
    int32_t n = s->hist_len < p->penalty_last_n ? s->hist_len : p->penalty_last_n;
    if (n > 0 && (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f)) {
        llama_sample_repetition_penalties(ctx, &arr, s->hist + s->hist_len - n, (size_t) n, p->repeat_penalty,
                                          p->frequency_penalty, p->presence_penalty);
    }
    if (s->dry) llama_sample_dry(ctx, s->dry, &arr);
    return arr;
}

static void run_queue(struct ikl_sampler * s, struct llama_context * ctx, llama_token_data_array * arr) {
    const ikl_sampler_params * p = &s->p;
    size_t keep = p->min_keep > 0 ? (size_t) p->min_keep : 1;
    for (int32_t i = 0; i < p->n_order; ++i) {
        switch (p->order[i]) {
            case IKL_TOP_K: if (p->top_k > 0) llama_sample_top_k(ctx, arr, p->top_k, keep); break;
            case IKL_TFS_Z: if (p->tfs_z < 1.0f) llama_sample_tail_free(ctx, arr, p->tfs_z, keep); break;
            case IKL_TYPICAL: if (p->typical_p < 1.0f) llama_sample_typical(ctx, arr, p->typical_p, keep); break;
            case IKL_TOP_P: if (p->top_p < 1.0f) llama_sample_top_p(ctx, arr, p->top_p, keep); break;
            case IKL_MIN_P: if (p->min_p > 0.0f) llama_sample_min_p(ctx, arr, p->min_p, keep); break;
            case IKL_XTC:
                if (p->xtc_probability > 0.0f) {
                    reseed_context(s, ctx);
                    llama_sample_xtc(ctx, arr, p->xtc_probability, p->xtc_threshold, keep);
                }
                break;
            case IKL_TOP_N_SIGMA: if (p->top_n_sigma > 0.0f) llama_sample_top_n_sigma(ctx, arr, p->top_n_sigma); break;
            case IKL_TEMPERATURE:
                if (p->dynatemp_range > 0.0f) {
                    float lo = p->temperature - p->dynatemp_range, hi = p->temperature + p->dynatemp_range;
                    llama_sample_entropy(ctx, arr, lo > 0.0f ? lo : 0.0f, hi > 0.0f ? hi : 0.0f,
                                         p->dynatemp_exponent);
                } else {
                    llama_sample_temp(ctx, arr, p->temperature);
                }
                break;
            default: break;
        }
    }
}

static int32_t argmax_cand(const llama_token_data_array * arr) {
    size_t best = 0;
    for (size_t i = 1; i < arr->size; ++i) {
        if (arr->data[i].logit > arr->data[best].logit) best = i;
    }
    return arr->data[best].id;
}

/* Softmax (ik sorts and normalizes) and one draw from our RNG. */
static int32_t draw(struct ikl_sampler * s, struct llama_context * ctx, llama_token_data_array * arr) {
    llama_sample_softmax(ctx, arr);
    double u = rng_uniform(s->rng), acc = 0.0;
    for (size_t i = 0; i < arr->size; ++i) {
        acc += arr->data[i].p;
        if (u < acc) return arr->data[i].id;
    }
    return arr->data[arr->size - 1].id;
}

static bool all_masked(const llama_token_data_array * arr) {
    for (size_t i = 0; i < arr->size; ++i) {
        if (arr->data[i].logit != -INFINITY) return false;
    }
    return true;
}

/* Shapes arr into the final distribution; returns a token when the method picks it itself, else -1. */
static int32_t pick(struct ikl_sampler * s, struct llama_context * ctx, llama_token_data_array * arr) {
    const ikl_sampler_params * p = &s->p;
    if (p->temperature <= 0.0f) return argmax_cand(arr);
    if (p->mirostat == 1 || p->mirostat == 2) {
        llama_sample_temp(ctx, arr, p->temperature);
        reseed_context(s, ctx);
        return p->mirostat == 1
            ? llama_sample_token_mirostat(ctx, arr, p->mirostat_tau, p->mirostat_eta, 100, &s->mirostat_mu)
            : llama_sample_token_mirostat_v2(ctx, arr, p->mirostat_tau, p->mirostat_eta, &s->mirostat_mu);
    }
    if (s->adaptive) {
        llama_prep_adaptive_p(ctx, arr, s->adaptive);
        run_queue(s, ctx, arr);
        llama_sample_adaptive_p(ctx, arr, s->adaptive);
        return llama_sample_token_adaptive_p(ctx, arr, s->adaptive);
    }
    run_queue(s, ctx, arr);
    return draw(s, ctx, arr);
}

static bool grammar_allows(struct ikl_sampler * s, struct llama_context * ctx, int32_t token, float logit) {
    llama_token_data one = { token, logit, 0.0f };
    llama_token_data_array arr = { &one, 1, -1, false };
    llama_grammar_sample(s->grammar, ctx, &arr);
    return one.logit != -INFINITY;
}

int32_t ikl_sampler_sample(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx) {
    const float * logits = llama_get_logits_ith(ctx, idx);
    if (logits == NULL) return IKL_NO_LOGITS;
    if (plain_greedy(s)) return greedy_biased(s, logits);
    uint64_t rng_before[4];
    memcpy(rng_before, s->rng, sizeof rng_before);
    llama_token_data_array arr = prepare(s, ctx, logits);
    int32_t token = pick(s, ctx, &arr);
    if (s->grammar == NULL || grammar_allows(s, ctx, token, logits[token])) return token;
    /* Rerun with the grammar on every candidate, from the same RNG state: the result is then what
     * sampling the grammar-masked distribution directly would give. */
    memcpy(s->rng, rng_before, sizeof rng_before);
    arr = prepare(s, ctx, logits);
    llama_grammar_sample(s->grammar, ctx, &arr);
    if (all_masked(&arr)) return IKL_GRAMMAR_DEAD_END;
    return pick(s, ctx, &arr);
}

int32_t ikl_sampler_accept(struct ikl_sampler * s, struct llama_context * ctx, int32_t token) {
    if (token < 0 || token >= s->n_vocab) return IKL_GRAMMAR_REJECTS;
    if (s->grammar) {
        if (!grammar_allows(s, ctx, token, 0.0f)) return IKL_GRAMMAR_REJECTS;
        if (!llama_token_is_eog(llama_get_model(ctx), token)) llama_grammar_accept_token(s->grammar, ctx, token);
    }
    if (s->hist_len == s->hist_cap) {
        memmove(s->hist, s->hist + s->hist_len - s->keep, sizeof(int32_t) * (size_t) s->keep);
        s->hist_len = s->keep;
    }
    s->hist[s->hist_len++] = token;
    if (s->dry) llama_sampler_dry_accept(s->dry, token);
    return 0;
}

int32_t ikl_sampler_next(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx) {
    int32_t token = ikl_sampler_sample(s, ctx, idx);
    if (token < 0) return token;
    int32_t rc = ikl_sampler_accept(s, ctx, token);
    return rc < 0 ? rc : token;
}

bool ikl_sampler_grammar_done(struct ikl_sampler * s, struct llama_context * ctx) {
    /* ik lets an end-of-generation token through only where the grammar may end. */
    if (s->grammar == NULL) return true;
    llama_token eos = llama_token_eos(llama_get_model(ctx));
    return eos >= 0 && grammar_allows(s, ctx, eos, 0.0f);
}

float ikl_sampler_prob(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx, int32_t token) {
    const float * logits = llama_get_logits_ith(ctx, idx);
    if (logits == NULL || token < 0 || token >= s->n_vocab) return -1.0f;
    llama_token_data_array arr = prepare(s, ctx, logits);
    if (s->grammar) llama_grammar_sample(s->grammar, ctx, &arr);
    if (s->p.temperature <= 0.0f) return argmax_cand(&arr) == token ? 1.0f : 0.0f;
    uint64_t rng_before[4];
    memcpy(rng_before, s->rng, sizeof rng_before);
    run_queue(s, ctx, &arr);
    memcpy(s->rng, rng_before, sizeof rng_before);
    llama_sample_softmax(ctx, &arr);
    for (size_t i = 0; i < arr.size; ++i) {
        if (arr.data[i].id == token) return arr.data[i].p;
    }
    return 0.0f;
}
