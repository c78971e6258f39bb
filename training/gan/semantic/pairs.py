"""Augmenting labelled real pairs for D_sem: the same geometric op on image and label.

``flips``: random horizontal and vertical flips (all the thesis allows once D_sem's gradient
reaches the image: a warped real pair would teach G the warp, since G's image is now judged
together with its label). ``affine`` (the original SemanticGAN's joint augmentation, allowed
only with the gradient detached): flips plus a random shift (±1/8), scale (0.9-1.1) and
rotation (±15°); bilinear for the image, nearest for the label, border pixels repeated.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_flips(image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: flip left-right with p 0.5 and up-down with p 0.5, the same for image and label."""
    n = image.shape[0]
    for dim in (3, 2):
        flip = (torch.rand(n, device=image.device) < 0.5).view(n, 1, 1, 1)
        image = torch.where(flip, image.flip(dim), image)
        label = torch.where(flip, label.flip(dim), label)
    return image, label


def random_affine(image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the same random shift/scale/rotation of image (bilinear) and label (nearest)."""
    n, device = image.shape[0], image.device
    angle = (torch.rand(n, device=device) * 2 - 1) * math.radians(15)
    scale = 0.9 + torch.rand(n, device=device) * 0.2
    shift = (torch.rand(n, 2, device=device) * 2 - 1) * 0.25  # ±1/8 of the side in [-1, 1] units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    label = F.grid_sample(label, grid.to(label.dtype), mode="nearest", padding_mode="border", align_corners=False)
    return image, label


def augment_pairs(image: torch.Tensor, label: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``mode`` in none / flips / affine (see the module docstring)."""
    if mode == "none":
        return image, label
    if mode == "flips":
        return random_flips(image, label)
    if mode == "affine":
        return random_affine(*random_flips(image, label))
    raise ValueError(f"unknown pair augmentation {mode!r}; valid: none, flips, affine")
