"""Real minibatches for SemanticGAN: one unlabelled batch (D_img) and one labelled pair batch (D_sem) per step."""

from __future__ import annotations

import numpy as np
import torch


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [N, H, W] -> float [N, 1, H, W] in [-1, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0).unsqueeze(1).to(device)


class PairedBatches:
    """Uniform draws with replacement from the unlabelled images and, independently, from the labelled pairs."""

    def __init__(self, data: dict[str, np.ndarray], device: torch.device, rng: np.random.Generator) -> None:
        missing = {"images", "pair_images", "pair_masks"} - set(data)
        if missing:
            raise ValueError(f"SemanticGAN training data lacks {sorted(missing)} (labelled pairs and images)")
        if len(data["pair_images"]) == 0 or len(data["images"]) == 0:
            raise ValueError("SemanticGAN training data needs at least one labelled pair and one image")
        self.images = _to_tensor(data["images"], device)
        self.pair_images = _to_tensor(data["pair_images"], device)
        self.pair_masks = torch.from_numpy(np.ascontiguousarray(data["pair_masks"])).unsqueeze(1).to(device)
        self.rng = rng

    def next(self, batch: int) -> dict[str, torch.Tensor]:
        """{"image": [B,1,H,W], "pair_image": [B,1,H,W], "pair_mask": uint8 {0,1} [B,1,H,W]}."""
        image = torch.from_numpy(self.rng.integers(0, len(self.images), size=batch)).to(self.images.device)
        pair = torch.from_numpy(self.rng.integers(0, len(self.pair_images), size=batch)).to(self.images.device)
        return {"image": self.images[image], "pair_image": self.pair_images[pair], "pair_mask": self.pair_masks[pair]}

    def preview(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """uint8 [count, H, W] labelled images for the run's reals.png."""
        from training.gan.loop import to_uint8  # here, not at the top: the loop imports the family registry

        return to_uint8(self.pair_images[rng.integers(0, len(self.pair_images), count)])
