/* Model quantization. The four void * fields are C++ objects: always NULL from here. */
typedef struct llama_model_quantize_params {
    int32_t nthread;
    enum llama_ftype ftype;
    enum ggml_type output_tensor_type;
    enum ggml_type token_embedding_type;
    enum ggml_type attn_q_type;
    enum ggml_type attn_k_type;
    enum ggml_type attn_v_type;
    enum ggml_type attn_qkv_type;
    enum ggml_type attn_output_type;
    enum ggml_type ffn_gate_type;
    enum ggml_type ffn_down_type;
    enum ggml_type ffn_up_type;
    enum ggml_type ffn_gate_inp_type;
    bool allow_requantize;
    bool quantize_output_tensor;
    bool only_copy;
    bool pure;
    bool keep_split;
    bool ignore_imatrix_rules;
    bool only_repack;
    bool dry_run;
    bool partial_requant;
    void * imatrix;
    void * kv_overrides;
    void * custom_quants;
    void * repack_pattern;
} llama_model_quantize_params;

struct llama_model_quantize_params llama_model_quantize_default_params(void);
uint32_t llama_model_quantize(const char * fname_inp, const char * fname_out, const llama_model_quantize_params * params);
