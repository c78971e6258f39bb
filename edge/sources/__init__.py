"""Frame sources: folder, video file, camera (with reconnect), synthetic; see :mod:`edge.sources.base`.

The names below load on first use (PEP 562): importing a light submodule such as
``edge.sources.config`` runs this file, and must not pull in OpenCV, TensorRT or SQLAlchemy
(validating settings stays cheap, house style 10).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "edge.sources.base": ("Frame", "FrameError", "FrameSource", "SourceItem", "SourceState", "SourceStatus"),
    "edge.sources.config": ("SourceConfig",),
    "edge.sources.registry": ("SOURCE_KINDS", "create_source"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "SOURCE_KINDS",
    "Frame",
    "FrameError",
    "FrameSource",
    "SourceConfig",
    "SourceItem",
    "SourceState",
    "SourceStatus",
    "create_source",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
