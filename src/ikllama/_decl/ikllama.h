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

/* GPU device probes (_csrc/ikl_devices.cpp): C++ exceptions from ggml become return codes. */
const char * ikl_gpu_backend(void);
int ikl_gpu_device_count(char * err, size_t err_size);
int ikl_gpu_device_info(int i, char * desc, size_t desc_size, size_t * free_bytes, size_t * total_bytes);

/* The C sampler (_csrc/ikl_sampler.{h,c}): one per sequence; see ikllama/sampling.py. */
#define IKL_TOP_K 1
#define IKL_TFS_Z 2
#define IKL_TYPICAL 3
#define IKL_TOP_P 4
#define IKL_MIN_P 5
#define IKL_XTC 6
#define IKL_TOP_N_SIGMA 7
#define IKL_TEMPERATURE 8
#define IKL_NO_LOGITS -1
#define IKL_GRAMMAR_DEAD_END -2
#define IKL_GRAMMAR_REJECTS -3
typedef struct ikl_sampler_params {
    float temperature;
    float dynatemp_range;
    float dynatemp_exponent;
    int32_t top_k;
    float top_p;
    float min_p;
    float typical_p;
    float tfs_z;
    float xtc_probability;
    float xtc_threshold;
    float top_n_sigma;
    int32_t penalty_last_n;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
    float dry_multiplier;
    float dry_base;
    int32_t dry_allowed_length;
    int32_t dry_penalty_last_n;
    float adaptive_target;
    float adaptive_decay;
    int32_t min_keep;
    uint64_t seed;
    int32_t n_order;
    int32_t order[8];
} ikl_sampler_params;
struct ikl_sampler;
struct ikl_sampler * ikl_sampler_new(const ikl_sampler_params * params, const struct llama_vocab * vocab,
        int32_t n_vocab, const int32_t * bias_ids, const float * bias_values, int32_t n_bias,
        struct llama_grammar * grammar, const char ** dry_breakers, int32_t n_dry_breakers,
        struct llama_sampler_adaptive_p * adaptive);
void ikl_sampler_free(struct ikl_sampler * s);
struct ikl_sampler * ikl_sampler_clone(const struct ikl_sampler * s);
void ikl_sampler_reset(struct ikl_sampler * s, uint64_t seed);
int32_t ikl_sampler_sample(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx);
int32_t ikl_sampler_accept(struct ikl_sampler * s, struct llama_context * ctx, int32_t token);
int32_t ikl_sampler_next(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx);
bool ikl_sampler_grammar_done(struct ikl_sampler * s, struct llama_context * ctx);
float ikl_sampler_prob(struct ikl_sampler * s, struct llama_context * ctx, int32_t idx, int32_t token);
