"""Pixel work on top of :mod:`shared.tiling`: cut tiles, resize to patches, stitch back.

Training (`pump-train patches`) and the edge runtime both call these functions, so a
model sees bit-identical patches offline and on the line. This is the one module of
`shared` that needs OpenCV (INTER_AREA resizing); OpenCV is a dependency of both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from shared.masks import MASK_IGNORE
from shared.tiling import Roi, TileBox


def _tile_slices(box: TileBox, roi: Roi) -> tuple[slice, slice, tuple[tuple[int, int], tuple[int, int]]]:
    """Frame slices of the tile's part inside the ROI and the padding (before, after) per axis."""
    x0, y0 = max(box.x, roi.x), max(box.y, roi.y)
    x1 = min(box.x + box.size, roi.x + roi.width)
    y1 = min(box.y + box.size, roi.y + roi.height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"tile {box} does not overlap the ROI {roi}")
    pad_y = (y0 - box.y, box.y + box.size - y1)
    pad_x = (x0 - box.x, box.x + box.size - x1)
    return slice(y0, y1), slice(x0, x1), (pad_y, pad_x)


def cut_tile(image: np.ndarray, box: TileBox, roi: Roi) -> np.ndarray:
    """The tile's pixels; parts past the ROI are filled by reflecting the ROI's own pixels."""
    rows, cols, (pad_y, pad_x) = _tile_slices(box, roi)
    if (roi.y + roi.height > image.shape[0]) or (roi.x + roi.width > image.shape[1]):
        raise ValueError(f"ROI {roi} lies outside the {image.shape[1]}x{image.shape[0]} image")
    tile = image[rows, cols]
    if pad_y == (0, 0) and pad_x == (0, 0):
        return tile
    if tile.shape[0] == 1 or tile.shape[1] == 1:
        mode: Literal["reflect", "edge"] = "edge"  # a 1-px wide strip has nothing to reflect
    else:
        mode = "reflect"
    pads = (pad_y, pad_x) + (((0, 0),) if tile.ndim == 3 else ())
    return np.pad(tile, pads, mode=mode)


def cut_mask_tile(mask: np.ndarray, box: TileBox, roi: Roi) -> np.ndarray:
    """The mask's tile; padding past the ROI is :data:`~shared.masks.MASK_IGNORE`."""
    rows, cols, (pad_y, pad_x) = _tile_slices(box, roi)
    tile = mask[rows, cols]
    if pad_y == (0, 0) and pad_x == (0, 0):
        return tile
    return np.pad(tile, (pad_y, pad_x), mode="constant", constant_values=MASK_IGNORE)


def resize_image_tile(tile: np.ndarray, patch_px: int) -> np.ndarray:
    """Tile to patch size with area interpolation (the thesis's 256 -> 128)."""
    if tile.shape[0] == patch_px and tile.shape[1] == patch_px:
        return tile
    return cv2.resize(tile, (patch_px, patch_px), interpolation=cv2.INTER_AREA)


def resize_mask_tile(tile: np.ndarray, patch_px: int) -> np.ndarray:
    """Mask tile to patch size with nearest-neighbour interpolation (labels stay labels)."""
    if tile.shape[0] == patch_px and tile.shape[1] == patch_px:
        return tile
    return cv2.resize(tile, (patch_px, patch_px), interpolation=cv2.INTER_NEAREST)


def extract_patches(image: np.ndarray, boxes: Sequence[TileBox], roi: Roi, patch_px: int) -> np.ndarray:
    """Batch of patches ``(N, patch_px, patch_px[, C])`` for ``boxes`` of one frame."""
    first = image.shape[2:] if image.ndim == 3 else ()
    out = np.empty((len(boxes), patch_px, patch_px, *first), dtype=image.dtype)
    for i, box in enumerate(boxes):
        out[i] = resize_image_tile(cut_tile(image, box, roi), patch_px)
    return out


def extract_mask_patches(mask: np.ndarray, boxes: Sequence[TileBox], roi: Roi, patch_px: int) -> np.ndarray:
    """Batch of mask patches ``(N, patch_px, patch_px)`` matching :func:`extract_patches`."""
    out = np.empty((len(boxes), patch_px, patch_px), dtype=mask.dtype)
    for i, box in enumerate(boxes):
        out[i] = resize_mask_tile(cut_mask_tile(mask, box, roi), patch_px)
    return out


def stitch(
    values: np.ndarray,
    boxes: Sequence[TileBox],
    roi: Roi,
    reduce: Literal["mean", "max"] = "mean",
) -> np.ndarray:
    """Per-patch maps ``(N, p, p)`` back onto the ROI as one float32 ``(H, W)`` map.

    Each patch map is resized to its tile (linear), padding past the ROI is dropped,
    and overlapping tiles are averaged (``mean``) or maxed (``max``). ROI pixels that
    no tile covers stay 0.
    """
    if len(values) != len(boxes):
        raise ValueError(f"{len(values)} patch maps for {len(boxes)} tiles")
    total = np.zeros((roi.height, roi.width), dtype=np.float32)
    weight = np.zeros((roi.height, roi.width), dtype=np.float32)
    for value, box in zip(values, boxes, strict=True):
        tile = value.astype(np.float32, copy=False)
        if tile.shape[0] != box.size:
            tile = cv2.resize(tile, (box.size, box.size), interpolation=cv2.INTER_LINEAR)
        rows, cols, (pad_y, pad_x) = _tile_slices(box, roi)
        inner = tile[pad_y[0] : box.size - pad_y[1], pad_x[0] : box.size - pad_x[1]]
        target_rows = slice(rows.start - roi.y, rows.stop - roi.y)
        target_cols = slice(cols.start - roi.x, cols.stop - roi.x)
        if reduce == "max":
            np.maximum(total[target_rows, target_cols], inner, out=total[target_rows, target_cols])
        else:
            total[target_rows, target_cols] += inner
            weight[target_rows, target_cols] += 1.0
    if reduce == "max":
        return total
    return np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)
