/* Process-wide set-up, system information, logging and ggml helpers. */
void llama_backend_init(void);
void llama_numa_init(enum ggml_numa_strategy numa);
void llama_backend_free(void);
int64_t llama_time_us(void);
size_t llama_max_devices(void);
bool llama_supports_mmap(void);
bool llama_supports_mlock(void);
bool llama_supports_gpu_offload(void);
const char * llama_print_system_info(void);
void llama_log_set(ggml_log_callback log_callback, void * user_data);

/* ggml type geometry (KV-cache sizing) and names. */
int64_t ggml_blck_size(enum ggml_type type);
size_t ggml_type_size(enum ggml_type type);
size_t ggml_row_size(enum ggml_type type, int64_t ne);
const char * ggml_type_name(enum ggml_type type);
bool ggml_is_quantized(enum ggml_type type);

/* Buffer types, for tensor overrides ("exps" -> "CPU"). */
size_t ggml_backend_reg_get_count(void);
const char * ggml_backend_reg_get_name(size_t i);
ggml_backend_buffer_type_t ggml_backend_reg_get_default_buffer_type(size_t i);
const char * ggml_backend_buft_name(ggml_backend_buffer_type_t buft);
ggml_backend_buffer_type_t ggml_backend_cpu_buffer_type(void);
void ggml_backend_free(ggml_backend_t backend);

/* CPU feature probes (compile-time SIMD paths of this build). */
int ggml_cpu_has_avx(void);
int ggml_cpu_has_avx_vnni(void);
int ggml_cpu_has_avx2(void);
int ggml_cpu_has_avx512(void);
int ggml_cpu_has_avx512_vbmi(void);
int ggml_cpu_has_avx512_vnni(void);
int ggml_cpu_has_avx512_bf16(void);
int ggml_cpu_has_fma(void);
int ggml_cpu_has_neon(void);
int ggml_cpu_has_sve(void);
int ggml_cpu_has_arm_fma(void);
int ggml_cpu_has_metal(void);
int ggml_cpu_has_f16c(void);
int ggml_cpu_has_fp16_va(void);
int ggml_cpu_has_blas(void);
int ggml_cpu_has_cuda(void);
int ggml_cpu_has_vulkan(void);
int ggml_cpu_has_sse3(void);
int ggml_cpu_has_ssse3(void);
int ggml_cpu_has_rpc(void);
int ggml_cpu_has_matmul_int8(void);
