/* ik's built-in (non-Jinja) chat templates and the GGUF template string. */
typedef struct llama_chat_message {
    const char * role;
    const char * content;
} llama_chat_message;

const char * llama_model_chat_template(const struct llama_model * model, const char * name);
int32_t llama_chat_apply_template(const char * tmpl, const struct llama_chat_message * chat, size_t n_msg,
                                  bool add_ass, char * buf, int32_t length);
int32_t llama_chat_builtin_templates(const char ** output, size_t len);
