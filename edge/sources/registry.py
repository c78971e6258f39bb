"""Source kinds by name: ``SourceConfig.spec = "KIND:TARGET"`` picks one."""

from __future__ import annotations

from pathlib import Path

from edge.sources.base import FrameSource
from edge.sources.camera import CameraSource
from edge.sources.config import SourceConfig
from edge.sources.folder import FolderSource
from edge.sources.synthetic import SyntheticSource
from edge.sources.video import VideoSource

SOURCE_KINDS: dict[str, type[FrameSource]] = {
    FolderSource.kind: FolderSource,
    VideoSource.kind: VideoSource,
    CameraSource.kind: CameraSource,
    SyntheticSource.kind: SyntheticSource,
}


def create_source(config: SourceConfig, data_dir: Path | None = None) -> FrameSource:
    """The source ``config.spec`` names; opening happens when it is iterated, not here.

    ``data_dir`` is the station's data dir: a folder source keeps its inspected-files ledger
    there (``source.remember_inspected``); without one nothing is remembered between runs.
    """
    try:
        cls = SOURCE_KINDS[config.kind]
    except KeyError:
        raise ValueError(f"unknown source kind {config.kind!r}; choose one of {sorted(SOURCE_KINDS)}") from None
    return cls(config.target, config, data_dir)
