/* ik's sampling API: llama_sample_* on caller-owned candidate arrays, plus DRY and adaptive-p objects.
 * DRY and adaptive-p functions lack LLAMA_API in llama.h but are exported all the same. */
void llama_set_rng_seed(struct llama_context * ctx, uint32_t seed);
void llama_sample_repetition_penalties(struct llama_context * ctx, llama_token_data_array * candidates,
        const llama_token * last_tokens, size_t penalty_last_n, float penalty_repeat, float penalty_freq,
        float penalty_present);
void llama_sample_apply_guidance(struct llama_context * ctx, float * logits, float * logits_guidance, float scale);
void llama_sample_softmax(struct llama_context * ctx, llama_token_data_array * candidates);
void llama_sample_dist(struct llama_context * ctx, llama_token_data_array * candidates);
void llama_sample_top_k(struct llama_context * ctx, llama_token_data_array * candidates, int32_t k, size_t min_keep);
void llama_sample_top_p(struct llama_context * ctx, llama_token_data_array * candidates, float p, size_t min_keep);
void llama_sample_min_p(struct llama_context * ctx, llama_token_data_array * candidates, float p, size_t min_keep);
void llama_sample_tail_free(struct llama_context * ctx, llama_token_data_array * candidates, float z, size_t min_keep);
void llama_sample_typical(struct llama_context * ctx, llama_token_data_array * candidates, float p, size_t min_keep);
void llama_sample_entropy(struct llama_context * ctx, llama_token_data_array * candidates_p, float min_temp,
        float max_temp, float exponent_val);
void llama_sample_temp(struct llama_context * ctx, llama_token_data_array * candidates, float temp);
void llama_sample_xtc(struct llama_context * ctx, llama_token_data_array * candidates_p, float probability,
        float threshold, size_t min_keep);
void llama_sample_top_n_sigma(struct llama_context * ctx, llama_token_data_array * candidates_p, float top_n_sigma);
llama_token llama_sample_token_mirostat(struct llama_context * ctx, llama_token_data_array * candidates,
        float tau, float eta, int32_t m, float * mu);
llama_token llama_sample_token_mirostat_v2(struct llama_context * ctx, llama_token_data_array * candidates,
        float tau, float eta, float * mu);
llama_token llama_sample_token_greedy(struct llama_context * ctx, llama_token_data_array * candidates);
llama_token llama_sample_token(struct llama_context * ctx, llama_token_data_array * candidates);

struct llama_sampler_dry * llama_sampler_init_dry(const struct llama_vocab * model, float dry_multiplier,
        float dry_base, int32_t dry_allowed_length, int32_t dry_penalty_last_n, const char ** seq_breakers,
        size_t num_breakers);
void llama_sample_dry(struct llama_context * ctx, struct llama_sampler_dry * smpl, llama_token_data_array * candidates_p);
void llama_sampler_dry_reset(struct llama_sampler_dry * smpl);
void llama_sampler_dry_free(struct llama_sampler_dry * smpl);
struct llama_sampler_dry * llama_sampler_dry_clone(struct llama_sampler_dry * smpl);
void llama_sampler_dry_accept(struct llama_sampler_dry * smpl, llama_token token);

struct llama_sampler_adaptive_p * llama_init_adaptive_p(int n_vocab, const float target, const float decay,
        const bool updt_w_cur, const uint32_t seed);
void llama_prep_adaptive_p(struct llama_context * ctx, llama_token_data_array * candidates,
        struct llama_sampler_adaptive_p * adapt_p_ctx);
void llama_sample_adaptive_p(struct llama_context * ctx, llama_token_data_array * candidates,
        struct llama_sampler_adaptive_p * adapt_p_ctx);
void llama_review_adaptive_p(struct llama_sampler_adaptive_p * adapt_p_ctx, const size_t n_unsent, const bool rewind_status);
llama_token llama_sample_token_adaptive_p(struct llama_context * ctx, llama_token_data_array * candidates,
        struct llama_sampler_adaptive_p * adapt_p_ctx);
