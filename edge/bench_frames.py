"""Frames and memory readings for ``pump-edge bench``: synthetic pump frames, decoding, peak RSS.

Frames are drawn with numpy/OpenCV here (the edge must not depend on the training package):
a disc with machined rings, bolt holes, noise and a few bright defects.
"""

from __future__ import annotations

import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.config import EdgeSettings
from edge.sources.base import Frame
from edge.sources.folder import FolderSource
from edge.tiling import FrameTiler

# --- frames ---------------------------------------------------------------------------------


def synthetic_pump_frame(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A gray frame that looks roughly like a pump part: disc, rings, bolt holes, noise, 2-4 bright defects.

    Only for timing: PNG size and decode cost are close to real frames'; the defects give the
    models and the defect map something to do. Defects sit within the central 1800 px (the ROI).
    """
    image = np.full((height, width), 45, np.uint8)
    cx, cy, side = width // 2, height // 2, min(width, height)
    cv2.circle(image, (cx, cy), int(0.46 * side), 125, -1, cv2.LINE_AA)
    cv2.circle(image, (cx, cy), int(0.30 * side), 150, -1, cv2.LINE_AA)
    cv2.circle(image, (cx, cy), int(0.12 * side), 95, -1, cv2.LINE_AA)
    for k in range(8):
        angle = 2 * np.pi * k / 8
        hole = (int(cx + 0.38 * side * np.cos(angle)), int(cy + 0.38 * side * np.sin(angle)))
        cv2.circle(image, hole, int(0.025 * side), 30, -1, cv2.LINE_AA)
    noisy = image.astype(np.int16) + rng.integers(-6, 7, image.shape, dtype=np.int16)
    image = np.clip(noisy, 0, 255).astype(np.uint8)
    reach = max(1, min(900, side // 2 - 40))
    for _ in range(int(rng.integers(2, 5))):
        x, y = (int(v) for v in (cx, cy) + rng.integers(-reach, reach, 2))
        value = int(rng.integers(225, 256))
        if rng.random() < 0.5:  # scratch
            angle, length = rng.uniform(0, np.pi), int(rng.integers(10, 60))
            end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
            cv2.line(image, (x, y), end, value, int(rng.integers(2, 5)), cv2.LINE_AA)
        else:  # pit
            cv2.circle(image, (x, y), int(rng.integers(3, 11)), value, -1, cv2.LINE_AA)
    return image


def write_frames(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """``count`` synthetic PNG frames of ``size`` (W, H) in ``folder``; deterministic in ``seed``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"frame{index:04d}.png"
        if not cv2.imwrite(str(path), synthetic_pump_frame(*size, rng)):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths


@dataclass
class DecodedFrames:
    """The frames of a folder as model batches, with what reading them cost."""

    batches: list[np.ndarray]
    decode_s: list[float]  # per good frame: read + check + decode + pixel conversion
    bad: int  # files the source refused
    size: tuple[int, int] | None  # (W, H) of the first frame


def decode_and_tile(frames_dir: Path, settings: EdgeSettings, tiler: FrameTiler) -> DecodedFrames:
    """Read the folder exactly as the station's source does (timed: decode), tile each frame."""
    config = settings.source.model_copy(update={"spec": f"folder:{frames_dir}", "watch": False, "max_frames": None})
    batches, decode_s, bad, size = [], [], 0, None
    with FolderSource(str(frames_dir), config) as source:
        items = iter(source)
        while True:
            started = time.perf_counter()
            item = next(items, None)
            if item is None:
                break
            if not isinstance(item, Frame):
                bad += 1
                continue
            decode_s.append(time.perf_counter() - started)
            size = size or (item.width, item.height)
            batches.append(tiler.tile(item.image)[1])
    return DecodedFrames(batches, decode_s, bad, size)


# --- memory ---------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ≥ 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def process_peak_rss_mb() -> float:
    """The process's lifetime peak (getrusage; never reset)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(maxrss / (1024.0 * 1024.0) if platform.system() == "Darwin" else maxrss / 1024.0, 1)


def peak_rss_mb() -> float:
    """Peak resident memory in MiB since the last :func:`reset_peak_rss`: VmHWM, else getrusage's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return process_peak_rss_mb()
