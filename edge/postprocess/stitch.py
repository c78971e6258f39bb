"""Per-patch defect probabilities back onto the frame: max over overlapping tiles.

Each patch map (patch_px) is upscaled to its tile (tile_px, linear) and overlapping tiles
keep the larger probability (:func:`shared.patching.stitch`, the function training's
geometry tests cover). Max, not mean: a defect seen by one of two overlapping tiles must not
be halved below the threshold by the tile that saw it only at its border.

Only tiles with some pixel above the pixel threshold are stitched, and only over the box
they span. This is exact for everything derived from the map: linear upscaling never
exceeds a patch's own maximum, so a tile below the threshold can neither add a defect
pixel nor be the maximum at one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.tiling import TileLayout
from shared.patching import stitch
from shared.tiling import Roi, TileBox


@dataclass(frozen=True, eq=False)
class StitchedMap:
    """Defect probabilities (float32) over ``roi`` (frame px), a part of the frame's ROI."""

    roi: Roi
    probabilities: np.ndarray  # (roi.height, roi.width)


def covered_box(boxes: list[TileBox], roi: Roi) -> Roi:
    """The part of ``roi`` that ``boxes`` cover together (their bounding box, clipped)."""
    x0 = max(roi.x, min(box.x for box in boxes))
    y0 = max(roi.y, min(box.y for box in boxes))
    x1 = min(roi.x + roi.width, max(box.x + box.size for box in boxes))
    y1 = min(roi.y + roi.height, max(box.y + box.size for box in boxes))
    return Roi(x0, y0, x1 - x0, y1 - y0)


def stitch_defects(
    layout: TileLayout, probabilities: np.ndarray, patch_indices: np.ndarray, pixel_threshold: float
) -> StitchedMap | None:
    """Stitch the segmented patches' probabilities (k, P, P); None when no pixel passes the threshold."""
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(len(patch_indices), *probabilities.shape[-2:])
    if len(patch_indices) == 0:
        return None
    peaks = probabilities.reshape(len(patch_indices), -1).max(axis=1)
    hot = np.flatnonzero(peaks > pixel_threshold)
    if len(hot) == 0:
        return None
    boxes = [layout.boxes[int(patch_indices[i])] for i in hot]
    region = covered_box(boxes, layout.roi)
    return StitchedMap(region, stitch(probabilities[hot], boxes, region, reduce="max"))
