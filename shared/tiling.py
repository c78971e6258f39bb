"""Patch geometry shared by training (`pump-train patches`) and the edge runtime.

Pure, stateless functions on integer sizes: the region of interest (ROI) of a frame,
tile boxes that cover the ROI, random tile boxes, and the resize factor to the patch
size. Nothing here touches pixels (see :mod:`shared.patching`) or remembers a frame.

Conventions: coordinates are pixels of the full frame, ``x`` to the right, ``y`` down;
a box is ``[x, x + size) x [y, y + size)``. When the ROI is smaller than a tile along
an axis, the single tile on that axis starts at the ROI's origin and reaches past it;
the pixels past the ROI are padding (filled by reflection, marked *ignore* in masks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Roi:
    """Region of interest inside a frame, in frame pixels."""

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"ROI must have a positive size, got {self.width}x{self.height}")
        if self.x < 0 or self.y < 0:
            raise ValueError(f"ROI origin must be inside the frame, got ({self.x}, {self.y})")


@dataclass(frozen=True)
class TileBox:
    """A square tile in frame pixels; it may reach past the ROI (that part is padding)."""

    x: int
    y: int
    size: int

    def valid_extent(self, roi: Roi) -> tuple[int, int]:
        """Width and height of the part of this tile that lies inside ``roi``."""
        valid_w = max(0, min(self.x + self.size, roi.x + roi.width) - max(self.x, roi.x))
        valid_h = max(0, min(self.y + self.size, roi.y + roi.height) - max(self.y, roi.y))
        return valid_w, valid_h

    def valid_fraction(self, roi: Roi) -> float:
        """Share of the tile's pixels that are real ROI pixels (1.0 = no padding)."""
        valid_w, valid_h = self.valid_extent(roi)
        return valid_w * valid_h / float(self.size * self.size)


def center_roi(frame_width: int, frame_height: int, roi_width: int, roi_height: int) -> Roi:
    """Center crop of ``roi_width x roi_height``, cut down to what the frame has.

    A frame smaller than the requested crop keeps its full extent along that axis,
    so small images (e.g. Magnetic Tile, 103-632 px wide) work with the thesis defaults.

    >>> center_roi(3200, 2224, 1920, 1920)
    Roi(x=640, y=152, width=1920, height=1920)
    >>> center_roi(220, 288, 1920, 1920)
    Roi(x=0, y=0, width=220, height=288)
    """
    if frame_width <= 0 or frame_height <= 0:
        raise ValueError(f"frame must have a positive size, got {frame_width}x{frame_height}")
    if roi_width <= 0 or roi_height <= 0:
        raise ValueError(f"crop must have a positive size, got {roi_width}x{roi_height}")
    width = min(roi_width, frame_width)
    height = min(roi_height, frame_height)
    return Roi((frame_width - width) // 2, (frame_height - height) // 2, width, height)


def crop_roi(frame_width: int, frame_height: int, crop_px: int) -> Roi:
    """The ROI rule of ``GeometryConfig.crop_px``: a square center crop, ``0`` = the whole frame.

    The one place the rule lives: training cuts patches and the edge tiles frames with it.

    >>> crop_roi(3200, 2224, 1920)
    Roi(x=640, y=152, width=1920, height=1920)
    >>> crop_roi(3200, 2224, 0)
    Roi(x=0, y=0, width=3200, height=2224)
    """
    if crop_px < 0:
        raise ValueError(f"crop_px must be >= 0 (0 = whole frame), got {crop_px}")
    side = crop_px or max(frame_width, frame_height)
    return center_roi(frame_width, frame_height, side, side)


def box_roi(frame_width: int, frame_height: int, x: int, y: int, width: int, height: int) -> Roi:
    """A configured ROI box, clipped to the frame; raises if nothing of it is inside."""
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(frame_width, x + width), min(frame_height, y + height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(
            f"ROI box (x={x}, y={y}, {width}x{height}) lies outside the {frame_width}x{frame_height} frame"
        )
    return Roi(x0, y0, x1 - x0, y1 - y0)


def axis_starts(length: int, tile_px: int, min_overlap_px: int = 0) -> tuple[int, ...]:
    """Tile start offsets along one axis so that tiles cover ``[0, length)`` exactly.

    The fewest tiles whose overlap is at least ``min_overlap_px``; the first tile is
    flush with 0, the last with ``length``, the others evenly spread (rounded).

    >>> axis_starts(1920, 256)
    (0, 238, 475, 713, 951, 1189, 1426, 1664)
    >>> axis_starts(100, 128)
    (0,)
    """
    if tile_px <= 0:
        raise ValueError(f"tile_px must be positive, got {tile_px}")
    if not 0 <= min_overlap_px < tile_px:
        raise ValueError(f"min_overlap_px must be in [0, tile_px), got {min_overlap_px}")
    if length <= tile_px:
        return (0,)
    count = math.ceil((length - tile_px) / (tile_px - min_overlap_px)) + 1
    span = length - tile_px
    return tuple(round(i * span / (count - 1)) for i in range(count))


def grid_tiles(roi: Roi, tile_px: int, min_overlap_px: int = 0) -> tuple[TileBox, ...]:
    """Row-major tiles that cover the ROI completely (the edge runtime's tiling).

    >>> len(grid_tiles(Roi(640, 152, 1920, 1920), 256))
    64
    """
    xs = axis_starts(roi.width, tile_px, min_overlap_px)
    ys = axis_starts(roi.height, tile_px, min_overlap_px)
    return tuple(TileBox(roi.x + x, roi.y + y, tile_px) for y in ys for x in xs)


def random_tiles(roi: Roi, tile_px: int, count: int, rng: np.random.Generator) -> tuple[TileBox, ...]:
    """``count`` tiles at uniform random positions fully inside the ROI where it is large enough.

    Along an axis where the ROI is smaller than a tile, the tile starts at the ROI origin
    (as in :func:`grid_tiles`), so it reaches past the ROI and gets padded.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    span_x = max(0, roi.width - tile_px)
    span_y = max(0, roi.height - tile_px)
    xs = rng.integers(0, span_x + 1, size=count)
    ys = rng.integers(0, span_y + 1, size=count)
    return tuple(TileBox(roi.x + int(x), roi.y + int(y), tile_px) for x, y in zip(xs, ys, strict=True))


def resize_factor(tile_px: int, patch_px: int) -> float:
    """Patch pixels per tile pixel (0.5 for the thesis's 256 -> 128)."""
    if tile_px <= 0 or patch_px <= 0:
        raise ValueError(f"tile_px and patch_px must be positive, got {tile_px}, {patch_px}")
    return patch_px / tile_px
