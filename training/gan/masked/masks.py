"""New masks from real ones: what the generator paints into a background it has never seen a defect on.

A real training mask is turned (dihedral turns: free location only; on a part of fixed structure a
defect keeps its place and orientation), warped by a small affine (rotation, scale, shift) and
an elastic field (smoothed random displacements, as Simard et al. 2003), then binarised. A warp
that loses the defect returns the mask unchanged. Pure numpy/OpenCV, seeded by the caller's rng.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MaskWarp:
    """How far a real mask may move (defaults: small; a moved defect must stay that defect's shape)."""

    dihedral: bool = True  # flips and 90° turns (off on fixed-structure parts)
    rotate_deg: float = 10.0
    scale: float = 0.1  # relative, ±
    shift_px: float = 4.0
    elastic_px: float = 2.0  # displacement amplitude
    elastic_sigma_px: float = 6.0  # smoothness of the displacement field


def warp_mask(mask: np.ndarray, rng: np.random.Generator, warp: MaskWarp = MaskWarp()) -> np.ndarray:
    """bool [H, W] -> a warped bool mask of the same size (never empty when ``mask`` is not)."""
    source = mask.astype(bool)
    out = source
    if warp.dihedral:
        out = np.rot90(out, int(rng.integers(4)))
        if rng.random() < 0.5:
            out = out[:, ::-1]
    h, w = out.shape
    image = np.ascontiguousarray(out, dtype=np.float32)
    angle = float(rng.uniform(-warp.rotate_deg, warp.rotate_deg))
    scale = float(1.0 + rng.uniform(-warp.scale, warp.scale))
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-warp.shift_px, warp.shift_px, size=2)
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    if warp.elastic_px > 0:
        grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float32)
        dx, dy = (
            cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), warp.elastic_sigma_px)
            for _ in range(2)
        )
        norm = max(float(np.abs(dx).max()), float(np.abs(dy).max()), 1e-6)
        dx, dy = dx / norm * warp.elastic_px, dy / norm * warp.elastic_px
        image = cv2.remap(image, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderValue=0.0)
    warped = image >= 0.5
    return warped if warped.any() or not source.any() else source


def dihedral_pair(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip/turn of each image and its mask ([N, H, W] each): exact, so pairs stay aligned."""
    out_images, out_masks = images.copy(), masks.copy()
    for i in range(len(images)):
        k, flip = int(rng.integers(4)), rng.random() < 0.5
        out_images[i], out_masks[i] = np.rot90(images[i], k), np.rot90(masks[i], k)
        if flip:
            out_images[i], out_masks[i] = out_images[i][:, ::-1], out_masks[i][:, ::-1]
    return out_images, out_masks
