"""Feature extractors for FID/KID, fully offline: a trained patch classifier, or a local Inception file.

Nothing is downloaded. The default is the *domain* extractor: the pooled features (before the
defect logit) of a patch classifier trained by ``pump-train classifier train`` — 512·width-d
features that know what a defect looks like on this part, and need far fewer samples than
Inception's 2048. ``--inception FILE`` uses torchvision's Inception-v3 with a state dict from
that file (gray repeated to 3 channels, 299 px, scaled to [-1, 1] as its ImageNet weights
expect); its FIDs are still not comparable to published ones (those use the TF-Inception port).
The report names the extractor.
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
    """torchvision Inception-v3 pool features (2048-d) from a local state-dict file.

    The file is loaded strictly (a file that is not an Inception-v3 state dict is refused, never
    half-loaded into random features); with or without the auxiliary head, any ``fc`` size.
    torchvision's ImageNet weights expect inputs in [-1, 1] (what its ``transform_input`` makes
    of ImageNet-normalised ones), so gray [0, 1] patches go in as ``2x - 1`` on 3 channels.
    """
    from torchvision.models import inception_v3

    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Inception weights file not found (no download happens)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        aux = any(key.startswith("AuxLogits.") for key in state)
        classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 1000
        model = inception_v3(weights=None, aux_logits=aux, init_weights=False, num_classes=classes)
        model.load_state_dict(state, strict=True)
    except Exception as error:  # torch raises several types for files that are not a state dict
        raise ValueError(f"{path}: not a torchvision Inception-v3 state dict ({error})") from None
    model.fc = nn.Identity()
    model.eval()

    def embed(x: torch.Tensor) -> torch.Tensor:
        return model(x.repeat(1, 3, 1, 1) * 2.0 - 1.0)

    return FeatureExtractor(
        name=f"Inception-v3 pool (2048-d) from {path.resolve()}", dims=2048, input_px=299, embed=embed
    )


def pixel_features(input_px: int = 32) -> FeatureExtractor:
    """Down-sampled pixels: only for the nearest-neighbour view when no extractor is given (never for FID)."""
    return FeatureExtractor(
        name=f"pixels at {input_px} px", dims=input_px * input_px, input_px=input_px, embed=lambda x: x.flatten(1)
    )
