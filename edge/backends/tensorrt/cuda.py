"""The little CUDA the TensorRT backend needs, through NVIDIA's cuda-python bindings.

Why cuda-python and not pycuda: pycuda binds a context to the thread that created it
(``pycuda.autoinit`` leaves other threads with "invalid device context", and teardown can
abort with "context stack was not empty"), NVIDIA recommends cuda-python for TensorRT 10,
and its wheels exist for Jetson (aarch64) and x86. We retain the device's *primary* context
(the one TensorRT and the CUDA runtime use) and push/pop it around every call in whichever
thread makes the call, so building in one thread and inferring in another is safe.

Imports are lazy: this module loads on machines without CUDA; only calling it needs CUDA.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call and the CUDA error."""


def bindings() -> tuple[Any, Any]:
    """(driver, runtime) modules of cuda-python: ``cuda.bindings`` (>= 12.6) or the older ``cuda``."""
    try:
        from cuda.bindings import driver, runtime
    except ImportError:
        try:
            from cuda import cuda as driver  # type: ignore[no-redef]
            from cuda import cudart as runtime  # type: ignore[no-redef]
        except ImportError as error:
            raise ImportError(
                "the TensorRT backend needs NVIDIA's cuda-python (pip install cuda-python; on a Jetson the wheel "
                "matching JetPack's CUDA)"
            ) from error
    return driver, runtime


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` result; raise :class:`CudaError` unless it succeeded."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise CudaError(f"{what} failed: {getattr(error, 'name', error)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class CudaDevice:
    """One GPU and its retained primary context, pushed only while a call runs."""

    def __init__(self, device_id: int = 0) -> None:
        self.driver, self.runtime = bindings()
        drv = self.driver
        check(drv.cuInit(0), "cuInit")
        count = check(drv.cuDeviceGetCount(), "cuDeviceGetCount")
        if device_id >= count:
            raise CudaError(f"CUDA device {device_id} requested, {count} present")
        self.device_id = device_id
        self.device = check(drv.cuDeviceGet(device_id), "cuDeviceGet")
        raw_name = check(drv.cuDeviceGetName(256, self.device), "cuDeviceGetName")
        self.name = bytes(raw_name).split(b"\0", 1)[0].decode(errors="replace").strip()
        attribute = drv.CUdevice_attribute
        major = check(
            drv.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.device), "attribute"
        )
        minor = check(
            drv.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.device), "attribute"
        )
        self.compute_capability = f"{major}.{minor}"
        self.context = check(drv.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain")
        self._released = False

    @contextmanager
    def active(self) -> Iterator[None]:
        """Make this device's context current in the calling thread for the block."""
        check(self.driver.cuCtxPushCurrent(self.context), "cuCtxPushCurrent")
        try:
            yield
        finally:
            check(self.driver.cuCtxPopCurrent(), "cuCtxPopCurrent")

    def release(self) -> None:
        """Give the primary context back (after every buffer and engine of ours is gone)."""
        if not self._released:
            self._released = True
            check(self.driver.cuDevicePrimaryCtxRelease(self.device), "cuDevicePrimaryCtxRelease")


class HostDeviceBuffer:
    """A pinned host array and a device allocation of the same size, allocated once.

    Pinned (page-locked) host memory makes ``cudaMemcpyAsync`` truly asynchronous; create and
    free it while the owning device's context is active.
    """

    def __init__(self, runtime: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.runtime = runtime
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.host_ptr = int(check(runtime.cudaMallocHost(self.nbytes), "cudaMallocHost"))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.host_ptr)
        self.host = np.frombuffer(raw, dtype=self.dtype).reshape(shape)
        self.device_ptr = int(check(runtime.cudaMalloc(self.nbytes), "cudaMalloc"))

    def to_device(self, nbytes: int, stream: Any) -> None:
        kind = self.runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self.runtime.cudaMemcpyAsync(self.device_ptr, self.host_ptr, nbytes, kind, stream), "cudaMemcpyAsync")

    def to_host(self, nbytes: int, stream: Any) -> None:
        kind = self.runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(self.runtime.cudaMemcpyAsync(self.host_ptr, self.device_ptr, nbytes, kind, stream), "cudaMemcpyAsync")

    def free(self) -> None:
        if self.device_ptr:
            check(self.runtime.cudaFree(self.device_ptr), "cudaFree")
            self.device_ptr = 0
        if self.host_ptr:
            self.host = np.empty(0, dtype=self.dtype)  # drop the view before the memory goes
            check(self.runtime.cudaFreeHost(self.host_ptr), "cudaFreeHost")
            self.host_ptr = 0


def create_stream(runtime: Any) -> Any:
    """A non-blocking stream (does not synchronise with the legacy default stream)."""
    return check(runtime.cudaStreamCreateWithFlags(runtime.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")


def synchronize(runtime: Any, stream: Any) -> None:
    check(runtime.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


def destroy_stream(runtime: Any, stream: Any) -> None:
    check(runtime.cudaStreamDestroy(stream), "cudaStreamDestroy")
