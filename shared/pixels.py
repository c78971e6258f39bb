"""Pixel-format conversions that training and the edge must do identically.

Models work on 8-bit single-channel images. Cameras and datasets deliver 8- or
16-bit, gray or color (BGR, as OpenCV reads them); these functions turn them into
8-bit gray deliberately, and the chosen policy is recorded wherever it is used.
:func:`to_channels` gives an image the model's channel count and :func:`to_model_input`
turns uint8 patches into the float32 batch every model takes, in training and on the line.
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


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Gray (H, W[, 1]), BGR or BGRA (H, W, 3|4) -> the model's ``channels``: 1 gray (H, W) or 3 BGR (H, W, 3).

    The one channel rule of training and the edge: colour becomes luma with OpenCV's BT.601
    weights (:func:`to_gray`), gray is repeated into three channels, alpha is dropped. An image
    already in the asked form comes back as is.

    >>> import numpy as np
    >>> to_channels(np.zeros((2, 5, 4), np.uint8), 3).shape
    (2, 5, 3)
    >>> to_channels(np.zeros((2, 5), np.uint8), 3).shape
    (2, 5, 3)
    >>> to_channels(np.zeros((2, 5, 3), np.uint8), 1).shape
    (2, 5)
    """
    if channels not in (1, 3):
        raise ValueError(f"models take 1 (gray) or 3 (BGR) channels, got {channels}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")
    if channels == 1:
        return to_gray(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]) if image.shape[2] == 4 else image


# uint8 -> float32 in [0, 1]: the table of v / 255 divided in float32. Every model input, on the
# edge and in training, comes from this table, so the two halves feed a model the same bits.
UINT8_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255.0)
UINT8_TO_UNIT.setflags(write=False)


def to_model_input(patches: np.ndarray) -> np.ndarray:
    """uint8 patches (N, P, P) or (N, P, P, C) -> float32 NCHW in [0, 1], the bundle's input contract.

    The model input is ``uint8 / 255`` in float32 (normalisation, if any, is inside the model).
    Training (``training.train.runtime.to_tensor``), the ONNX parity check and the edge's
    :class:`~edge.tiling.FrameTiler` all call this, so their inputs are bit-identical.

    >>> import numpy as np
    >>> to_model_input(np.array([[[0, 255]]], np.uint8)).tolist()
    [[[[0.0, 1.0]]]]
    """
    if patches.dtype != np.uint8:
        raise ValueError(f"patches must be uint8, got {patches.dtype}")
    if patches.ndim not in (3, 4):
        raise ValueError(f"expected patches (N, P, P) or (N, P, P, C), got shape {patches.shape}")
    unit = np.take(UINT8_TO_UNIT, patches)
    if unit.ndim == 3:
        return unit[:, None, :, :]
    return np.ascontiguousarray(unit.transpose(0, 3, 1, 2))


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
    image = to_channels(image, 1 if color is ColorPolicy.GRAY else 3)  # alpha carries nothing for inspection
    return to_uint8(image, depth, significant_bits)
