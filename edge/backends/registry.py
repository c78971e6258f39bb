"""Backends by name, and the one factory the runtime calls."""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge.backends.base import BackendError, InferenceBackend
from edge.backends.config import BackendConfig, BackendKind
from edge.backends.device import tensorrt_usable
from edge.backends.ort import OnnxRuntimeBackend
from edge.backends.tensorrt import BuildProgress, TensorRTBackend
from shared.bundle import LoadedBundle

log = logging.getLogger(__name__)

BACKENDS: dict[str, type[InferenceBackend]] = {
    OnnxRuntimeBackend.name: OnnxRuntimeBackend,
    TensorRTBackend.name: TensorRTBackend,
}


def resolve_kind(kind: BackendKind | str, tensorrt_ok: bool | None = None) -> str:
    """The concrete backend for ``kind``: ``auto`` is TensorRT where TensorRT and a GPU are present."""
    kind = BackendKind(kind)
    if kind is not BackendKind.AUTO:
        return kind.value
    usable = tensorrt_usable() if tensorrt_ok is None else tensorrt_ok
    return TensorRTBackend.name if usable else OnnxRuntimeBackend.name


def available_backends() -> list[str]:
    """Backends that can run on this machine (ONNX Runtime always; TensorRT with a GPU)."""
    return [name for name in BACKENDS if name != TensorRTBackend.name or tensorrt_usable()]


def create_backend(
    kind: BackendKind | str | None,
    bundle: LoadedBundle,
    config: BackendConfig,
    progress_callback: Callable[[BuildProgress], None] | None = None,
) -> InferenceBackend:
    """Open ``bundle`` on the backend ``kind`` names (None: ``config.kind``).

    TensorRT may build an engine first (minutes on a Jetson; ``progress_callback`` hears
    about it). With ``auto`` and ``fallback_to_ort``, a TensorRT failure is logged and ONNX
    Runtime serves instead, so a station keeps inspecting while its engine problem is fixed.
    """
    requested = BackendKind(kind if kind is not None else config.kind)
    name = resolve_kind(requested)
    if name == TensorRTBackend.name:
        try:
            return TensorRTBackend(bundle, config, progress_callback)
        except (BackendError, ImportError, OSError) as error:
            if requested is not BackendKind.AUTO or not config.fallback_to_ort:
                raise
            log.warning("TensorRT unavailable for %s, using ONNX Runtime: %s", bundle.manifest.name, error)
            name = OnnxRuntimeBackend.name
    backend_cls = BACKENDS.get(name)
    if backend_cls is None:
        raise BackendError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return backend_cls(bundle, config)
