"""Where the generator may paint, and the composite that keeps everything else byte for byte.

Torch functions on [N, 1, H, W] tensors, the same in training and sampling. A defect mask grows
by ``dilate_px`` (a square neighbourhood, ``max_pool2d``) into the *hole*; around it a border of
``feather_px`` rings ramps alpha from 1 down to 0, so alpha is exactly 0 farther than
``dilate_px + feather_px`` px (Chebyshev distance) from the defect. There the composite is the
background: :func:`composite` selects it with ``torch.where`` and :func:`composite_uint8` copies its
bytes. The hole is filled smoothly from its surroundings (:func:`fill_hole`, push-pull over an
average-pooling pyramid) before the generator sees it, so G never sees the real defect it repaints.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def grow(mask: torch.Tensor, px: int) -> torch.Tensor:
    """{0, 1} mask grown by ``px`` pixels (square neighbourhood)."""
    if px <= 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * px + 1, stride=1, padding=px)


def alpha_map(mask: torch.Tensor, dilate_px: int, feather_px: int) -> torch.Tensor:
    """[N, 1, H, W] in [0, 1]: 1 on the hole, then ``feather_px`` rings falling to 0, 0 beyond."""
    region = grow((mask > 0.5).float(), dilate_px)
    alpha = region
    for ring in range(1, feather_px + 1):
        alpha = torch.maximum(alpha, grow(region, ring) * (1.0 - ring / (feather_px + 1.0)))
    return alpha


def hole_of(alpha: torch.Tensor) -> torch.Tensor:
    """The hole (alpha = 1) as a {0, 1} mask."""
    return (alpha >= 1.0).float()


def fill_hole(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """``image`` with the hole filled smoothly from its surroundings (push-pull over an average-pool pyramid)."""
    known = 1.0 - hole
    levels = [(image * known, known)]
    while levels[-1][0].shape[-1] > 1 and levels[-1][0].shape[-2] > 1:
        value, weight = levels[-1]
        levels.append((F.avg_pool2d(value, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True)))
    value, weight = levels[-1]
    filled = value / weight.clamp_min(1e-8)
    for value, weight in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=value.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.where(weight > 0.999, value / weight.clamp_min(1e-8), coarse)
    return torch.where(hole > 0, filled, image)


def composite(background: torch.Tensor, painted: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """α·painted + (1 − α)·background; exactly the background where α = 0."""
    return torch.where(alpha > 0, alpha * painted + (1 - alpha) * background, background)


def composite_uint8(background: np.ndarray, painted: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 [H, W] composite; every pixel where α = 0 is the background's byte (painted: uint8 or float)."""
    mixed = alpha * painted.astype(np.float32) + (1.0 - alpha) * background.astype(np.float32)
    out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return np.where(alpha > 0, out, background)
