/* GPU device queries that never let a C++ exception reach cffi's C frames (_csrc/ikl_devices.cpp). */
#ifndef IKL_DEVICES_H
#define IKL_DEVICES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "cuda", "vulkan", "metal" or "" (CPU-only build): the GPU backend compiled into this libggml. */
const char * ikl_gpu_backend(void);

/* Number of usable GPU devices (>= 0); -1 with err filled when the backend threw; -2 if none is compiled. */
int ikl_gpu_device_count(char * err, size_t err_size);

/* Name and memory of device i (count must have returned > i); 0 on success, -1 with desc = the error. */
int ikl_gpu_device_info(int i, char * desc, size_t desc_size, size_t * free_bytes, size_t * total_bytes);

#ifdef __cplusplus
}
#endif
#endif
