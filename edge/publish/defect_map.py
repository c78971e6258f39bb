"""Defect maps as PNG payloads that fit the broker's size limit.

A map larger than the limit is downscaled (area interpolation keeps thin defects visible as
grey) until its PNG fits; it is never dropped, so every NG frame the policy selects has a map.
The scale is reported so a consumer can map pixels back to frame coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_SIDE_PX = 1


@dataclass(frozen=True)
class FittedPng:
    """A PNG within the size limit and the factor it was scaled by (1.0 = untouched)."""

    png: bytes
    scale: float
    width_px: int
    height_px: int


def encode_png(image: np.ndarray) -> bytes:
    """8-bit gray or BGR image -> PNG bytes (level 3: level 9 is ~30x slower on a noisy overlay for ~20 % less)."""
    import cv2  # local: only stations that publish defect maps pay for OpenCV

    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} {image.dtype} image as PNG")
    return encoded.tobytes()


def fit_png(data: bytes | np.ndarray, max_bytes: int) -> FittedPng:
    """``data`` (an image, or PNG bytes) as a PNG of at most ``max_bytes``, downscaled if needed.

    The station hands over the rendered image: it is encoded once, and again only while its PNG
    is over the limit. PNG bytes are decoded first (callers that hold an encoded map).
    """
    import cv2

    if isinstance(data, np.ndarray):
        image, png = data, encode_png(data)
    else:
        png = bytes(data)
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError("defect map is not a readable PNG")
    height, width = image.shape[:2]
    scale = 1.0
    current = image
    while len(png) > max_bytes and max(current.shape[:2]) > MIN_SIDE_PX:
        # PNG size grows roughly with pixel count; aim a bit under the limit, at least halve the gap.
        step = min(0.9, max(0.25, 0.9 * math.sqrt(max_bytes / len(png))))
        scale *= step
        size = (max(MIN_SIDE_PX, round(width * scale)), max(MIN_SIDE_PX, round(height * scale)))
        current = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        png = encode_png(current)
    if len(png) > max_bytes:
        raise ValueError(f"a 1 px PNG ({len(png)} B) exceeds defect_map_max_bytes={max_bytes}")
    return FittedPng(png=png, scale=current.shape[1] / width, width_px=current.shape[1], height_px=current.shape[0])
