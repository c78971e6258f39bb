"""ONNX Runtime backend: the bundle's float32 graph on the CPU, or on CUDA where available.

``backend.precision = "int8"`` runs the bundle's statically quantised model instead
(``model.int8.onnx``, checksum verified by :func:`shared.bundle.load_bundle`); a bundle
without one is refused with :class:`BackendError` (the station exits 2) rather than run
in float32 behind the settings' back. fp16 and fp32 both run the float32 graph.

Threads: ``ort_threads`` intra-op threads (0 = ONNX Runtime's default, one per physical core)
and one inter-op thread (the graphs are sequential). Idle worker threads do not spin: on a
Jetson the source, postprocessing and publisher threads share the same few cores, and spinning
ORT workers would starve them (the README's benchmark shows what spinning costs on a busy CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import BackendError, InferenceBackend
from edge.backends.config import BackendConfig, Precision
from edge.backends.device import cuda_device_count
from shared.bundle import LoadedBundle

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def select_providers(preference: str, available: Sequence[str], gpus: int, device_id: int = 0) -> list[Any]:
    """ONNX Runtime providers for ``preference`` (auto | cpu | cuda) on this machine (pure)."""
    if preference == "cpu":
        return [CPU]
    cuda_ok = CUDA in available and gpus > 0
    if preference == "cuda" and not cuda_ok:
        why = "onnxruntime has no CUDA provider (install onnxruntime-gpu)" if CUDA not in available else "no GPU"
        raise BackendError(f"onnxruntime: ort_provider=cuda but {why}")
    if cuda_ok:
        return [(CUDA, {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested"}), CPU]
    return [CPU]


def model_file(bundle: LoadedBundle, precision: Precision) -> tuple[Path, str]:
    """(model path, precision it runs at) for ``precision``: int8 needs the bundle's int8 model."""
    if precision is not Precision.INT8:
        return bundle.model_path, Precision.FP32.value
    if bundle.int8_model_path is None:
        raise BackendError(
            f"onnxruntime: backend.precision is int8 but bundle {bundle.manifest.name!r} "
            f"({bundle.model_path.parent}) offers no int8 model; export one with "
            "`pump-train export --quantize int8 --calibration PATCHES` or set backend.precision = 'fp32'"
        )
    return bundle.int8_model_path, Precision.INT8.value


class OnnxRuntimeBackend(InferenceBackend):
    """Runs the bundle's ``model.onnx`` (or, for int8, ``model.int8.onnx``) with an ONNX Runtime session."""

    name = "onnxruntime"

    def __init__(self, bundle: LoadedBundle, config: BackendConfig) -> None:
        super().__init__(bundle, config)
        import onnxruntime as ort  # lazy: heavy, and only this backend needs it

        self.model_path, self.precision = model_file(bundle, config.precision)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = config.ort_threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only; the backend reports its own failures
        providers = select_providers(
            config.ort_provider, ort.get_available_providers(), cuda_device_count(), config.device_id
        )
        # The CPU arena keeps its high-water mark: the FPN segmenter at batch 64 peaked at 921 MiB with it,
        # 585 MiB without (measured here), and the station's budget is 1 GB.
        options.enable_cpu_mem_arena = False
        try:
            self._session: Any = ort.InferenceSession(str(self.model_path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime: cannot load {self.model_path} ({error})") from None
        self.providers = list(self._session.get_providers())
        if config.ort_provider == "cuda" and CUDA not in self.providers:
            raise BackendError(f"onnxruntime: CUDA provider requested but the session runs on {self.providers}")

    @property
    def max_batch(self) -> int:
        return self.config.max_batch

    def describe(self) -> dict[str, str]:
        device = "cuda" if CUDA in self.providers else "cpu"
        return {**super().describe(), "device": device, "precision": self.precision, "model_file": self.model_path.name}

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        (result,) = self._session.run([self.output_name], {self.input_name: chunk})
        return np.asarray(result, dtype=np.float32)

    def _close(self) -> None:
        self._session = None
