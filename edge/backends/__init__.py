"""Inference backends (registry: onnxruntime, tensorrt); the runtime calls :func:`create_backend`.

The names below load on first use (PEP 562): importing a light submodule such as
``edge.backends.config`` runs this file, and must not pull in OpenCV, TensorRT or SQLAlchemy
(validating settings stays cheap, house style 10).
"""

from __future__ import annotations

from shared.lazy_exports import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "edge.backends.base": ("BackendError", "InferenceBackend", "NonFiniteOutputError"),
    "edge.backends.config": ("BackendConfig", "BackendKind", "Precision"),
    "edge.backends.registry": ("BACKENDS", "available_backends", "create_backend", "resolve_kind"),
    "edge.backends.tensorrt": ("BuildProgress", "EngineInfo", "build_engine"),
}


__getattr__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
