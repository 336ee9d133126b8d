# cuBLAS from NVIDIA's PyPI wheels for a CUDA plugin build (IKLLAMA_VARIANT=cuda12|cuda13) when the build's Python
# has them (they are build requirements of backends/cuda*/pyproject.toml) and the cache names no cuBLAS yet:
#   nvidia-cublas (CUDA 13):    site-packages/nvidia/cu13/{include,lib}/libcublas.so.13
#   nvidia-cublas-cu12:         site-packages/nvidia/cublas/{include,lib}/libcublas.so.12
# The wheels hold only versioned .so.N files, so the libraries are named in full. Included before
# find_package(CUDAToolkit), which takes CUDA_cublas_LIBRARY / CUDA_cublasLt_LIBRARY from the cache.
string(REGEX REPLACE "^cuda" "" _major "${IKLLAMA_VARIANT}")
execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
        "import importlib.util as u; s = u.find_spec('nvidia'); print(';'.join(s.submodule_search_locations) if s else '')"
    OUTPUT_VARIABLE _nv_roots OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
foreach(_root ${_nv_roots})
    if (_major STREQUAL "12")
        set(_dir "${_root}/cublas")
    else()
        set(_dir "${_root}/cu${_major}")
    endif()
    if (EXISTS "${_dir}/lib/libcublas.so.${_major}" AND EXISTS "${_dir}/include/cublas_v2.h")
        set(CUDA_cublas_LIBRARY "${_dir}/lib/libcublas.so.${_major}" CACHE FILEPATH "cuBLAS (NVIDIA's wheel)")
        set(CUDA_cublasLt_LIBRARY "${_dir}/lib/libcublasLt.so.${_major}" CACHE FILEPATH "cuBLASLt (NVIDIA's wheel)")
        include_directories(SYSTEM "${_dir}/include")
        message(STATUS "ikllama: cuBLAS from NVIDIA's wheel in ${_dir}")
        break()
    endif()
endforeach()
