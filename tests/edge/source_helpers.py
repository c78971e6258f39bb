"""What the frame-source tests share: small frames, draining a source, writing a video."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from edge.sources import Frame, FrameError, SourceConfig, create_source


def gray(width: int = 64, height: int = 48, value: int = 100) -> np.ndarray:
    image = np.full((height, width), value, np.uint8)
    image[5:15, 5:25] = 200  # something to tell orientation by
    return image


def collect(config: SourceConfig) -> list:
    with create_source(config) as source:
        return list(source)


def frames_of(items: list) -> list[Frame]:
    return [item for item in items if isinstance(item, Frame)]


def write_video(path: Path, count: int, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size, True)
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for index in range(count):
        writer.write(np.full((size[1], size[0], 3), 30 + 40 * index, np.uint8))
    writer.release()
    return path


def drain_in_thread(source) -> tuple[queue.Queue, threading.Thread]:
    items: queue.Queue = queue.Queue()

    def run() -> None:
        for item in source:
            items.put(item)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return items, thread


def reasons_by_name(items: list) -> dict[str, str]:
    return {Path(item.ref).name: item.reason for item in items if isinstance(item, FrameError)}
