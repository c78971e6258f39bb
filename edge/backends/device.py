"""Cheap probes for what this machine can run, without importing CUDA or TensorRT packages.

``auto`` backend selection needs to know whether a GPU is there before anything heavy is
imported; the CUDA driver library answers that through ctypes (absent: no GPU).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util

_DRIVER_LIBRARIES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """CUDA devices the driver sees; 0 without a driver, a GPU, or when the driver fails."""
    for library_name in _DRIVER_LIBRARIES:
        try:
            driver = ctypes.CDLL(library_name)
        except OSError:
            continue
        try:
            if driver.cuInit(0) != 0:
                return 0
            count = ctypes.c_int(0)
            if driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except AttributeError:  # not a CUDA driver after all
            return 0
    return 0


def tensorrt_importable() -> bool:
    """The ``tensorrt`` Python package is installed (it is not imported here)."""
    return importlib.util.find_spec("tensorrt") is not None


def cuda_python_importable() -> bool:
    """NVIDIA's ``cuda-python`` bindings (used by the TensorRT backend for memory and streams)."""
    try:
        return (
            importlib.util.find_spec("cuda.bindings") is not None or importlib.util.find_spec("cuda.cudart") is not None
        )
    except ModuleNotFoundError:  # no 'cuda' namespace package at all
        return False


def tensorrt_usable() -> bool:
    """TensorRT, cuda-python and a GPU are all present."""
    return tensorrt_importable() and cuda_python_importable() and cuda_device_count() > 0
