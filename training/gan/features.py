"""Feature extractors for FID/KID, fully offline: a trained patch classifier, or a local Inception file.

Nothing is downloaded. The default is the *domain* extractor: the pooled features (before the
defect logit) of a patch classifier trained by ``pump-train classifier train`` — 512·width-d
features that know what a defect looks like on this part, and need far fewer samples than
Inception's 2048. ``--inception FILE`` uses torchvision's Inception-v3 with a state dict from
that file (gray repeated to 3 channels, 299 px, ImageNet normalisation); its FIDs are still not
comparable to published ones (those use the TF-Inception port). The report names the extractor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.pixels import to_model_input

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureExtractor:
    """uint8 patches [N, H, W] -> features [N, D]; ``name`` goes into every report."""

    name: str
    dims: int
    input_px: int
    embed: Callable[[torch.Tensor], torch.Tensor]  # float [N, 1, input_px, input_px] in [0, 1] -> [N, D]

    def __call__(self, patches: np.ndarray, batch: int = 128) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(patches), batch):
                chunk = torch.from_numpy(to_model_input(np.ascontiguousarray(patches[start : start + batch])))
                if chunk.shape[-1] != self.input_px:
                    chunk = F.interpolate(
                        chunk,
                        size=(self.input_px, self.input_px),
                        mode="area" if chunk.shape[-1] > self.input_px else "bilinear",
                    )
                out.append(self.embed(chunk).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dims))


def classifier_features(run_dir: Path) -> FeatureExtractor:
    """The pooled features of a trained classifier run (its ``model.pt``), the fc layer removed."""
    from training.models.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(Path(run_dir))
    if checkpoint.task != "classifier":
        raise ValueError(f"{run_dir}: a {checkpoint.task} run; the domain features need a classifier run")
    model = copy.deepcopy(checkpoint.build())
    model.backbone.fc = nn.Identity()
    dims = int(checkpoint.state_dict["backbone.fc.weight"].shape[1])
    return FeatureExtractor(
        name=f"classifier pooled features ({dims}-d) of {Path(run_dir).resolve()}",
        dims=dims,
        input_px=int(checkpoint.spec["input_px"]),
        embed=model.eval(),
    )


def inception_features(weights: Path) -> FeatureExtractor:
    """torchvision Inception-v3 pool features (2048-d) from a local state-dict file."""
    from torchvision.models import inception_v3

    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Inception weights file not found (no download happens)")
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=False)
    except Exception as error:  # torch raises several types for files that are not a state dict
        raise ValueError(f"{path}: not a torchvision Inception-v3 state dict ({error})") from None
    model.fc = nn.Identity()
    model.eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def embed(x: torch.Tensor) -> torch.Tensor:
        return model((x.repeat(1, 3, 1, 1) - mean) / std)

    return FeatureExtractor(
        name=f"Inception-v3 pool (2048-d) from {path.resolve()}", dims=2048, input_px=299, embed=embed
    )


def pixel_features(input_px: int = 32) -> FeatureExtractor:
    """Down-sampled pixels: only for the nearest-neighbour view when no extractor is given (never for FID)."""
    return FeatureExtractor(
        name=f"pixels at {input_px} px", dims=input_px * input_px, input_px=input_px, embed=lambda x: x.flatten(1)
    )
