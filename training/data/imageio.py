"""Reading source images strictly and writing dataset images with checksums.

OpenCV decodes a truncated JPEG without complaint (it fills the rest with grey), so
structural end markers are checked before decoding: a file that would silently give
wrong pixels is reported as bad, not imported.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared.imagefiles import structural_problem
from training.outputs import sha256_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class BadImageError(ValueError):
    """A source file that cannot be imported; ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def read_source_image(path: Path) -> np.ndarray:
    """Decode any supported image unchanged (bit depth, channels); raise :class:`BadImageError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadImageError(path, f"cannot be read ({error.strerror})") from None
    if not data:
        raise BadImageError(path, "empty file")
    problem = structural_problem(data, path.suffix.lower())
    if problem:
        raise BadImageError(path, problem)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise BadImageError(path, "not a decodable image")
    if image.dtype not in (np.uint8, np.uint16):
        raise BadImageError(path, f"unsupported pixel type {image.dtype} (expected 8- or 16-bit)")
    return image


def encode_png(image: np.ndarray, compression: int = 3) -> tuple[bytes, str]:
    """PNG bytes of ``image`` and their sha256 (the checksum recorded in manifests)."""
    ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as PNG")
    data = buffer.tobytes()
    return data, sha256_bytes(data)
