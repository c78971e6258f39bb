"""Counters, latency percentiles and per-stage times of a running station (thread-safe)."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

LATENCY_WINDOW = 1000  # frames the percentiles are taken over


class RuntimeStats:
    """What the stats topic reports; the worker and source threads add, the main thread reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.frames_done = 0
        self.frames_ok = 0
        self.frames_ng = 0
        self.frames_dropped = 0  # lost inside the station (stuck worker, shutdown past its drain time)
        self.errors = 0
        self.frame_errors = 0  # inputs the source could not turn into a frame (bad file, too large)
        self.frames_failed = 0  # frames the models could not judge (published with verdict ERROR)
        self.source_restarts = 0
        self.worker_restarts = 0
        self.uncertain_logged = 0
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._stage_seconds: dict[str, float] = {}
        self._interval_frames = 0
        self._interval_started = time.monotonic()

    def frame_done(self, ng: bool, latency_ms: float, stages: dict[str, float]) -> None:
        with self._lock:
            self.frames_done += 1
            self._interval_frames += 1
            if ng:
                self.frames_ng += 1
            else:
                self.frames_ok += 1
            self._latencies_ms.append(latency_ms)
            for stage, seconds in stages.items():
                self._stage_seconds[stage] = self._stage_seconds.get(stage, 0.0) + seconds

    def add(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        with self._lock:
            values = np.asarray(self._latencies_ms, dtype=np.float64)
        if not len(values):
            return None, None
        p50, p99 = np.percentile(values, [50, 99])
        return float(p50), float(p99)

    def take_fps(self) -> float:
        """Frames per second since the previous call (the stats interval)."""
        with self._lock:
            now = time.monotonic()
            elapsed = max(1e-9, now - self._interval_started)
            fps = self._interval_frames / elapsed
            self._interval_frames, self._interval_started = 0, now
        return fps

    def stage_seconds(self) -> dict[str, float]:
        with self._lock:
            return dict(self._stage_seconds)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started
