/* Multi-token prediction (GLM4-MoE NextN layers). llama_set_draft_input_hidden_state keeps only the
 * pointer: the caller owns the buffer until the next llama_decode on that context. */
int32_t llama_model_n_nextn_layer(const struct llama_model * model);
void llama_set_mtp_op_type(struct llama_context * ctx, enum llama_mtp_op_type mtp_op_type);
void llama_set_draft_input_hidden_state(struct llama_context * ctx, const float * hidden_state);
