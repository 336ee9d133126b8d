"""Backend selection at CMake configure time: unknown names and unbuildable backends stop the build."""

from __future__ import annotations

from cmake_util import configure


def test_unknown_backend_lists_the_valid_ones(tmp_path, vendor_tree):
    out = configure(tmp_path, "-DIKLLAMA_BACKEND=quantum")
    assert out.returncode != 0
    message = " ".join(out.stderr.split())  # CMake re-wraps long messages
    assert "IKLLAMA_BACKEND='quantum' is not a backend. Valid values: native, cpu, cuda, vulkan, metal, blas" in message


def test_metal_off_apple_fails_loudly(tmp_path, vendor_tree):
    out = configure(tmp_path, "-DIKLLAMA_BACKEND=metal")
    assert out.returncode != 0 and "Metal exists only on Apple" in " ".join(out.stderr.split())


def test_vulkan_without_sdk_fails_loudly(tmp_path, vendor_tree):
    # CMAKE_DISABLE_FIND_PACKAGE_Vulkan hides an installed SDK (CI installs one for the Vulkan plugin).
    out = configure(tmp_path, "-DGGML_VULKAN=ON", "-DCMAKE_DISABLE_FIND_PACKAGE_Vulkan=ON")
    assert out.returncode != 0 and "Vulkan SDK" in " ".join(out.stderr.split())


def test_portable_cpu_variant_configures(tmp_path, vendor_tree):
    out = configure(tmp_path, "-DIKLLAMA_BACKEND=cpu")
    assert out.returncode == 0, out.stderr
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    assert "GGML_NATIVE:BOOL=OFF" in cache and "GGML_AVX2:BOOL=ON" in cache and "GGML_RPC:BOOL=ON" in cache
    assert "compiled backends: cpu,rpc" in out.stdout


def test_cuda_is_built_or_refused_with_the_reason(tmp_path, vendor_tree):
    """nvcc may be installed without a GPU; what is missing must be named, never a silent CPU build."""
    out = configure(tmp_path, "-DIKLLAMA_BACKEND=cuda", "-DCMAKE_CUDA_ARCHITECTURES=80")
    message = " ".join(out.stderr.split())
    if out.returncode == 0:
        assert "compiled backends: cpu,cuda,rpc" in out.stdout
    else:
        assert "CUDA backend requested but" in message, message[-2000:]
