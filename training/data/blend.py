"""Copying a defect region from one patch onto another (the pixel half of defect pasting).

Pure functions on arrays: the defect mask is dilated a little so the defect's own rim
comes along, then blended in with a feathered alpha (default) or Poisson blending
(``cv2.seamlessClone``). The pasted patch's defect mask is exactly the source's.
"""

from __future__ import annotations

from enum import Enum

import cv2
import numpy as np

from shared.masks import MASK_DEFECT


class BlendMode(str, Enum):
    ALPHA = "alpha"  # feathered alpha blend: keeps the defect's pixels as they were
    SEAMLESS = "seamless"  # Poisson blending: adapts brightness to the destination, smooths thin defects


def paste_region(defect_mask: np.ndarray, dilate_px: int) -> np.ndarray:
    """Boolean region to copy: defect pixels grown by ``dilate_px`` (elliptic kernel)."""
    region = (defect_mask == MASK_DEFECT).astype(np.uint8)
    if dilate_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        region = cv2.dilate(region, kernel)
    return region.astype(bool)


def _alpha(region: np.ndarray, core: np.ndarray, feather_px: float) -> np.ndarray:
    alpha = region.astype(np.float32)
    if feather_px > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=feather_px)
        alpha = np.where(region, np.maximum(alpha, 0.5), alpha)  # the copied region stays mostly source
    alpha[core] = 1.0
    return alpha


def _seamless(source: np.ndarray, destination: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Poisson blending at the same location; images are padded so the region never touches a border."""
    pad = 8
    src = cv2.copyMakeBorder(source, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    dst = cv2.copyMakeBorder(destination, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    mask = cv2.copyMakeBorder(region.astype(np.uint8) * 255, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    if src.ndim == 2:
        src, dst = cv2.cvtColor(src, cv2.COLOR_GRAY2BGR), cv2.cvtColor(dst, cv2.COLOR_GRAY2BGR)
    x, y, w, h = cv2.boundingRect(mask)
    # seamlessClone centres the mask's bounding box on `center`; this keeps the defect in place.
    center = (x + w // 2, y + h // 2)
    blended = cv2.seamlessClone(src, dst, mask, center, cv2.NORMAL_CLONE)
    blended = blended[pad:-pad, pad:-pad]
    return cv2.cvtColor(blended, cv2.COLOR_BGR2GRAY) if source.ndim == 2 else blended


def paste_defect(
    source: np.ndarray,
    source_mask: np.ndarray,
    destination: np.ndarray,
    destination_mask: np.ndarray,
    *,
    dilate_px: int = 3,
    feather_px: float = 1.5,
    mode: BlendMode = BlendMode.ALPHA,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste the source's defect onto the destination at the same patch location.

    Returns the pasted image and its mask: the destination's mask (good / ignore) with
    the source's defect pixels set to defect.
    """
    if source.shape != destination.shape or source_mask.shape != destination_mask.shape:
        raise ValueError(f"patch shapes differ: {source.shape} vs {destination.shape}")
    core = source_mask == MASK_DEFECT
    if not core.any():
        raise ValueError("the source patch has no defect pixels to paste")
    region = paste_region(source_mask, dilate_px)
    if mode is BlendMode.SEAMLESS:
        pasted = _seamless(source, destination, region)
    else:
        alpha = _alpha(region, core, feather_px)
        if source.ndim == 3:
            alpha = alpha[:, :, None]
        mixed = alpha * source.astype(np.float32) + (1.0 - alpha) * destination.astype(np.float32)
        pasted = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    mask = destination_mask.copy()
    mask[core] = MASK_DEFECT
    return pasted, mask
