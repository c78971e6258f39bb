"""Frame sources: folder, video file, camera (with reconnect), synthetic; see :mod:`edge.sources.base`."""

from edge.sources.base import Frame, FrameError, FrameSource, SourceItem, SourceState, SourceStatus
from edge.sources.config import SourceConfig
from edge.sources.registry import SOURCE_KINDS, create_source

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
