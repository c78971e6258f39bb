"""Reading source images strictly and writing dataset images with checksums.

The header is read before any pixel (:mod:`shared.imagefiles`): files that declare more
pixels than ``import.max_image_pixels`` (a 74-byte PNG may declare 100000 x 100000), that
are incomplete (OpenCV decodes a truncated JPEG without complaint, filling the rest with
grey) or that are no PNG/JPEG/TIFF/BMP are reported as bad, never decoded; whatever the
decoder still raises is caught and reported the same way (``--skip-bad`` skips them all).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared.imagefiles import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageHeader, read_image_bytes
from training.outputs import sha256_bytes

__all__ = ["IMAGE_SUFFIXES", "BadImageError", "encode_png", "read_source_file", "read_source_image"]

MAX_PIXELS_SETTING = "import.max_image_pixels"


class BadImageError(ValueError):
    """A source file that cannot be imported; ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def read_source_file(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, ImageHeader]:
    """Decode any supported image unchanged (bit depth, channels) with its header; raise :class:`BadImageError`."""
    path = Path(path)
    read = read_image_bytes(path, max_pixels, MAX_PIXELS_SETTING)
    if isinstance(read, str):
        raise BadImageError(path, read)
    data, header = read
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except Exception as error:  # noqa: BLE001 - cv2.error, MemoryError, ...: a bad input, listed like the others
        raise BadImageError(path, f"the {header.format.value} decoder failed ({type(error).__name__})") from None
    if image is None or image.size == 0:
        raise BadImageError(path, "not a decodable image")
    if image.shape[:2] != (header.height_px, header.width_px):
        raise BadImageError(
            path,
            f"decoded size {image.shape[1]}x{image.shape[0]} differs from the declared "
            f"{header.width_px}x{header.height_px}",
        )
    if image.dtype not in (np.uint8, np.uint16):
        raise BadImageError(path, f"unsupported pixel type {image.dtype} (expected 8- or 16-bit)")
    return image, header


def read_source_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any supported image unchanged (bit depth, channels); raise :class:`BadImageError`."""
    return read_source_file(path, max_pixels)[0]


def encode_png(image: np.ndarray, compression: int = 3) -> tuple[bytes, str]:
    """PNG bytes of ``image`` and their sha256 (the checksum recorded in manifests)."""
    ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as PNG")
    data = buffer.tobytes()
    return data, sha256_bytes(data)
