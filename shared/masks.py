"""Mask pixel values every dataset, patch set and model bundle agrees on.

Masks are 8-bit single-channel images: 0 = good, 255 = defect, and
:data:`MASK_IGNORE` for pixels that carry no label (padding past the image edge).
The ignore value is below 128, so a consumer that binarises at > 127 reads it as
good, never as a defect.
"""

from __future__ import annotations

import numpy as np

MASK_GOOD = 0
MASK_DEFECT = 255
MASK_IGNORE = 64


def defect_pixels(mask: np.ndarray) -> int:
    """Number of defect pixels in a mask."""
    return int(np.count_nonzero(mask == MASK_DEFECT))


def labelled_pixels(mask: np.ndarray) -> int:
    """Number of pixels that carry a label (not :data:`MASK_IGNORE`)."""
    return int(mask.size - np.count_nonzero(mask == MASK_IGNORE))


def defect_fraction(mask: np.ndarray) -> float:
    """Share of labelled pixels that are defect (0.0 for a mask that is all ignore)."""
    labelled = labelled_pixels(mask)
    return defect_pixels(mask) / labelled if labelled else 0.0
