"""The patch segmenter: segmentation-models-pytorch FPN with a squeeze-and-excitation encoder.

Thesis encoder: ``se_resnext50_32x4d`` (the ``thesis`` preset); the ``cpu`` preset is chosen by
measurement (quality per FLOP, see the README's segmenter Pareto table). Same input contract as the
classifier ([0, 1] float NCHW, normalisation inside); output: defect logits (N, 1, H, W).
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from training.models.normalization import check_input_norm, normalize_input
from training.models.specs import ENCODER_PRESETS, SegmenterSpec

__all__ = ["ENCODER_PRESETS", "PatchSegmenter", "SegmenterSpec", "create_segmenter"]


class PatchSegmenter(nn.Module):
    """[0, 1] patches (N, C, H, W) -> defect logits (N, 1, H, W)."""

    def __init__(self, spec: SegmenterSpec) -> None:
        super().__init__()
        self.spec = spec
        self.net = smp.create_model(
            spec.arch,
            encoder_name=spec.encoder,
            encoder_weights=None,
            in_channels=spec.in_channels,
            classes=1,
            **decoder_kwargs(spec.arch, spec.decoder_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(normalize_input(x, self.spec.input_norm, self.spec.mean, self.spec.std))


def decoder_kwargs(arch: str, channels: tuple[int, ...]) -> dict:
    """smp's keyword arguments for the decoder widths of ``arch`` (empty = smp's defaults)."""
    if not channels:
        return {}
    if any(c <= 0 for c in channels):
        raise ValueError(f"decoder_channels must be positive, got {list(channels)}")
    name = arch.lower()
    if name == "fpn":
        if len(channels) != 2:
            raise ValueError(f"fpn takes decoder_channels (pyramid, segmentation), got {list(channels)}")
        return {"decoder_pyramid_channels": channels[0], "decoder_segmentation_channels": channels[1]}
    if name in ("unet", "unetplusplus"):
        return {"decoder_channels": list(channels)}
    raise ValueError(f"decoder_channels is defined for fpn, unet and unetplusplus, not {arch!r}")


def create_segmenter(spec: SegmenterSpec) -> PatchSegmenter:
    """Build a segmenter; an unknown encoder or architecture names the problem."""
    check_input_norm(spec.input_norm)
    encoder = ENCODER_PRESETS.get(spec.encoder, spec.encoder)
    spec = SegmenterSpec(**{**spec.to_dict(), "encoder": encoder})
    try:
        return PatchSegmenter(spec)
    except (KeyError, ValueError, RuntimeError) as error:
        raise ValueError(f"cannot build {spec.arch} with encoder {spec.encoder!r}: {error}") from None
