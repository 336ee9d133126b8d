/* KV cache: ik keeps the old llama_kv_cache_* names (no memory API). */
struct llama_kv_cache_view_cell {
    llama_pos pos;
};
struct llama_kv_cache_view {
    int32_t n_cells;
    int32_t n_seq_max;
    int32_t token_count;
    int32_t used_cells;
    int32_t max_contiguous;
    int32_t max_contiguous_idx;
    struct llama_kv_cache_view_cell * cells;
    llama_seq_id * cells_sequences;
};
struct llama_kv_cache_view llama_kv_cache_view_init(const struct llama_context * ctx, int32_t n_seq_max);
void llama_kv_cache_view_free(struct llama_kv_cache_view * view);
void llama_kv_cache_view_update(const struct llama_context * ctx, struct llama_kv_cache_view * view);
int32_t llama_get_kv_cache_token_count(const struct llama_context * ctx);
int32_t llama_get_kv_cache_used_cells(const struct llama_context * ctx);
void llama_kv_cache_clear(struct llama_context * ctx);
bool llama_kv_cache_seq_rm(struct llama_context * ctx, llama_seq_id seq_id, llama_pos p0, llama_pos p1);
void llama_kv_cache_seq_cp(struct llama_context * ctx, llama_seq_id seq_id_src, llama_seq_id seq_id_dst,
        llama_pos p0, llama_pos p1);
void llama_kv_cache_seq_keep(struct llama_context * ctx, llama_seq_id seq_id);
void llama_kv_cache_seq_add(struct llama_context * ctx, llama_seq_id seq_id, llama_pos p0, llama_pos p1, llama_pos delta);
void llama_kv_cache_seq_div(struct llama_context * ctx, llama_seq_id seq_id, llama_pos p0, llama_pos p1, int d);
llama_pos llama_kv_cache_seq_pos_max(struct llama_context * ctx, llama_seq_id seq_id);
llama_pos llama_kv_cache_seq_pos_min(struct llama_context * ctx, llama_seq_id seq_id);
void llama_kv_cache_defrag(struct llama_context * ctx);
int32_t llama_kv_cache_update(struct llama_context * ctx);
