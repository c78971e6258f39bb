"""Read one image file strictly: bad files become a reason string, never an exception.

OpenCV decodes a truncated JPEG or PNG without complaint (the missing rows come out
grey), so the end markers are checked before decoding, as the training importer does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def structural_problem(data: bytes, suffix: str) -> str | None:
    """Why ``data`` is not a complete file of its type, or None (only formats with end markers)."""
    if suffix in (".jpg", ".jpeg"):
        if not data.startswith(b"\xff\xd8"):
            return "not a JPEG file (no start-of-image marker)"
        if b"\xff\xd9" not in data.rstrip(b"\x00\r\n ")[-16:]:
            return "truncated JPEG (no end-of-image marker)"
    elif suffix == ".png":
        if not data.startswith(PNG_SIGNATURE):
            return "not a PNG file (bad signature)"
        if b"IEND" not in data[-16:]:
            return "truncated PNG (no IEND chunk)"
    return None


def read_image_file(path: Path) -> np.ndarray | str:
    """The decoded image (bit depth and channels unchanged) or the reason it cannot be used."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return f"not an image file type ({suffix or 'no suffix'}; expected one of {', '.join(IMAGE_SUFFIXES)})"
    try:
        data = path.read_bytes()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not data:
        return "empty file"
    problem = structural_problem(data, suffix)
    if problem:
        return problem
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return "not a decodable image"
    return image
