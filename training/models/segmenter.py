"""The patch segmenter: segmentation-models-pytorch FPN with a squeeze-and-excitation encoder.

Thesis encoder: ``se_resnext50_32x4d``; the CPU preset ``tu-seresnet18`` (timm's
SE-ResNet-18) is ~2x smaller and several times faster. Same input contract as the
classifier ([0, 1] float NCHW, normalisation inside); output: defect logits (N, 1, H, W).
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from training.models.specs import ENCODER_PRESETS, SegmenterSpec

__all__ = ["ENCODER_PRESETS", "PatchSegmenter", "SegmenterSpec", "create_segmenter"]


class PatchSegmenter(nn.Module):
    """[0, 1] patches (N, C, H, W) -> defect logits (N, 1, H, W)."""

    def __init__(self, spec: SegmenterSpec) -> None:
        super().__init__()
        self.spec = spec
        self.net = smp.create_model(
            spec.arch, encoder_name=spec.encoder, encoder_weights=None, in_channels=spec.in_channels, classes=1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.spec.mean) / self.spec.std)


def create_segmenter(spec: SegmenterSpec) -> PatchSegmenter:
    """Build a segmenter; an unknown encoder or architecture names the problem."""
    encoder = ENCODER_PRESETS.get(spec.encoder, spec.encoder)
    spec = SegmenterSpec(**{**spec.to_dict(), "encoder": encoder})
    try:
        return PatchSegmenter(spec)
    except (KeyError, ValueError, RuntimeError) as error:
        raise ValueError(f"cannot build {spec.arch} with encoder {spec.encoder!r}: {error}") from None
