/* GBNF grammars. llama_sampler_init_grammar* return a struct llama_grammar * (NULL on a parse error).
 * llama_grammar_init_lazy is declared by ik but never defined: left out. The llama_sampler struct exists
 * only to host llama_sampler_reset. */
typedef void * llama_sampler_context_t;
struct llama_sampler;
struct llama_sampler_i {
    const char * (*name)(const struct llama_sampler *);
    void (*accept)(struct llama_sampler *, llama_token);
    void (*apply)(struct llama_sampler *, llama_token_data_array *);
    void (*reset)(struct llama_sampler *);
    struct llama_sampler * (*clone)(const struct llama_sampler *);
    void (*free)(struct llama_sampler * smpl);
};
struct llama_sampler {
    struct llama_sampler_i * iface;
    llama_sampler_context_t ctx;
};
void llama_sampler_reset(struct llama_sampler * smpl);

struct llama_grammar * llama_sampler_init_grammar(const struct llama_vocab * vocab, const char * grammar_str,
        const char * grammar_root);
struct llama_grammar * llama_sampler_init_grammar_lazy(const struct llama_vocab * vocab, const char * grammar_str,
        const char * grammar_root, const char ** trigger_words, size_t num_trigger_words,
        const llama_token * trigger_tokens, size_t num_trigger_tokens);
struct llama_grammar * llama_sampler_init_grammar_lazy_patterns(const struct llama_vocab * vocab,
        const char * grammar_str, const char * grammar_root, const char ** trigger_patterns,
        size_t num_trigger_patterns, const llama_token * trigger_tokens, size_t num_trigger_tokens);
void llama_grammar_free(struct llama_grammar * grammar);
struct llama_grammar * llama_grammar_copy(const struct llama_grammar * grammar);
void llama_grammar_sample(const struct llama_grammar * grammar, const struct llama_context * ctx,
        llama_token_data_array * candidates);
void llama_sample_grammar(struct llama_context * ctx, llama_token_data_array * candidates,
        const struct llama_grammar * grammar);
void llama_grammar_accept_token(struct llama_grammar * grammar, struct llama_context * ctx, llama_token token);
