/* LoRA adapters (freed with the model) and control vectors. */
struct llama_lora_adapter * llama_lora_adapter_init(struct llama_model * model, const char * path_lora);
int32_t llama_lora_adapter_set(struct llama_context * ctx, struct llama_lora_adapter * adapter, float scale);
int32_t llama_lora_adapter_remove(struct llama_context * ctx, struct llama_lora_adapter * adapter);
void llama_lora_adapter_clear(struct llama_context * ctx);
void llama_lora_adapter_free(struct llama_lora_adapter * adapter);
int32_t llama_control_vector_apply(struct llama_context * lctx, const float * data, size_t len, int32_t n_embd,
        int32_t il_start, int32_t il_end);
