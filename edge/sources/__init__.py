"""Frame sources: folder, video file, camera (with reconnect), synthetic; see :mod:`edge.sources.base`.

The names below load on first use (PEP 562): importing a light submodule such as
``edge.sources.config`` runs this file, and must not pull in OpenCV, TensorRT or SQLAlchemy
(validating settings stays cheap, house style 10).
"""

from __future__ import annotations

from shared.lazy_exports import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "edge.sources.base": ("Frame", "FrameError", "FrameSource", "SourceItem", "SourceState", "SourceStatus"),
    "edge.sources.config": ("SourceConfig",),
    "edge.sources.registry": ("SOURCE_KINDS", "create_source"),
}


__getattr__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
