"""The interface every inference backend implements, and the checks they share.

A backend takes the float32 NCHW batch the bundle declares (``FrameTiler.tile`` builds it)
and returns the model's raw float32 outputs (logits; sigmoid is postprocessing's job).
The base class validates shapes, splits batches larger than ``max_batch`` into chunks,
answers an empty batch without calling the model (the cascade may select no patch), and
serialises calls: one backend object holds one set of device buffers.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from edge.backends.config import BackendConfig
from shared.bundle import LoadedBundle


class BackendError(RuntimeError):
    """A backend cannot load, build or run a model; the message says which and why."""


class NonFiniteOutputError(BackendError):
    """The model returned NaN or infinite values for a batch (the frame cannot be judged)."""


class InferenceBackend(ABC):
    """Runs one bundle's model on batches of patches."""

    name: ClassVar[str]

    def __init__(self, bundle: LoadedBundle, config: BackendConfig) -> None:
        self.bundle = bundle
        self.config = config
        spec = bundle.manifest.input
        self.input_name = spec.name
        self.output_name = bundle.manifest.output.name
        self.input_shape = (spec.channels, spec.height_px, spec.width_px)
        self.output_shape = tuple(int(axis) for axis in bundle.manifest.output.shape[1:])
        self._lock = threading.Lock()
        self._closed = False

    @property
    @abstractmethod
    def max_batch(self) -> int:
        """Most patches one model call takes; :meth:`infer` splits larger batches."""

    @abstractmethod
    def _run(self, chunk: np.ndarray) -> np.ndarray:
        """Model outputs for ``1 <= len(chunk) <= max_batch`` patches (float32, C-contiguous)."""

    @abstractmethod
    def _close(self) -> None:
        """Free sessions, engines and device memory."""

    def describe(self) -> dict[str, str]:
        """What runs the model (for status messages and result provenance)."""
        manifest = self.bundle.manifest
        return {
            "backend": self.name,
            "model": manifest.name,
            "version": manifest.version,
            "task": manifest.task,
            "model_sha256": manifest.model_sha256,
        }

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 outputs ``(N, *output_shape)`` for a float32 ``(N, C, P, P)`` batch, any N >= 0."""
        if self._closed:
            raise BackendError(f"{self.name}: infer() after close()")
        batch = np.asarray(batch)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise BackendError(
                f"{self.name}: expected a batch (N, {', '.join(map(str, self.input_shape))}), got {batch.shape}"
            )
        if batch.dtype != np.float32:
            raise BackendError(f"{self.name}: expected float32 input (uint8 / 255), got {batch.dtype}")
        count = len(batch)
        out = np.empty((count, *self.output_shape), dtype=np.float32)
        with self._lock:
            for start in range(0, count, self.max_batch):
                chunk = np.ascontiguousarray(batch[start : start + self.max_batch])
                result = np.asarray(self._run(chunk))
                if result.shape != (len(chunk), *self.output_shape):
                    raise BackendError(
                        f"{self.name}: model returned {result.shape}, expected {(len(chunk), *self.output_shape)}"
                    )
                out[start : start + len(chunk)] = result
        if not np.isfinite(out).all():  # NaN compares false with every threshold: it would read as "no defect"
            bad = int((~np.isfinite(out)).sum())
            raise NonFiniteOutputError(f"{self.name}: model returned {bad} NaN/infinite value(s) for {count} patch(es)")
        return out

    def probe(self) -> None:
        """Refuse this model (BackendError) if it gives NaN/Inf or absurd outputs on a fixed probe batch."""
        from edge.backends.probe import probe_backend  # probe imports this module

        probe_backend(self)

    def warmup(self, batch_size: int | None = None) -> None:
        """One call at the usual batch size, so the first frame is not slow (lazy init, Jetson DVFS)."""
        size = min(batch_size or self.config.opt_batch, self.max_batch)
        self.infer(np.zeros((size, *self.input_shape), dtype=np.float32))

    def close(self) -> None:
        """Release the model; safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
