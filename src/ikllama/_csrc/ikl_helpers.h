/* ikllama's C helpers, compiled into the cffi extension next to the generated binding code. */
#ifndef IKL_HELPERS_H
#define IKL_HELPERS_H

#include <stdbool.h>
#include <stdint.h>
#include "llama.h"

bool ikl_abort_flag_cb(void * flag);
void ikl_flag_set(int * flag, int value);

/* Index of the largest of n logits (first one on ties, as llama_sample_token_greedy). */
int32_t ikl_argmax(const float * logits, int32_t n);

/* slm_ikllama's sampler for output row `idx`: greedy when temperature <= 0, else top-k (k > 0)
 * -> top-p (p < 1) -> temperature -> a draw from the context's RNG. `cand` holds n_vocab entries.
 * Returns the token, or -1 when the row has no logits. */
int32_t ikl_sample_basic(struct llama_context * ctx, int32_t idx, int32_t n_vocab, llama_token_data * cand,
                         float temperature, int32_t top_k, float top_p);

#endif
