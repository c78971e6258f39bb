"""The bounded hand-off between the source thread and the inference worker.

Backpressure is explicit (Frigate's lesson: a bounded queue, a drop policy and a counter
that is tested): ``drop-oldest`` evicts the oldest waiting frame and counts it as skipped,
so a live line is always inspected on its newest frames; ``block`` makes the source wait,
so nothing from a finite input (a folder, a video) is lost.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from edge.sources.base import Frame


class FrameQueue:
    """Thread-safe bounded FIFO of frames with a drop-oldest or blocking ``put``."""

    def __init__(self, size: int, drop_oldest: bool) -> None:
        if size < 1:
            raise ValueError(f"queue size must be at least 1, got {size}")
        self.size, self.drop_oldest = size, drop_oldest
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.skipped = 0  # frames evicted by drop-oldest (never inspected)

    def put(self, frame: Frame, stop: threading.Event | None = None) -> bool:
        """Queue a frame; False when the queue was closed (or ``stop`` set) before it fit."""
        with self._cond:
            while len(self._items) >= self.size and not self._closed:
                if self.drop_oldest:
                    self._items.popleft()
                    self.skipped += 1
                    break
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
            if self._closed:
                return False
            self._items.append(frame)
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float) -> Frame | None:
        """The oldest frame, or None after ``timeout_s`` (or at once when closed and empty)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def close(self) -> int:
        """No more puts; returns how many frames were still waiting (they stay gettable)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            return len(self._items)

    def clear(self) -> int:
        """Drop everything waiting (shutdown past its drain time); returns how many."""
        with self._cond:
            count = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return count

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
