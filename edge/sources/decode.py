"""Read one image file strictly: bad files become a reason string, never an exception.

The header is read first (:mod:`shared.imagefiles`, no decoder involved): files whose
declared size exceeds ``source.max_frame_pixels``, that are incomplete, or that are no
PNG/JPEG/TIFF/BMP at all are refused before OpenCV sees a byte, so a decompression bomb
costs the bytes of its header, not gigabytes. OpenCV's own ceiling
(``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 by default) is left alone: it is read once when cv2
is loaded, process-wide, and cannot follow the setting; the pre-check is what bounds
memory, and whatever the decoder still raises (``cv2.error``, ``MemoryError``, ...) is
caught and named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.imagefiles import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageHeader, read_image_bytes

__all__ = ["IMAGE_SUFFIXES", "DecodedImage", "decode_checked", "read_image_file"]

MAX_PIXELS_SETTING = "source.max_frame_pixels"


@dataclass(frozen=True)
class DecodedImage:
    """Pixels as decoded (bit depth and channels unchanged) and the header they were checked against."""

    image: np.ndarray
    header: ImageHeader


def decode_checked(data: bytes | bytearray, header: ImageHeader) -> np.ndarray | str:
    """Decode bytes whose header passed the checks; any decoder failure becomes a reason."""
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except Exception as error:  # noqa: BLE001 - cv2.error, MemoryError, ...: the frame fails, not the source
        first_line = str(error).strip().splitlines()[-1:] or [""]
        return f"the {header.format.value} decoder failed ({type(error).__name__}: {first_line[0][:200]})"
    if image is None or image.size == 0:
        return f"not a decodable image (OpenCV could not decode this {header.format.value} data)"
    if image.shape[:2] != (header.height_px, header.width_px):
        return (
            f"decoded size {image.shape[1]} x {image.shape[0]} differs from the declared "
            f"{header.width_px} x {header.height_px}"
        )
    return image


def read_image_file(
    path: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    follow_symlinks: bool = True,
    setting: str = MAX_PIXELS_SETTING,
    suffix: str | None = None,
) -> DecodedImage | str:
    """The decoded image and its header, or the reason the file cannot be a frame (never raises).

    ``suffix`` overrides ``path``'s (a symlink's name decides the type, not its target's).
    """
    suffix = (path.suffix if suffix is None else suffix).lower()
    if suffix not in IMAGE_SUFFIXES:
        return f"not an image file type ({suffix or 'no suffix'}; expected one of {', '.join(IMAGE_SUFFIXES)})"
    read = read_image_bytes(path, max_pixels, setting, follow_symlinks=follow_symlinks)
    if isinstance(read, str):
        return read
    data, header = read
    image = decode_checked(data, header)
    return image if isinstance(image, str) else DecodedImage(image, header)
