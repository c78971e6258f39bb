"""Pixel-format conversions that training and the edge must do identically.

Models work on 8-bit single-channel images. Cameras and datasets deliver 8- or
16-bit, gray or color (BGR, as OpenCV reads them); these functions turn them into
8-bit gray deliberately, and the chosen policy is recorded wherever it is used.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

# ITU-R BT.601 luma weights, the same as OpenCV's BGR2GRAY.
_BGR_TO_GRAY = np.array([0.114, 0.587, 0.299], dtype=np.float32)


class ColorPolicy(str, Enum):
    """What to do with color inputs."""

    GRAY = "gray"  # convert to one luma channel (default: the pump line is monochrome)
    KEEP = "keep"  # keep three BGR channels


class DepthPolicy(str, Enum):
    """How 16-bit inputs become 8-bit.

    ``scale16`` maps the full 16-bit range linearly (v / 257), keeping absolute
    brightness comparable across images; ``scale12`` does the same for 12-bit sensors
    stored in 16-bit containers (v / 16.06, clipped); ``minmax`` stretches each image's
    own range, which loses absolute brightness and is only for visual inspection.
    """

    SCALE16 = "scale16"
    SCALE12 = "scale12"
    MINMAX = "minmax"


def to_uint8(image: np.ndarray, policy: DepthPolicy = DepthPolicy.SCALE16) -> np.ndarray:
    """Convert an 8- or 16-bit image to 8 bits under ``policy``; 8-bit input is returned as is."""
    if image.dtype == np.uint8:
        return image
    if image.dtype != np.uint16:
        raise ValueError(f"expected an 8- or 16-bit image, got dtype {image.dtype}")
    values = image.astype(np.float32)
    if policy is DepthPolicy.SCALE16:
        scaled = values / 257.0
    elif policy is DepthPolicy.SCALE12:
        scaled = values * (255.0 / 4095.0)
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """BGR or BGRA (H, W, 3|4) to gray (H, W); gray input is returned as is (squeezed)."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")
    luma = image[:, :, :3].astype(np.float32) @ _BGR_TO_GRAY
    return np.clip(np.rint(luma), 0, np.iinfo(image.dtype).max).astype(image.dtype)


def normalize_pixels(
    image: np.ndarray,
    color: ColorPolicy = ColorPolicy.GRAY,
    depth: DepthPolicy = DepthPolicy.SCALE16,
) -> np.ndarray:
    """Any supported input to 8 bits, gray (H, W) or BGR (H, W, 3) as ``color`` says."""
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]  # alpha carries nothing for inspection
    if color is ColorPolicy.GRAY:
        image = to_gray(image)
    elif image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return to_uint8(image, depth)
