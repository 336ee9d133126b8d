"""Cheap GPU probes that run before a backend plugin's native libraries are loaded.

Each probe answers ``None`` when the backend can be tried, or a sentence saying why not (with the fix).
They only open the system's loader libraries through :mod:`ctypes` (``libvulkan.so.1``, ``libcuda.so.1``),
so a machine without a driver gets an answer instead of a process killed inside ggml.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["vulkan_problem", "cuda_problem", "VK_API_VERSION_1_2"]

# VK_MAKE_API_VERSION(0, 1, 2, 0): ik's ggml aborts the process on an older loader.
VK_API_VERSION_1_2 = (1 << 22) | (2 << 12)


def _open(names: tuple[str, ...]) -> ctypes.CDLL | None:
    for name in names:
        if name is None:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _version_text(v: int) -> str:
    return f"{(v >> 22) & 0x7F}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


def vulkan_problem() -> str | None:
    """Why the Vulkan backend cannot start here, or None. Calls ``vkEnumerateInstanceVersion`` of the loader."""
    names = ("libvulkan.1.dylib", ctypes.util.find_library("vulkan")) if sys.platform == "darwin" else \
        ("libvulkan.so.1", ctypes.util.find_library("vulkan"))
    loader = _open(names)
    if loader is None:
        return ("the Vulkan loader (libvulkan.so.1) is not installed; fix: install it and a Vulkan driver "
                "(Debian: apt-get install libvulkan1 mesa-vulkan-drivers), or set IKLLAMA_DEVICE=cpu")
    try:
        enumerate_version = loader.vkEnumerateInstanceVersion
    except AttributeError:
        return ("the Vulkan loader is 1.0 and ik's Vulkan backend needs 1.2; fix: upgrade libvulkan1 and the "
                "driver, or set IKLLAMA_DEVICE=cpu")
    enumerate_version.restype = ctypes.c_int32
    enumerate_version.argtypes = [ctypes.POINTER(ctypes.c_uint32)]
    version = ctypes.c_uint32(0)
    rc = enumerate_version(ctypes.byref(version))
    if rc != 0 or version.value < VK_API_VERSION_1_2:
        return (f"the Vulkan loader reports version {_version_text(version.value)} (VkResult {rc}) and ik's "
                "Vulkan backend needs 1.2; fix: upgrade libvulkan1 and the driver, or set IKLLAMA_DEVICE=cpu")
    return None


def cuda_problem() -> str | None:
    """Why the CUDA backend cannot start here, or None: the driver's ``cuInit(0)`` and ``cuDeviceGetCount``."""
    driver = _open(("libcuda.so.1", ctypes.util.find_library("cuda")))
    if driver is None:
        return ("no NVIDIA driver (libcuda.so.1 not found); fix: install the NVIDIA driver (the CUDA runtime "
                "and cuBLAS come with the plugin's nvidia-* wheels), or set IKLLAMA_DEVICE=cpu")
    try:
        cu_init, cu_count = driver.cuInit, driver.cuDeviceGetCount
    except AttributeError as exc:
        return f"libcuda.so.1 is not an NVIDIA driver library ({exc}); fix: reinstall the NVIDIA driver"
    cu_init.restype = cu_count.restype = ctypes.c_int
    cu_init.argtypes = [ctypes.c_uint]
    cu_count.argtypes = [ctypes.POINTER(ctypes.c_int)]
    rc = cu_init(0)
    if rc != 0:
        return (f"the NVIDIA driver failed to initialize (cuInit error {rc}; 100 = no device, 35 = driver older "
                "than the runtime); fix: check nvidia-smi, or set IKLLAMA_DEVICE=cpu")
    count = ctypes.c_int(0)
    rc = cu_count(ctypes.byref(count))
    if rc != 0 or count.value <= 0:
        return f"the NVIDIA driver sees no CUDA device (cuDeviceGetCount: error {rc}, {count.value} devices)"
    return None
