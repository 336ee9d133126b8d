/* Model parameters, load/free and model-level getters. */
enum llama_model_kv_override_type {
    LLAMA_KV_OVERRIDE_TYPE_INT, LLAMA_KV_OVERRIDE_TYPE_FLOAT, LLAMA_KV_OVERRIDE_TYPE_BOOL,
    LLAMA_KV_OVERRIDE_TYPE_STR, ...
};

struct llama_model_kv_override {
    enum llama_model_kv_override_type tag;
    char key[128];
    union {
        int64_t val_i64;
        double  val_f64;
        bool    val_bool;
        char    val_str[128];
    };
};

struct llama_model_tensor_buft_override {
    const char * pattern;
    ggml_backend_buffer_type_t buft;
};

struct llama_model_params {
    const char * devices;
    int32_t n_gpu_layers;
    int32_t mla;
    enum llama_split_mode split_mode;
    int32_t main_gpu;
    int32_t max_gpu;
    int32_t ncmoe;
    enum ggml_type type_k;
    enum ggml_type type_v;
    uint32_t max_ctx_size;
    int32_t  n_seq_max;
    int32_t  n_ubatch;
    int32_t  amb;
    int32_t  fit_margin;
    bool     fit;
    int32_t  worst_graph_tokens;
    enum ggml_type type_k_first;
    enum ggml_type type_k_last;
    enum ggml_type type_v_first;
    enum ggml_type type_v_last;
    int32_t n_k_first;
    int32_t n_k_last;
    int32_t n_v_first;
    int32_t n_v_last;
    const float * tensor_split;
    const char * rpc_servers;
    llama_progress_callback progress_callback;
    void * progress_callback_user_data;
    const struct llama_model_kv_override * kv_overrides;
    const struct llama_model_tensor_buft_override * tensor_buft_overrides;
    bool vocab_only;
    bool use_mmap;
    bool use_mlock;
    bool check_tensors;
    bool repack_tensors;
    bool use_thp;
    bool validate_quants;
    bool merge_qkv;
    bool merge_up_gate_exps;
    bool mtp;
    bool dry_run;
    bool flash_attn;
};

struct llama_model_params llama_model_default_params(void);
struct llama_model * llama_model_load_from_file(const char * path_model, struct llama_model_params params);
void llama_free_model(struct llama_model * model);

enum llama_rope_type llama_rope_type(const struct llama_model * model);
int32_t llama_n_vocab(const struct llama_model * model);
int32_t llama_n_ctx_train(const struct llama_model * model);
int32_t llama_model_n_embd(const struct llama_model * model);
int32_t llama_model_n_embd_inp(const struct llama_model * model);
int32_t llama_n_layer(const struct llama_model * model);
float llama_rope_freq_scale_train(const struct llama_model * model);
int32_t llama_model_desc(const struct llama_model * model, char * buf, size_t buf_size);
uint64_t llama_model_size(const struct llama_model * model);
/* ikllama patch 0014: the buffers that hold the weights / a context's KV, by buffer name (where a split model went). */
int32_t llama_model_buffer_info(const struct llama_model * model, int32_t i, const char ** name, size_t * size);
int32_t llama_kv_cache_buffer_info(const struct llama_context * ctx, int32_t i, const char ** name, size_t * size);
uint64_t llama_model_n_params(const struct llama_model * model);
struct ggml_tensor * llama_get_model_tensor(struct llama_model * model, const char * name);
bool llama_model_has_encoder(const struct llama_model * model);
bool llama_model_has_decoder(const struct llama_model * model);
llama_token llama_model_decoder_start_token(const struct llama_model * model);
bool llama_model_is_recurrent(const struct llama_model * model);
bool llama_model_is_hybrid(const struct llama_model * model);
bool llama_model_has_recurrent(const struct llama_model * model);
int llama_split_path(char * split_path, size_t maxlen, const char * path_prefix, int split_no, int split_count);
int llama_split_prefix(char * split_prefix, size_t maxlen, const char * split_path, int split_no, int split_count);
