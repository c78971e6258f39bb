"""What every frame source yields, and the base class the sources share.

A source is a context manager and an iterator of :data:`SourceItem`: frames, per-input
errors (:class:`FrameError`) and connection changes (:class:`SourceStatus`). Sources never
raise for bad input or a lost camera, so one corrupt file or a cable pulled for a minute
does not stop the station; the runtime counts, logs and publishes these events instead.
A frame can fail; the source cannot: per-input failures, whatever raised them, are items.

Sources that read files (folder) can remember what was inspected: the runtime calls
:meth:`FrameSource.mark_done` once a frame's result is durably in the outbox.

``captured_at`` is a timezone-aware UTC :class:`~datetime.datetime` (the MQTT payloads and
bundle manifests use aware datetimes, so no epoch/zone ambiguity crosses a boundary);
``monotonic_s`` (``time.monotonic()`` at capture) is for latency, which wall clocks skew.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import ClassVar

import numpy as np

from edge.sources.config import SourceConfig
from shared.pixels import normalize_pixels

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def utc_now() -> datetime:
    """Aware UTC now (the one clock frames and events are stamped with)."""
    return datetime.now(timezone.utc)


def safe_id_part(text: str) -> str:
    """``text`` reduced to characters that are safe in ids, file names and MQTT payloads."""
    return _UNSAFE_ID_CHARS.sub("_", text).strip("_") or "frame"


@dataclass(frozen=True, eq=False)
class Frame:
    """One image ready for tiling: uint8, (H, W) gray or (H, W, 3) BGR as ``SourceConfig.color`` says."""

    frame_id: str
    source: str
    index: int  # 0-based position among this source's frames
    captured_at: datetime  # aware UTC: file mtime for folder frames, read time for video/camera
    image: np.ndarray
    path: Path | None = None  # the file it came from (folder, video)
    monotonic_s: float = field(default_factory=time.monotonic)
    file_signature: tuple[int, int] | None = None  # folder: (size bytes, mtime ns) of the file when read

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class FrameError:
    """An input that could not become a frame; the source goes on with the next one."""

    source: str
    ref: str  # file path or frame id of the bad input
    reason: str
    path: Path | None = None
    at: datetime = field(default_factory=utc_now)


class SourceState(str, Enum):
    """Connection state of a live source."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class SourceStatus:
    """A connection change: the runtime publishes it (camera status) and keeps running."""

    source: str
    state: SourceState
    reason: str
    attempt: int = 0  # failed reconnect attempts in a row (0 when connected)
    retry_in_s: float | None = None  # next attempt after this many seconds (disconnected only)
    outage_s: float | None = None  # how long the source was down (connected after an outage)
    at: datetime = field(default_factory=utc_now)


SourceItem = Frame | FrameError | SourceStatus


class FrameSource(ABC):
    """Base of every source: iterate it for :data:`SourceItem`; ``close()`` may come from any thread.

    Subclasses implement :meth:`_items`; the base applies ``max_frames``, stops when
    :meth:`close` is called, and releases resources in the iterating thread (OpenCV
    captures must not be released from another thread while they read).
    """

    kind: ClassVar[str]

    def __init__(self, target: str, config: SourceConfig, data_dir: Path | None = None) -> None:
        self.target = target
        self.config = config
        self.data_dir = data_dir  # the station's data dir (None: nothing is kept between runs)
        self.name = config.name or self.kind
        self._stop = threading.Event()
        self._frames = 0

    @abstractmethod
    def _items(self) -> Iterator[SourceItem]:
        """Yield frames, errors and status events until the input ends or ``self.stopped``."""

    def _release(self) -> None:
        """Free what :meth:`_items` opened; called in the iterating thread."""
        return None

    def __iter__(self) -> Iterator[SourceItem]:
        try:
            for item in self._items():
                if self._stop.is_set():
                    break
                if isinstance(item, Frame):
                    self._frames += 1
                yield item
                if self.config.max_frames is not None and self._frames >= self.config.max_frames:
                    break
        finally:
            self._release()

    @property
    def is_live(self) -> bool:
        """Frames keep arriving until the source is closed (camera, watched folder)."""
        return False

    @property
    def drops_when_busy(self) -> bool:
        """Under backpressure ``auto`` the runtime drops the oldest frame rather than wait (a camera
        cannot wait); sources whose inputs stay on disk (folders, watched or not) block instead."""
        return self.is_live

    def mark_done(self, frame: Frame) -> None:
        """The runtime has stored ``frame``'s result durably; sources that remember inputs record it.

        Called from the inference thread, possibly after the source finished iterating; never raises.
        """
        return None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Ask the source to stop; waits in progress (backoff, polling) end at once."""
        self._stop.set()

    def sleep(self, seconds: float) -> bool:
        """Wait unless closed meanwhile; True when the source should go on."""
        return not self._stop.wait(max(0.0, seconds))

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def to_frame(
        self,
        raw: np.ndarray,
        frame_id: str,
        ref: str,
        captured_at: datetime,
        path: Path | None = None,
        *,
        significant_bits: int | None = None,
        file_signature: tuple[int, int] | None = None,
    ) -> Frame | FrameError:
        """Convert a decoded image to the model's pixels, or say why it cannot be a frame."""
        try:
            image = normalize_pixels(raw, self.config.color, self.config.depth, significant_bits)
        except ValueError as error:
            return FrameError(
                self.name, ref, f"unsupported pixels: {error} (source.depth = {self.config.depth.value})", path
            )
        except Exception as error:  # noqa: BLE001 - MemoryError and the like fail this frame only
            return FrameError(self.name, ref, f"pixel conversion failed ({type(error).__name__}: {error})", path)
        want_w, want_h = self.config.expected_width_px, self.config.expected_height_px
        height, width = image.shape[:2]
        if (want_w is not None and width != want_w) or (want_h is not None and height != want_h):
            return FrameError(
                self.name, ref, f"wrong size {width}x{height} (expected {want_w or '*'}x{want_h or '*'})", path
            )
        return Frame(
            frame_id,
            self.name,
            self._frames,
            captured_at,
            np.ascontiguousarray(image),
            path,
            file_signature=file_signature,
        )

    def frame_size_problem(self, width: int, height: int) -> str | None:
        """Why a stream declaring ``width`` x ``height`` frames exceeds ``max_frame_pixels``, or None."""
        limit = self.config.max_frame_pixels
        if width * height <= limit:
            return None
        return (
            f"declared frame size {width} x {height} px ({width * height / 1e6:.1f} MP) exceeds "
            f"source.max_frame_pixels = {limit} ({limit / 1e6:.1f} MP)"
        )
