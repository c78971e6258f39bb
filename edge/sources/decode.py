"""Read one image file strictly: bad files become a reason string, never an exception.

OpenCV decodes a truncated JPEG or PNG without complaint (the missing rows come out
grey), so the end markers are checked before decoding, as the training importer does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared.imagefiles import structural_problem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


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
