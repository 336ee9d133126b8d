/* Performance counters (ik has llama_get_timings, not mainline's llama_perf_*). */
struct llama_timings {
    double t_start_ms;
    double t_end_ms;
    double t_load_ms;
    double t_sample_ms;
    double t_p_eval_ms;
    double t_eval_ms;
    int32_t n_sample;
    int32_t n_p_eval;
    int32_t n_eval;
};
struct llama_timings llama_get_timings(struct llama_context * ctx);
void llama_print_timings(struct llama_context * ctx);
void llama_reset_timings(struct llama_context * ctx);
