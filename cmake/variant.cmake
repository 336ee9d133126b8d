# Which Python package this build installs into and what its native libraries are called.
#   IKLLAMA_VARIANT ''      -> package ikllama,          libllama-ikl.so,        module ikllama._ikllama_cffi
#   IKLLAMA_VARIANT vulkan  -> package ikllama_vulkan,   libllama-ikl-vulkan.so, module ikllama_vulkan._ikllama_cffi
# A plugin wheel (backends/<variant>/pyproject.toml) carries a complete native set: ik's ggml has no dynamic
# backend loading, so libggml, libllama and the cffi module are all built per backend.
set(_variants vulkan cuda12 cuda13)
if (APPLE)
    set(IKLLAMA_ORIGIN "@loader_path")
else()
    set(IKLLAMA_ORIGIN "$ORIGIN")
endif()
set(IKLLAMA_LIB_RPATH "${IKLLAMA_ORIGIN}")

if (IKLLAMA_VARIANT)
    if (NOT IKLLAMA_VARIANT IN_LIST _variants)
        string(REPLACE ";" ", " _valid_text "${_variants}")
        message(FATAL_ERROR "IKLLAMA_VARIANT='${IKLLAMA_VARIANT}' is not a plugin variant. Valid values: ${_valid_text}")
    endif()
    string(REGEX REPLACE "[0-9]+$" "" _needs "${IKLLAMA_VARIANT}")
    if (NOT IKLLAMA_BACKEND STREQUAL _needs)
        message(FATAL_ERROR "IKLLAMA_VARIANT=${IKLLAMA_VARIANT} is built with IKLLAMA_BACKEND=${_needs}, "
                            "not '${IKLLAMA_BACKEND}'.")
    endif()
    if (_needs STREQUAL "cuda")
        string(REGEX REPLACE "^cuda" "" _major "${IKLLAMA_VARIANT}")
        if (NOT CUDAToolkit_VERSION_MAJOR STREQUAL _major)
            message(FATAL_ERROR "IKLLAMA_VARIANT=${IKLLAMA_VARIANT} needs a CUDA ${_major} toolkit; found "
                                "${CUDAToolkit_VERSION} at ${CUDAToolkit_BIN_DIR}. Set CUDAToolkit_ROOT.")
        endif()
        # The runtime and cuBLAS come from NVIDIA's PyPI wheels, found from site-packages/ikllama_cudaNN/lib
        # by RUNPATH (a system toolkit on the loader path still works: it is searched after RUNPATH).
        if (_major STREQUAL "12")
            string(APPEND IKLLAMA_LIB_RPATH ";${IKLLAMA_ORIGIN}/../../nvidia/cuda_runtime/lib"
                                           ";${IKLLAMA_ORIGIN}/../../nvidia/cublas/lib")
        else()
            string(APPEND IKLLAMA_LIB_RPATH ";${IKLLAMA_ORIGIN}/../../nvidia/cu${_major}/lib")
        endif()
    endif()
    set(IKLLAMA_PKG "ikllama_${IKLLAMA_VARIANT}")
    set(IKLLAMA_LIB_SUFFIX "-ikl-${IKLLAMA_VARIANT}")
    set(IKLLAMA_PLUGIN_INIT "${CMAKE_CURRENT_BINARY_DIR}/ikllama_plugin_init.py")
    configure_file("${CMAKE_CURRENT_SOURCE_DIR}/backends/plugin_init.py.in" "${IKLLAMA_PLUGIN_INIT}" @ONLY)
else()
    set(IKLLAMA_PKG "ikllama")
    set(IKLLAMA_LIB_SUFFIX "-ikl")
endif()
message(STATUS "ikllama: package '${IKLLAMA_PKG}', libraries llama${IKLLAMA_LIB_SUFFIX} ggml${IKLLAMA_LIB_SUFFIX}")
