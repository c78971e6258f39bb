"""``camera:INDEX`` or ``camera:URL`` - a live camera that reconnects instead of failing.

An open or read failure yields a :class:`SourceStatus` (``disconnected``, with the attempt
count and the wait before the next try) and the source retries with exponential backoff
(``reconnect_initial_s`` x ``reconnect_factor`` per failure, capped at ``reconnect_max_s``);
success yields ``connected`` with the outage length. Nothing here raises: a camera that is
gone for an hour is a status the MES sees, not a crashed station. URLs are opened through
FFmpeg with open/read timeouts, so a stalled RTSP stream counts as a dropout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from edge.sources.base import FrameSource, SourceItem, SourceState, SourceStatus, utc_now
from edge.sources.config import SourceConfig


def backoff_delays(initial_s: float, factor: float, max_s: float) -> Iterator[float]:
    """Waits before reconnect attempts 1, 2, ...: ``initial_s * factor**k`` capped at ``max_s``.

    >>> from itertools import islice
    >>> list(islice(backoff_delays(0.5, 2.0, 3.0), 5))
    [0.5, 1.0, 2.0, 3.0, 3.0]
    """
    delay = initial_s
    while True:
        yield min(delay, max_s)
        delay = min(delay * factor, max_s)


class CameraSource(FrameSource):
    """A camera by OpenCV index (``camera:0``) or URL/path (``camera:rtsp://...``)."""

    kind = "camera"

    def __init__(self, target: str, config: SourceConfig, data_dir: Path | None = None) -> None:
        super().__init__(target, config, data_dir)
        self._capture: cv2.VideoCapture | None = None
        self._session = utc_now().strftime("%Y%m%dT%H%M%SZ")
        self._counter = 0
        self.reconnects = 0  # successful reconnections after an outage (for stats)

    @property
    def is_live(self) -> bool:
        return True

    def _open(self) -> cv2.VideoCapture | None:
        try:
            return self._open_capture()
        except Exception:  # noqa: BLE001 - a backend that raises on open is a camera that cannot be opened
            return None

    def _open_capture(self) -> cv2.VideoCapture | None:
        target = self.target
        if target.isdigit():
            capture = cv2.VideoCapture(int(target))
        elif "!" in target:  # a GStreamer pipeline description
            capture = cv2.VideoCapture(target, cv2.CAP_GSTREAMER)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(self.config.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(self.config.read_timeout_s * 1000),
            ]
            capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        if capture.isOpened():
            return capture
        capture.release()
        return None

    def _items(self) -> Iterator[SourceItem]:
        config = self.config
        delays = backoff_delays(config.reconnect_initial_s, config.reconnect_factor, config.reconnect_max_s)
        failures = 0
        down_since: float | None = None
        reason = "first connection"
        while not self.stopped:
            self._capture = self._open()
            opened, delivered = self._capture is not None, 0
            too_big = self._declared_size_problem() if opened else None
            if too_big:  # refused like a failed open (with backoff): reading would allocate the frames
                self._release()
                opened = False
            if opened:
                for item in self._read_until_dropout():
                    if delivered == 0:  # connected means frames arrive, not merely that open() succeeded
                        outage = None if down_since is None else time.monotonic() - down_since
                        self.reconnects += down_since is not None
                        yield SourceStatus(self.name, SourceState.CONNECTED, reason, outage_s=outage)
                        failures, down_since = 0, None
                        delays = backoff_delays(
                            config.reconnect_initial_s, config.reconnect_factor, config.reconnect_max_s
                        )
                    delivered += 1
                    yield item
                self._release()
            if self.stopped:
                return
            down_since = time.monotonic() if down_since is None else down_since
            reason = "reconnected"
            if delivered:  # it worked a moment ago: try again at once before backing off
                yield SourceStatus(
                    self.name,
                    SourceState.DISCONNECTED,
                    "stream dropped (no frame before the read timeout)",
                    retry_in_s=0.0,
                )
                continue
            failures += 1
            why = too_big or (f"{self.target} delivered no frame" if opened else f"cannot open {self.target}")
            if config.max_reconnects is not None and failures > config.max_reconnects:
                yield SourceStatus(self.name, SourceState.DISCONNECTED, f"giving up: {why}", attempt=failures)
                return
            delay = next(delays)
            yield SourceStatus(self.name, SourceState.DISCONNECTED, why, attempt=failures, retry_in_s=delay)
            if not self.sleep(delay):
                return

    def _declared_size_problem(self) -> str | None:
        capture = self._capture
        assert capture is not None
        try:
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        except Exception:  # noqa: BLE001 - a backend without the property: frames decide
            return None
        problem = self.frame_size_problem(width, height)
        return f"{self.target}: {problem}" if problem else None

    def _read_until_dropout(self) -> Iterator[SourceItem]:
        """Frames until the stream fails; a read that raises counts as a dropout (then reconnect)."""
        capture = self._capture
        assert capture is not None
        while not self.stopped:
            try:
                ok, raw = capture.read()
            except Exception:  # noqa: BLE001 - cv2.error, MemoryError: the stream dropped, reconnect
                return
            if not ok or raw is None:
                return
            self._counter += 1
            frame_id = f"{self.name}-{self._session}-{self._counter:08d}"
            yield self.to_frame(raw, frame_id, frame_id, utc_now())

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
