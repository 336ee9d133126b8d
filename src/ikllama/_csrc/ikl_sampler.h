/* ikllama's sampler: one object per sequence that turns a row of logits into a token entirely in C,
 * applying ik's llama_sample_* functions in a fixed, documented order (see ikl_sampler.c). */
#ifndef IKL_SAMPLER_H
#define IKL_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>
#include "llama.h"

/* Filter codes for ikl_sampler_params.order (the temperature-sampling queue). */
enum { IKL_TOP_K = 1, IKL_TFS_Z = 2, IKL_TYPICAL = 3, IKL_TOP_P = 4, IKL_MIN_P = 5, IKL_XTC = 6,
       IKL_TOP_N_SIGMA = 7, IKL_TEMPERATURE = 8 };

/* Return codes of ikl_sampler_sample / _accept besides a token id. */
enum { IKL_NO_LOGITS = -1, IKL_GRAMMAR_DEAD_END = -2, IKL_GRAMMAR_REJECTS = -3 };

typedef struct ikl_sampler_params {
    float temperature;          /* <= 0: greedy */
    float dynatemp_range;       /* > 0: entropy-based temperature in [t - range, t + range] */
    float dynatemp_exponent;
    int32_t top_k;              /* <= 0: off */
    float top_p;                /* 1: off */
    float min_p;                /* 0: off */
    float typical_p;            /* 1: off */
    float tfs_z;                /* 1: off */
    float xtc_probability;      /* 0: off */
    float xtc_threshold;
    float top_n_sigma;          /* <= 0: off */
    int32_t penalty_last_n;     /* tokens the penalties look back over; 0: off */
    float repeat_penalty;       /* 1: off */
    float frequency_penalty;    /* 0: off */
    float presence_penalty;     /* 0: off */
    int32_t mirostat;           /* 0 off, 1 or 2 */
    float mirostat_tau;
    float mirostat_eta;
    float dry_multiplier;       /* 0: off */
    float dry_base;
    int32_t dry_allowed_length;
    int32_t dry_penalty_last_n; /* > 0 */
    float adaptive_target;      /* < 0: off */
    float adaptive_decay;
    int32_t min_keep;
    uint64_t seed;
    int32_t n_order;
    int32_t order[8];
} ikl_sampler_params;

struct ikl_sampler;

/* Takes ownership of grammar and adaptive (each may be NULL); builds DRY itself from params and the
 * breakers (copied). NULL on out-of-memory. vocab must outlive the sampler. */
struct ikl_sampler * ikl_sampler_new(const ikl_sampler_params * params, const struct llama_vocab * vocab,
                                     int32_t n_vocab, const int32_t * bias_ids, const float * bias_values,
                                     int32_t n_bias, struct llama_grammar * grammar, const char ** dry_breakers,
                                     int32_t n_dry_breakers, struct llama_sampler_adaptive_p * adaptive);
void ikl_sampler_free(struct ikl_sampler * s);
/* An independent copy (history, grammar state, RNG state): a forked sequence continues from here. */
struct ikl_sampler * ikl_sampler_clone(const struct ikl_sampler * s);
/* Forget history and grammar progress; reseed the RNG. */
void ikl_sampler_reset(struct ikl_sampler * s, uint64_t seed);

/* Token for output row idx of ctx's last decode, or one of the negative codes above. Does not accept it. */
int32_t ikl_sampler_sample(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx);
/* Record token as generated (penalty history, DRY, grammar). IKL_GRAMMAR_REJECTS (and nothing changes)
 * when the grammar does not allow it; ik would otherwise throw through C. Returns 0 on success. */
int32_t ikl_sampler_accept(struct ikl_sampler * s, struct llama_context * ctx, int32_t token);
/* Sample then accept: the per-token call of a generation loop. */
int32_t ikl_sampler_next(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx);
/* Whether the grammar (if any) is in an accepting state. */
bool ikl_sampler_grammar_done(struct ikl_sampler * s, struct llama_context * ctx);
/* Probability of `token` under the sampler's final distribution at row idx (for speculative acceptance);
 * fills nothing else. Negative on error. */
float ikl_sampler_prob(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx, int32_t token);

/* C++ side (ikl_adaptive_p.cpp): ik exports no free/clone for its adaptive-p state. */
void ikl_adaptive_p_free(struct llama_sampler_adaptive_p * p);
struct llama_sampler_adaptive_p * ikl_adaptive_p_clone(const struct llama_sampler_adaptive_p * p);

#endif
