"""Inference backends (registry: onnxruntime, tensorrt); the runtime calls :func:`create_backend`.

The names below load on first use (PEP 562): importing a light submodule such as
``edge.backends.config`` runs this file, and must not pull in OpenCV, TensorRT or SQLAlchemy
(validating settings stays cheap, house style 10).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "edge.backends.base": ("BackendError", "InferenceBackend", "NonFiniteOutputError"),
    "edge.backends.config": ("BackendConfig", "BackendKind", "Precision"),
    "edge.backends.registry": ("BACKENDS", "available_backends", "create_backend", "resolve_kind"),
    "edge.backends.tensorrt": ("BuildProgress", "EngineInfo", "build_engine"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "BACKENDS",
    "BackendConfig",
    "BackendError",
    "BackendKind",
    "BuildProgress",
    "EngineInfo",
    "InferenceBackend",
    "NonFiniteOutputError",
    "Precision",
    "available_backends",
    "build_engine",
    "create_backend",
    "resolve_kind",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
