"""Frame -> batch: the ROI and tile grid of a frame size (cached) and the model's input tensor.

The geometry and pixel work are :mod:`shared.tiling` and :mod:`shared.patching`, the very
functions ``pump-train patches --mode grid`` cuts training patches with, and the batch is
:func:`shared.pixels.to_model_input`, training's own uint8 -> float32 conversion, so the model
sees bit-identical inputs on the line. Unlike training, the edge keeps every tile, also tiles
that are mostly padding (training skips those below ``min_valid_fraction``): a part of the
ROI no tile covers would go uninspected. ``TileLayout.valid_fractions`` says which tiles are
padded, for consumers that want to weigh them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from edge.runtime.config import RoiConfig  # [roi] is config (data); it lives with the other sections
from shared.bundle import BundleInput
from shared.config import GeometryConfig
from shared.patching import extract_patches
from shared.pixels import to_model_input
from shared.tiling import Roi, TileBox, box_roi, crop_roi, grid_tiles

MAX_CACHED_LAYOUTS = 8  # frame sizes a station sees: one or two; the bound only stops a leak


@dataclass(frozen=True, eq=False)
class TileLayout:
    """Where a frame of one size is cut: the ROI and the row-major tile boxes (frame px)."""

    frame_width: int
    frame_height: int
    roi: Roi
    boxes: tuple[TileBox, ...]
    tile_px: int
    patch_px: int
    valid_fractions: np.ndarray  # (N,) float32: share of each tile that is real ROI pixels

    @property
    def count(self) -> int:
        return len(self.boxes)


def frame_roi(width: int, height: int, geometry: GeometryConfig, roi_box: RoiConfig | None = None) -> Roi:
    """The ROI of a ``width x height`` frame: the configured box, else training's center crop."""
    if roi_box is not None:
        return box_roi(width, height, roi_box.x, roi_box.y, roi_box.width, roi_box.height)
    return crop_roi(width, height, geometry.crop_px)


def make_layout(width: int, height: int, geometry: GeometryConfig, roi_box: RoiConfig | None = None) -> TileLayout:
    """ROI and grid tiles of a frame size (pure; :class:`FrameTiler` caches it per size)."""
    roi = frame_roi(width, height, geometry, roi_box)
    boxes = grid_tiles(roi, geometry.tile_px, geometry.min_overlap_px)
    fractions = np.array([box.valid_fraction(roi) for box in boxes], dtype=np.float32)
    return TileLayout(width, height, roi, boxes, geometry.tile_px, geometry.patch_px, fractions)


class FrameTiler:
    """Cuts frames into the model's input batch; layouts are computed once per frame size.

    Thread-safe: layouts are immutable and the cache is guarded; each call returns a new batch.
    """

    def __init__(
        self, geometry: GeometryConfig, model_input: BundleInput | None = None, roi_box: RoiConfig | None = None
    ) -> None:
        if model_input is not None and (model_input.height_px, model_input.width_px) != (
            geometry.patch_px,
            geometry.patch_px,
        ):
            raise ValueError(
                f"model input {model_input.height_px}x{model_input.width_px} px differs from "
                f"geometry.patch_px {geometry.patch_px}"
            )
        self.geometry = geometry
        self.roi_box = roi_box
        self.channels = model_input.channels if model_input is not None else 1
        self._layouts: dict[tuple[int, int], TileLayout] = {}
        self._lock = threading.Lock()

    def layout(self, width: int, height: int) -> TileLayout:
        """The (cached) layout of a ``width x height`` frame."""
        key = (width, height)
        with self._lock:
            cached = self._layouts.get(key)
        if cached is not None:
            return cached
        layout = make_layout(width, height, self.geometry, self.roi_box)
        with self._lock:
            if len(self._layouts) >= MAX_CACHED_LAYOUTS:
                self._layouts.clear()
            self._layouts[key] = layout
        return layout

    def patches(self, image: np.ndarray) -> tuple[TileLayout, np.ndarray]:
        """Layout and uint8 patches (N, P, P[, C]) of a frame, exactly as training cuts them."""
        self._check_image(image)
        layout = self.layout(image.shape[1], image.shape[0])
        return layout, extract_patches(image, layout.boxes, layout.roi, layout.patch_px)

    def tile(self, image: np.ndarray) -> tuple[TileLayout, np.ndarray]:
        """Layout and the float32 (N, C, P, P) model batch of a frame."""
        layout, patches = self.patches(image)
        return layout, to_model_input(patches)

    def _check_image(self, image: np.ndarray) -> None:
        if image.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {image.dtype}")
        if self.channels == 1 and image.ndim != 2:
            raise ValueError(f"the model takes gray frames (H, W), got shape {image.shape}")
        if self.channels != 1 and (image.ndim != 3 or image.shape[2] != self.channels):
            raise ValueError(f"the model takes {self.channels}-channel frames (H, W, C), got shape {image.shape}")
