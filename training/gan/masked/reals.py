"""Real minibatches of the masked family: defect pairs, and good backgrounds with a moved real mask."""

from __future__ import annotations

import numpy as np
import torch

from training.gan.masked.masks import MaskWarp, dihedral_pair, warp_mask


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [N, H, W] -> float [N, 1, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0).unsqueeze(1).to(device)


def mask_tensor(masks: np.ndarray, device: torch.device) -> torch.Tensor:
    """{0, 1} [N, H, W] -> float [N, 1, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)).unsqueeze(1).to(device)


class MaskedBatches:
    """Per step: ``batch`` real pairs (turned when the structure allows) and ``batch`` backgrounds with a mask."""

    def __init__(self, data: dict[str, np.ndarray], device: torch.device, rng: np.random.Generator) -> None:
        missing = {"images", "masks", "backgrounds", "near_index", "near_offsets"} - set(data)
        if missing:
            raise ValueError(f"masked-generator training data lacks {sorted(missing)}")
        self.images, self.masks, self.backgrounds = data["images"], data["masks"], data["backgrounds"]
        self.near_index, self.near_offsets = data["near_index"], data["near_offsets"]
        self.fixed = bool(data.get("fixed_structure", False))
        self.warp = MaskWarp(dihedral=not self.fixed)
        self.device, self.rng = device, rng

    def next(self, batch: int) -> dict[str, torch.Tensor]:
        """{"image", "mask": real pairs; "background", "background_mask": a good patch and a moved real mask}."""
        pick = self.rng.integers(0, len(self.images), size=batch)
        images, masks = self.images[pick], self.masks[pick]
        if not self.fixed:
            images, masks = dihedral_pair(images, masks, self.rng)
        donors = self.rng.integers(0, len(self.images), size=batch)
        backgrounds, moved = [], []
        for donor in donors:
            start, end = self.near_offsets[donor], self.near_offsets[donor + 1]
            backgrounds.append(self.backgrounds[self.near_index[self.rng.integers(start, end)]])
            moved.append(warp_mask(self.masks[donor], self.rng, self.warp))
        return {
            "image": to_tensor(images, self.device),
            "mask": mask_tensor(masks, self.device),
            "background": to_tensor(np.stack(backgrounds), self.device),
            "background_mask": mask_tensor(np.stack(moved), self.device),
        }

    def next_fixed(self, batch: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """:meth:`next` drawn from ``rng`` (the run's own stream is left where it was)."""
        own, self.rng = self.rng, rng
        try:
            return self.next(batch)
        finally:
            self.rng = own

    def preview(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """uint8 [count, H, W] real defect patches for the run's reals.png."""
        return self.images[rng.integers(0, len(self.images), count)]
