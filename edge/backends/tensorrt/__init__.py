"""TensorRT backend (TensorRT 10 + cuda-python), imported lazily: this package loads without either."""

from edge.backends.tensorrt.backend import TensorRTBackend
from edge.backends.tensorrt.build import BuildProgress, EngineInfo, build_engine
from edge.backends.tensorrt.cache import EngineKey, cached_engine_problem, engine_paths

__all__ = [
    "BuildProgress",
    "EngineInfo",
    "EngineKey",
    "TensorRTBackend",
    "build_engine",
    "cached_engine_problem",
    "engine_paths",
]
