/* ggml RPC client and server (ggml-rpc.h). */
#define RPC_PROTO_MAJOR_VERSION ...
#define RPC_PROTO_MINOR_VERSION ...
#define RPC_PROTO_PATCH_VERSION ...
#define GGML_RPC_MAX_SERVERS ...
ggml_backend_t ggml_backend_rpc_init(const char * endpoint, uint32_t device);
bool ggml_backend_is_rpc(ggml_backend_t backend);
ggml_backend_buffer_type_t ggml_backend_rpc_buffer_type(const char * endpoint, uint32_t device);
uint32_t ggml_backend_rpc_get_device_count(const char * endpoint);
void ggml_backend_rpc_get_device_memory(const char * endpoint, uint32_t device, size_t * free, size_t * total);
void ggml_backend_rpc_start_server(const char * endpoint, const char * cache_dir, size_t device,
        ggml_backend_t * devices, size_t * free_mem, size_t * total_mem);
void ggml_backend_rpc_set_timeouts(uint32_t connect_ms, uint32_t reply_ms);
uint64_t ggml_backend_rpc_failure_count(void);
size_t ggml_backend_rpc_last_error(char * buf, size_t size);
void ggml_backend_rpc_get_stats(uint64_t * bytes_sent, uint64_t * bytes_recv, uint64_t * commands,
        uint64_t * round_trips);
/* The CPU backend that `ikllama rpc-server` serves. */
ggml_backend_t ggml_backend_cpu_init(void);
void ggml_backend_cpu_set_n_threads(ggml_backend_t backend_cpu, int n_threads);
