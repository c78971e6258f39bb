"""``video:FILE`` - the frames of a video file, in order, once (replays and benchmarks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2

from edge.sources.base import FrameError, FrameSource, SourceItem, safe_id_part, utc_now
from edge.sources.config import SourceConfig


class VideoSource(FrameSource):
    """Decodes a file with OpenCV (FFmpeg); frame ids are ``<stem>-<frame index>``, stable across replays."""

    kind = "video"

    def __init__(self, target: str, config: SourceConfig, data_dir: Path | None = None) -> None:
        super().__init__(target, config, data_dir)
        self.path = Path(target).expanduser()
        self._capture: cv2.VideoCapture | None = None

    def _items(self) -> Iterator[SourceItem]:
        if not self.path.is_file():
            yield FrameError(self.name, str(self.path), "video file not found", self.path)
            return
        try:
            self._capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            opened = self._capture.isOpened()
            size = (int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        except Exception as error:  # noqa: BLE001 - the file fails, not the source
            yield FrameError(self.name, str(self.path), f"cannot open the video ({type(error).__name__}: {error})")
            return
        if not opened:
            yield FrameError(self.name, str(self.path), "cannot open the video (unknown format or codec)", self.path)
            return
        too_big = self.frame_size_problem(*size)
        if too_big:
            yield FrameError(self.name, str(self.path), too_big, self.path)
            return
        stem = safe_id_part(self.path.stem)
        index = 0
        while not self.stopped:
            try:
                ok, raw = self._capture.read()
            except Exception as error:  # noqa: BLE001 - a corrupt stream ends the file with a named error
                yield FrameError(
                    self.name,
                    f"{stem}-{index:06d}",
                    f"video decoding failed ({type(error).__name__}: {error})",
                    self.path,
                )
                return
            if not ok or raw is None:
                if index == 0:
                    yield FrameError(self.name, str(self.path), "the video holds no decodable frame", self.path)
                return
            frame_id = f"{stem}-{index:06d}"
            yield self.to_frame(raw, frame_id, frame_id, utc_now(), self.path)
            index += 1

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
