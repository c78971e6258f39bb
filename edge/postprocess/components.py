"""Defect regions: connected components of the thresholded map, with box, area and scores."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.postprocess.stitch import StitchedMap
from shared.messages import Box, Defect


@dataclass(frozen=True)
class DefectRegion:
    """One 8-connected region of defect pixels; box in full-frame pixels."""

    x: int
    y: int
    w: int
    h: int
    area_px: int
    max_score: float
    mean_score: float

    def to_message(self) -> Defect:
        """The MQTT payload's form (:class:`shared.messages.Defect`)."""
        return Defect(
            box=Box(x=self.x, y=self.y, w=self.w, h=self.h),
            area_px=self.area_px,
            max_score=self.max_score,
            mean_score=self.mean_score,
        )


def find_regions(stitched: StitchedMap, pixel_threshold: float, min_area_px: int) -> tuple[list[DefectRegion], int]:
    """Regions of ``probability > pixel_threshold`` at least ``min_area_px`` large, highest max score first.

    Returns the regions and how many smaller ones were dropped as noise.
    """
    probabilities = stitched.probabilities
    binary = (probabilities > pixel_threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return [], 0
    inside = labels > 0
    label_of, score_of = labels[inside], probabilities[inside]
    sums = np.bincount(label_of, weights=score_of, minlength=count)
    peaks = np.zeros(count, dtype=np.float32)
    np.maximum.at(peaks, label_of, score_of)
    areas = stats[:, cv2.CC_STAT_AREA]
    big = [label for label in range(1, count) if areas[label] >= min_area_px]
    regions = [
        DefectRegion(
            x=int(stats[label, cv2.CC_STAT_LEFT]) + stitched.roi.x,
            y=int(stats[label, cv2.CC_STAT_TOP]) + stitched.roi.y,
            w=int(stats[label, cv2.CC_STAT_WIDTH]),
            h=int(stats[label, cv2.CC_STAT_HEIGHT]),
            area_px=int(areas[label]),
            max_score=float(peaks[label]),
            mean_score=float(min(1.0, sums[label] / areas[label])),
        )
        for label in big
    ]
    regions.sort(key=lambda region: (-region.max_score, -region.area_px, region.y, region.x))
    return regions, (count - 1) - len(big)
