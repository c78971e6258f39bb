"""TensorRT backend: a cached (or freshly built) engine run with the TensorRT 10 name-based API.

Everything is allocated once at start for ``max_batch``: pinned host and device buffers for
every I/O tensor, one execution context, one non-blocking stream. A call copies the chunk
into the pinned input, sets the input shape, sets the address of *every* I/O tensor (missing
ones fail with "Address is not set"), enqueues with ``execute_async_v3``, copies outputs back
on the same stream and synchronises once. The CUDA context is pushed and popped around each
call in the calling thread (see :mod:`.cuda`), so the worker thread that infers need not be
the one that built the engine.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.backends.base import BackendError, InferenceBackend
from edge.backends.config import BackendConfig
from edge.backends.tensorrt.build import (
    EngineInfo,
    ProgressCallback,
    build_engine,
    import_tensorrt,
    recent_errors,
    trt_logger,
)
from edge.backends.tensorrt.cuda import CudaDevice, HostDeviceBuffer, create_stream, destroy_stream, synchronize
from shared.bundle import LoadedBundle

log = logging.getLogger(__name__)


class TensorRTBackend(InferenceBackend):
    """Runs a bundle as a TensorRT engine on one GPU."""

    name = "tensorrt"

    def __init__(
        self, bundle: LoadedBundle, config: BackendConfig, progress_callback: ProgressCallback | None = None
    ) -> None:
        super().__init__(bundle, config)
        self._trt = import_tensorrt()
        self._device = CudaDevice(config.device_id)
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._buffers: dict[str, HostDeviceBuffer] = {}
        self._max_batch = 0
        try:
            with self._device.active():
                info = build_engine(bundle, config, progress_callback, device=self._device)
                self._engine = self._deserialize(info)
                if self._engine is None and not info.built:
                    log.warning(
                        "cached engine %s does not deserialize (%s); rebuilding", info.path, recent_errors(self._trt)
                    )
                    info = build_engine(bundle, config, progress_callback, device=self._device, force=True)
                    self._engine = self._deserialize(info)
                if self._engine is None:
                    raise BackendError(f"TensorRT cannot load the engine {info.path}: {recent_errors(self._trt)}")
                self.engine_info: EngineInfo = info
                self._prepare()
        except BaseException:
            self._teardown()
            raise

    def _deserialize(self, info: EngineInfo) -> Any:
        if self._runtime is None:
            self._runtime = self._trt.Runtime(trt_logger(self._trt))
        try:
            return self._runtime.deserialize_cuda_engine(info.path.read_bytes())
        except Exception as error:  # some TensorRT versions raise instead of returning None
            log.warning("deserializing %s raised %s", info.path, error)
            return None

    def _prepare(self) -> None:
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        if inputs != [self.input_name] or self.output_name not in names:
            raise BackendError(
                f"engine I/O {names} (inputs {inputs}) does not match the bundle's "
                f"{self.input_name!r} -> {self.output_name!r}"
            )
        profile_max = engine.get_tensor_profile_shape(self.input_name, 0)[2]
        self._max_batch = min(int(profile_max[0]), self.config.max_batch)
        self._context = engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"cannot create a TensorRT execution context (GPU memory?): {recent_errors(trt)}")
        runtime = self._device.runtime
        self._stream = create_stream(runtime)
        for name in names:
            per_item = tuple(int(axis) for axis in engine.get_tensor_shape(name))[1:]
            expected = (
                self.input_shape if name == self.input_name else self.output_shape if name == self.output_name else None
            )
            if expected is not None and per_item != expected:
                raise BackendError(f"engine tensor {name!r} has per-patch shape {per_item}, expected {expected}")
            if any(axis < 0 for axis in per_item):
                raise BackendError(f"engine tensor {name!r} has a dynamic axis besides the batch: {per_item}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._buffers[name] = HostDeviceBuffer(runtime, (self._max_batch, *per_item), dtype)
        for name, buffer in self._buffers.items():
            if not self._context.set_tensor_address(name, buffer.device_ptr):
                raise BackendError(f"set_tensor_address({name!r}) failed: {recent_errors(trt)}")

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def describe(self) -> dict[str, str]:
        key = self.engine_info.key
        return {
            **super().describe(),
            "device": f"{key.gpu_name} (sm {key.compute_capability})",
            "precision": key.precision,
            "tensorrt": key.tensorrt_version,
            "engine": self.engine_info.path.name,
        }

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        count = len(chunk)
        runtime, context = self._device.runtime, self._context
        with self._device.active():
            source = self._buffers[self.input_name]
            np.copyto(source.host[:count], chunk, casting="same_kind")
            source.to_device(count * source.host[0].nbytes, self._stream)
            if not context.set_input_shape(self.input_name, (count, *self.input_shape)):
                raise BackendError(f"set_input_shape({count}) refused: {recent_errors(self._trt)}")
            for name, buffer in self._buffers.items():
                context.set_tensor_address(name, buffer.device_ptr)
            if not context.execute_async_v3(int(self._stream)):
                raise BackendError(f"execute_async_v3 failed: {recent_errors(self._trt)}")
            for name, buffer in self._buffers.items():
                if name != self.input_name:
                    buffer.to_host(count * buffer.host[0].nbytes, self._stream)
            synchronize(runtime, self._stream)
            # Copy out: the pinned buffer is overwritten by the next call.
            return self._buffers[self.output_name].host[:count].astype(np.float32, copy=True)

    def _close(self) -> None:
        self._teardown()

    def _teardown(self) -> None:
        """Free in dependency order with the context current, then release the context."""
        device = getattr(self, "_device", None)
        if device is None:
            return
        try:
            with device.active():
                if self._stream is not None:
                    synchronize(device.runtime, self._stream)
                for buffer in self._buffers.values():
                    buffer.free()
                self._buffers = {}
                if self._stream is not None:
                    destroy_stream(device.runtime, self._stream)
                    self._stream = None
                self._context = None
                self._engine = None
                self._runtime = None
        finally:
            device.release()
