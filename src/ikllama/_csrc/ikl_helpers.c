#include "ikl_helpers.h"

/* llama_decode calls the abort callback between graph nodes, with the GIL released; reading an int
 * here costs nothing, where a Python callback would take the GIL once per node. */
bool ikl_abort_flag_cb(void * flag) {
    return __atomic_load_n((int *) flag, __ATOMIC_RELAXED) != 0;
}

void ikl_flag_set(int * flag, int value) {
    __atomic_store_n(flag, value, __ATOMIC_RELAXED);
}

int32_t ikl_argmax(const float * logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; ++i) {
        if (logits[i] > logits[best]) best = i;
    }
    return best;
}

int32_t ikl_sample_basic(struct llama_context * ctx, int32_t idx, int32_t n_vocab, llama_token_data * cand,
                         float temperature, int32_t top_k, float top_p) {
    const float * logits = llama_get_logits_ith(ctx, idx);
    if (logits == NULL) return -1;
    if (temperature <= 0.0f) return ikl_argmax(logits, n_vocab);
    for (int32_t i = 0; i < n_vocab; ++i) {
        cand[i].id = i;
        cand[i].logit = logits[i];
        cand[i].p = 0.0f;
    }
    llama_token_data_array arr = { cand, (size_t) n_vocab, -1, false };
    if (top_k > 0) llama_sample_top_k(ctx, &arr, top_k, 1);
    if (top_p < 1.0f) llama_sample_top_p(ctx, &arr, top_p, 1);
    llama_sample_temp(ctx, &arr, temperature);
    return llama_sample_token(ctx, &arr);
}
