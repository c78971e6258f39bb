"""The defect-map picture for MQTT: a downscaled frame with defects tinted and boxed, or the mask.

Small defects must survive downscaling: the mask is reduced by area (any covered pixel
tints its output pixel, stronger with more coverage) and boxes are drawn at least 3 px.

The path is straight: ``MqttConfig.publishes_defect_map`` decides which frames get one, the
station renders it here once (an image, never PNG bytes), and the publisher fits it to the
payload limit and encodes it once (:func:`edge.publish.defect_map.fit_png`).
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.postprocess.analysis import FrameAnalysis
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.scores import Thresholds
from shared.messages import Verdict

DEFECT_BGR = (0, 0, 255)
ROI_BGR = (0, 200, 255)
TEXT_BGR = {Verdict.OK: (0, 200, 0), Verdict.NG: (0, 0, 255)}


def defect_mask(analysis: FrameAnalysis, pixel_threshold: float | None) -> np.ndarray:
    """uint8 mask (0/255) over the frame's ROI."""
    roi = analysis.layout.roi
    mask = np.zeros((roi.height, roi.width), dtype=np.uint8)
    stitched = analysis.stitched
    if stitched is not None and pixel_threshold is not None:
        y, x = stitched.roi.y - roi.y, stitched.roi.x - roi.x
        region = mask[y : y + stitched.roi.height, x : x + stitched.roi.width]
        region[stitched.probabilities > pixel_threshold] = 255
    return mask


def frame_mask(width: int, height: int, roi, roi_mask: np.ndarray, max_px: int) -> np.ndarray:  # noqa: ANN001
    """The ROI mask placed in a frame-sized 0/255 mask, downscaled to ``max_px`` (any defect pixel survives).

    Covering the whole frame keeps the MQTT contract simple: map x = frame x * scale.
    """
    scale = min(1.0, max_px / max(width, height))
    size = (max(1, _scaled(width, scale)), max(1, _scaled(height, scale)))
    if scale >= 1.0:
        full = np.zeros((height, width), dtype=np.uint8)
        full[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width] = roi_mask
        return full
    out = np.zeros((size[1], size[0]), dtype=np.uint8)
    if roi_mask.any():
        x0, y0 = _scaled(roi.x, scale), _scaled(roi.y, scale)
        x1 = min(size[0], max(x0 + 1, _scaled(roi.x + roi.width, scale)))
        y1 = min(size[1], max(y0 + 1, _scaled(roi.y + roi.height, scale)))
        small = cv2.resize(roi_mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = np.where(small > 0, 255, 0).astype(np.uint8)
    return out


def _scaled(value: int, scale: float) -> int:
    return int(round(value * scale))


def render_defect_map(
    image: np.ndarray, analysis: FrameAnalysis, thresholds: Thresholds, config: PostprocessConfig
) -> np.ndarray:
    """The defect-map picture in ``config.defect_map_style``, longest side at most ``config.defect_map_max_px``.

    ``mask``: uint8 (H, W), 0 good / 255 defect over the whole frame; ``overlay``: uint8 BGR (H, W, 3).
    """
    mask = defect_mask(analysis, thresholds.pixel)
    if config.defect_map_style == "mask":
        return frame_mask(image.shape[1], image.shape[0], analysis.layout.roi, mask, config.defect_map_max_px)

    height, width = image.shape[:2]
    scale = min(1.0, config.defect_map_max_px / max(height, width))
    size = (max(1, _scaled(width, scale)), max(1, _scaled(height, scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else image.copy()
    canvas = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR) if small.ndim == 2 else np.ascontiguousarray(small)

    roi = analysis.layout.roi
    x0, y0 = _scaled(roi.x, scale), _scaled(roi.y, scale)
    x1 = min(size[0], max(x0 + 1, _scaled(roi.x + roi.width, scale)))
    y1 = min(size[1], max(y0 + 1, _scaled(roi.y + roi.height, scale)))
    if mask.any():
        coverage = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        alpha = np.where(coverage > 0, 0.5 + 0.5 * coverage, 0.0)[..., None]
        target = canvas[y0:y1, x0:x1].astype(np.float32)
        canvas[y0:y1, x0:x1] = (target * (1 - alpha) + np.array(DEFECT_BGR, np.float32) * alpha).astype(np.uint8)
    cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), ROI_BGR, 1)
    for region in analysis.defects:
        left, top = _scaled(region.x, scale), _scaled(region.y, scale)
        right = max(left + 3, _scaled(region.x + region.w, scale))
        bottom = max(top + 3, _scaled(region.y + region.h, scale))
        cv2.rectangle(canvas, (left - 1, top - 1), (right, bottom), DEFECT_BGR, 1)
    label = analysis.verdict.value
    cv2.putText(canvas, label, (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.9, TEXT_BGR[analysis.verdict], 2, cv2.LINE_AA)
    return canvas
