"""``synthetic:WIDTHxHEIGHT`` - generated frames, so the runtime runs and is tested without a camera.

Frame ``k`` is seeded noise around mid-gray; every second frame carries one bright 24 px
square (a defect a threshold model finds). Endless unless ``max_frames`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge.sources.base import FrameError, FrameSource, SourceItem, utc_now
from edge.sources.config import SourceConfig

SIZE_PATTERN = re.compile(r"^(\d+)x(\d+)$")
DEFECT_PX = 24
DEFECT_VALUE = 250


def synthetic_image(width: int, height: int, index: int) -> np.ndarray:
    """Deterministic uint8 frame ``index``; even indices carry the bright square near the centre."""
    rng = np.random.default_rng(index)
    image = rng.normal(110.0, 6.0, size=(height, width)).clip(0, 200).astype(np.uint8)
    if index % 2 == 0:
        x, y = width // 2 - DEFECT_PX // 2 + 37, height // 2 - DEFECT_PX // 2 - 21
        image[max(0, y) : y + DEFECT_PX, max(0, x) : x + DEFECT_PX] = DEFECT_VALUE
    return image


class SyntheticSource(FrameSource):
    """Generated gray frames; ``SourceConfig.color=keep`` gives them as BGR."""

    kind = "synthetic"

    def __init__(self, target: str, config: SourceConfig, data_dir: Path | None = None) -> None:
        super().__init__(target, config, data_dir)
        match = SIZE_PATTERN.match(target)
        if match is None or min(int(match[1]), int(match[2])) <= 0:
            raise ValueError(f"synthetic source needs WIDTHxHEIGHT, got {target!r}")
        self.width, self.height = int(match[1]), int(match[2])
        problem = self.frame_size_problem(self.width, self.height)
        if problem:
            raise ValueError(f"synthetic source {target!r}: {problem}")

    def _items(self) -> Iterator[SourceItem]:
        index = 0
        while not self.stopped:
            frame_id = f"{self.name}-{index:06d}"
            try:
                image = synthetic_image(self.width, self.height, index)
            except MemoryError as error:  # a frame can fail, the source cannot
                yield FrameError(self.name, frame_id, f"cannot generate the frame (MemoryError: {error})")
            else:
                yield self.to_frame(image, frame_id, frame_id, utc_now())
            index += 1
