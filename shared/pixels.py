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

    ``auto`` (the default) decides per file from evidence, never from brightness alone:
    a header that states the significant bits (PNG ``sBIT``, TIFF ``MaxSampleValue``) is
    used when the values fit in them (12 -> scale12; values above that mean the file was
    shifted up to 16 bits as the PNG spec asks -> scale16); values above 4095 can only be
    16-bit data -> scale16. A 16-bit image whose values all fit in 12 bits and whose header
    says nothing is refused (``ValueError``): 12-bit data read as 16-bit looks 16x too dark
    and a dark 16-bit frame read as 12-bit 16x too bright - both pass as plausible frames -
    so the setting must say which (``scale12`` or ``scale16``).
    """

    AUTO = "auto"
    SCALE16 = "scale16"
    SCALE12 = "scale12"
    MINMAX = "minmax"


_BLOCK_PX = 1 << 21  # convert ~2 MP at a time: float32 temporaries stay ~25 MB whatever the frame size


def _row_blocks(image: np.ndarray) -> list[slice]:
    """Row slices of about ``_BLOCK_PX`` pixels each, covering ``image``."""
    rows = max(1, _BLOCK_PX // max(1, image.shape[1] if image.ndim > 1 else 1))
    return [slice(start, start + rows) for start in range(0, image.shape[0], rows)]


def auto_depth_scale(image: np.ndarray, significant_bits: int | None = None) -> float:
    """The value ``auto`` maps to 255 for a 16-bit ``image`` (see :class:`DepthPolicy`).

    >>> import numpy as np
    >>> auto_depth_scale(np.array([[0, 60000]], np.uint16))
    65535.0
    >>> auto_depth_scale(np.array([[0, 4000]], np.uint16), significant_bits=12)
    4095.0
    """
    peak = int(image.max()) if image.size else 0
    if significant_bits is not None and 0 < significant_bits < 16 and peak < 2**significant_bits:
        return float(2**significant_bits - 1)
    if significant_bits is not None or peak > 4095:
        return 65535.0
    raise ValueError(
        f"16-bit image whose values all fit in 12 bits (max {peak}) and no header states the significant bits: "
        "12-bit sensor data or a dark 16-bit frame? Set the depth policy to scale12 or scale16"
    )


def to_uint8(
    image: np.ndarray, policy: DepthPolicy = DepthPolicy.SCALE16, significant_bits: int | None = None
) -> np.ndarray:
    """Convert an 8- or 16-bit image to 8 bits under ``policy``; 8-bit input is returned as is.

    ``significant_bits`` is what the file's header states (used by ``auto`` only). Large
    images are converted in row blocks, so memory stays near input + output.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype != np.uint16:
        raise ValueError(f"expected an 8- or 16-bit image, got dtype {image.dtype}")
    if policy is DepthPolicy.AUTO:
        full_scale = auto_depth_scale(image, significant_bits)
        policy = DepthPolicy.SCALE16 if full_scale == 65535.0 else policy
    low = high = 0.0
    if policy is DepthPolicy.MINMAX and image.size:
        low, high = float(image.min()), float(image.max())
    out = np.empty(image.shape, np.uint8)
    for rows in _row_blocks(image):
        values = image[rows].astype(np.float32)
        if policy is DepthPolicy.SCALE16:
            scaled = values / 257.0
        elif policy is DepthPolicy.SCALE12:
            scaled = values * (255.0 / 4095.0)
        elif policy is DepthPolicy.AUTO:  # a header-stated depth below 16 bits
            scaled = values * (255.0 / full_scale)
        else:
            scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        out[rows] = np.clip(np.rint(scaled), 0, 255)
    return out


def to_gray(image: np.ndarray) -> np.ndarray:
    """BGR or BGRA (H, W, 3|4) to gray (H, W); gray input is returned as is (squeezed)."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")
    top = np.iinfo(image.dtype).max if image.dtype.kind in "ui" else None
    out = np.empty(image.shape[:2], image.dtype)
    for rows in _row_blocks(image):
        luma = image[rows, :, :3].astype(np.float32) @ _BGR_TO_GRAY
        out[rows] = np.clip(np.rint(luma), 0, top) if top is not None else luma
    return out


def normalize_pixels(
    image: np.ndarray,
    color: ColorPolicy = ColorPolicy.GRAY,
    depth: DepthPolicy = DepthPolicy.SCALE16,
    significant_bits: int | None = None,
) -> np.ndarray:
    """Any supported input to 8 bits, gray (H, W) or BGR (H, W, 3) as ``color`` says.

    ``significant_bits`` is what the file's header states about 16-bit data (``auto``).
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D gray or 3-D colour image, got shape {image.shape}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]  # alpha carries nothing for inspection
    if color is ColorPolicy.GRAY:
        image = to_gray(image)
    elif image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return to_uint8(image, depth, significant_bits)
