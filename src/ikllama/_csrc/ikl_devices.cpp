// GPU device probes for ikllama's backend selection (ikllama/_devices.py).
//
// ggml's Vulkan device count creates a Vulkan instance and can throw (vk::SystemError with no ICD,
// std::runtime_error for a bad GGML_VK_VISIBLE_DEVICES index); an exception unwinding into cffi's C
// frames would call std::terminate, so every call is wrapped and turned into a return code.
#include "ikl_devices.h"

#include <cstdio>
#include <exception>

#include "ggml-backend.h"
#if defined(GGML_USE_CUDA)
#include "ggml-cuda.h"
#elif defined(GGML_USE_VULKAN)
#include "ggml-vulkan.h"
#endif

namespace {

void copy_message(char * out, size_t size, const char * text) {
    if (out != nullptr && size > 0) {
        std::snprintf(out, size, "%s", text);
    }
}

}  // namespace

extern "C" const char * ikl_gpu_backend(void) {
#if defined(GGML_USE_CUDA)
    return "cuda";
#elif defined(GGML_USE_VULKAN)
    return "vulkan";
#elif defined(GGML_USE_METAL)
    return "metal";
#else
    return "";
#endif
}

extern "C" int ikl_gpu_device_count(char * err, size_t err_size) {
    copy_message(err, err_size, "");
    try {
#if defined(GGML_USE_CUDA)
        return ggml_backend_cuda_get_device_count();
#elif defined(GGML_USE_VULKAN)
        return ggml_backend_vk_get_device_count();
#elif defined(GGML_USE_METAL)
        return 1;
#else
        copy_message(err, err_size, "no GPU backend is compiled into this build");
        return -2;
#endif
    } catch (const std::exception & e) {
        copy_message(err, err_size, e.what());
    } catch (...) {
        copy_message(err, err_size, "unknown C++ exception");
    }
    return -1;
}

extern "C" int ikl_gpu_device_info(int i, char * desc, size_t desc_size, size_t * free_bytes, size_t * total_bytes) {
    *free_bytes = 0;
    *total_bytes = 0;
    copy_message(desc, desc_size, "");
    try {
#if defined(GGML_USE_CUDA)
        ggml_backend_cuda_get_device_description(i, desc, desc_size);
        ggml_backend_cuda_get_device_memory(i, free_bytes, total_bytes);
        return 0;
#elif defined(GGML_USE_VULKAN)
        ggml_backend_vk_get_device_description(i, desc, desc_size);
        ggml_backend_vk_get_device_memory(i, free_bytes, total_bytes);
        return 0;
#elif defined(GGML_USE_METAL)
        (void) i;  // ik's Metal backend drives the system default device and has no query for it
        copy_message(desc, desc_size, "Apple Metal (system default device; memory not reported)");
        return 0;
#else
        (void) i;
        copy_message(desc, desc_size, "no per-device query for this build");
        return -1;
#endif
    } catch (const std::exception & e) {
        copy_message(desc, desc_size, e.what());
    } catch (...) {
        copy_message(desc, desc_size, "unknown C++ exception");
    }
    return -1;
}
