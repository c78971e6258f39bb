"""Inference backends (registry: onnxruntime, tensorrt); the runtime calls :func:`create_backend`."""

from edge.backends.base import BackendError, InferenceBackend, NonFiniteOutputError
from edge.backends.config import BackendConfig, BackendKind, Precision
from edge.backends.registry import BACKENDS, available_backends, create_backend, resolve_kind
from edge.backends.tensorrt import BuildProgress, EngineInfo, build_engine

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
