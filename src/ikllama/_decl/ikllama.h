/* ikllama's own C: the build stamp checked at import, and helpers in _csrc/ikl_helpers.c. */
static const char * const IKLLAMA_BUILD_VERSION;
static const char * const IKLLAMA_DECL_HASH;
static const char * const IKLLAMA_UPSTREAM_COMMIT;
static const char * const IKLLAMA_BUILD_TYPE;
static const char * const IKLLAMA_BACKENDS;

/* Abort hook: llama_decode polls *flag (set from any thread) with no Python call per graph node. */
bool ikl_abort_flag_cb(void * flag);
void ikl_flag_set(int * flag, int value);
int32_t ikl_argmax(const float * logits, int32_t n);
int32_t ikl_sample_basic(struct llama_context * ctx, int32_t idx, int32_t n_vocab, llama_token_data * cand,
                         float temperature, int32_t top_k, float top_p);
