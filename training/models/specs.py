"""What rebuilds an exportable model: its spec, a frozen dataclass stored in every checkpoint.

Kept free of torch so settings, dry runs and the data commands never import it; the modules
that build the networks (:mod:`.classifier`, :mod:`.segmenter`) take these specs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# segmenter encoder presets: the thesis's encoder and the CPU one (timm's SE-ResNet-18, ~2x smaller)
ENCODER_PRESETS = {"thesis": "se_resnext50_32x4d", "cpu": "tu-seresnet18"}


@dataclass(frozen=True)
class ClassifierSpec:
    """Everything needed to rebuild a classifier for loading or export."""

    name: str = "resnet18"
    in_channels: int = 1
    input_px: int = 128  # what the module accepts (the patch size)
    internal_px: int = 128  # what the backbone sees (64 trains ~4x faster on a CPU)
    width: float = 1.0  # channel multiplier of the ResNet-18 topology (1.0 = torchvision resnet18)
    mean: float = 0.5
    std: float = 0.25
    pooling: str = "avg"  # "avg" (torchvision) or "max": a tiny defect is not averaged away
    input_norm: str = "fixed"  # "fixed" (mean/std above) or "patch" (each patch's own mean/std)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SegmenterSpec:
    """Everything needed to rebuild a segmenter for loading or export."""

    arch: str = "fpn"
    encoder: str = "tu-seresnet18"
    in_channels: int = 1
    input_px: int = 128
    mean: float = 0.5
    std: float = 0.25
    input_norm: str = "fixed"  # "fixed" (mean/std above) or "patch" (each patch's own mean/std)
    # decoder widths; () = smp's defaults. fpn: (pyramid, segmentation) channels; unet/unetplusplus:
    # one width per decoder stage, deepest first (5 for the usual depth-5 encoders).
    decoder_channels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # checkpoints and JSON carry lists; the spec stays hashable
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))

    def to_dict(self) -> dict:
        """Plain JSON values (the decoder widths as a list, as manifests and checkpoints read back)."""
        return {**asdict(self), "decoder_channels": list(self.decoder_channels)}
