"""The ``[classifier]``, ``[segmenter]`` and ``[export]`` sections of :class:`training.config.TrainSettings`.

Each section is a preset name, the model (what :mod:`training.models` builds), the
:class:`~training.train.schedule.Schedule`, and for the segmenter its data and threshold.
Presets are data: partial section values applied *beneath* whatever the user gave, so the
order is defaults < preset < TOML file < ``PUMP_*`` environment < command-line flags, and the
preset itself may be named in any of those (``[classifier] preset = "thesis"``,
``PUMP_CLASSIFIER__PRESET=thesis``, ``--preset thesis``). The GAN families add their section
the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.bundle import MIN_OPSET
from shared.config import ConfigBool
from training.models.specs import ENCODER_PRESETS, ClassifierSpec, SegmenterSpec
from training.train.schedule import Schedule

PresetValues = Mapping[str, Mapping[str, Any]]

# cpu: what fits the team's 2-core machines — ResNet-18 topology at half width seeing 64 px with
# global max pooling and per-patch input normalisation, 2500 iterations with a bfloat16 forward pass
# (the smallest setting whose baseline passed the learning gate on Magnetic Tile); thesis: full
# ResNet-18 at 128 px for 80K iterations.
CLASSIFIER_PRESETS: dict[str, PresetValues] = {
    "cpu": {
        "model": {"width": 0.5, "internal_px": 64, "pooling": "max", "input_norm": "patch"},
        "schedule": {"iterations": 2500, "val_every": 250, "batch_size": 64, "lr": 2e-3, "precision": "bf16"},
    },
    "thesis": {
        "model": {"width": 1.0, "internal_px": 128, "pooling": "avg", "input_norm": "fixed"},
        "schedule": {"iterations": 80_000, "val_every": 1000, "batch_size": 64, "lr": 1e-3, "precision": "fp32"},
    },
}
# cpu: chosen by measurement on Magnetic Tile (README, "Segmenter under a CPU budget"): FPN with timm's
# SE-ResNet-18 and a narrow decoder (pyramid 64 / segmentation 32 channels instead of 256 / 128),
# per-patch input normalisation, 800 bfloat16 iterations, pixel threshold chosen on validation.
# thesis: se_resnext50_32x4d with smp's decoder, fixed normalisation, threshold 0.9, 20K iterations.
SEGMENTER_PRESETS: dict[str, PresetValues] = {
    "cpu": {
        "model": {
            "arch": "fpn",
            "encoder": ENCODER_PRESETS["cpu"],
            "decoder_channels": (64, 32),
            "input_norm": "patch",
        },
        "schedule": {"iterations": 800, "val_every": 100, "batch_size": 16, "lr": 1e-3, "precision": "bf16"},
        "threshold": 0.5,
        "tune_threshold": True,
    },
    "thesis": {
        "model": {"arch": "fpn", "encoder": ENCODER_PRESETS["thesis"], "decoder_channels": (), "input_norm": "fixed"},
        "schedule": {"iterations": 20_000, "val_every": 400, "batch_size": 16, "lr": 1e-3, "precision": "fp32"},
        "threshold": 0.9,
        "tune_threshold": False,
    },
}
DEFAULT_PRESET = "cpu"


def beneath(preset: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with the preset's values filled in wherever ``given`` is silent (nested sections too)."""
    merged = dict(preset)
    for key, value in given.items():
        below = merged.get(key)
        merged[key] = beneath(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return merged


def apply_preset(data: Any, presets: Mapping[str, PresetValues]) -> Any:
    """Raw section input with its preset beneath it; an unknown name is left to the ``preset`` field to refuse."""
    if not isinstance(data, Mapping):
        return data
    name = data.get("preset", DEFAULT_PRESET)
    return beneath(presets[name], data) if name in presets else data


_CLASSIFIER = ClassifierSpec()
_SEGMENTER = SegmenterSpec()


class ClassifierModel(BaseModel):
    """The patch classifier to build (the patch size comes from the patch set)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Literal["resnet18"] = Field(_CLASSIFIER.name, description="Registered classifier architecture.")
    in_channels: int = Field(_CLASSIFIER.in_channels, ge=1, le=4, description="Input channels: 1 gray, 3 BGR.")
    width: float = Field(
        _CLASSIFIER.width, gt=0, le=4, description="Channel multiplier of the ResNet-18 topology (1 = torchvision)."
    )
    internal_px: int = Field(
        _CLASSIFIER.internal_px,
        gt=0,
        le=4096,
        description="Side the backbone sees (patches are area-resized, never up).",
    )
    pooling: Literal["avg", "max"] = Field(
        _CLASSIFIER.pooling, description="Global pooling: avg (torchvision) or max (a tiny defect is not averaged)."
    )
    input_norm: Literal["fixed", "patch"] = Field(
        _CLASSIFIER.input_norm, description="Input normalisation: fixed (mean/std below) or patch (each patch's own)."
    )
    mean: float = Field(
        _CLASSIFIER.mean, ge=-1.0, le=2.0, description="fixed normalisation: mean subtracted from [0, 1] pixels."
    )
    std: float = Field(_CLASSIFIER.std, gt=0, le=10.0, description="fixed normalisation: divisor after the mean.")

    def spec(self, input_px: int) -> ClassifierSpec:
        """The exportable model's spec for patches of ``input_px``."""
        internal_px = min(self.internal_px, input_px)
        return ClassifierSpec(**{**self.model_dump(), "input_px": input_px, "internal_px": internal_px})


class SegmenterModel(BaseModel):
    """The patch segmenter to build (the patch size comes from the patch set)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    arch: str = Field(_SEGMENTER.arch, min_length=1, description="segmentation_models_pytorch architecture.")
    encoder: str = Field(
        _SEGMENTER.encoder, min_length=1, description=f"smp encoder, or a preset name: {sorted(ENCODER_PRESETS)}."
    )
    in_channels: int = Field(_SEGMENTER.in_channels, ge=1, le=4, description="Input channels: 1 gray, 3 BGR.")
    decoder_channels: tuple[Annotated[int, Field(gt=0, le=4096)], ...] = Field(
        _SEGMENTER.decoder_channels,
        max_length=8,
        description="Decoder widths ([] = smp default): fpn [pyramid, segmentation]; unet one per stage.",
    )
    input_norm: Literal["fixed", "patch"] = Field(
        _SEGMENTER.input_norm, description="Input normalisation: fixed (mean/std below) or patch (each patch's own)."
    )
    mean: float = Field(_SEGMENTER.mean, ge=-1.0, le=2.0, description="Mean subtracted from [0, 1] pixels.")
    std: float = Field(_SEGMENTER.std, gt=0, le=10.0, description="Divisor after the mean.")

    def spec(self, input_px: int) -> SegmenterSpec:
        """The exportable model's spec for patches of ``input_px`` (preset encoder names resolved)."""
        encoder = ENCODER_PRESETS.get(self.encoder, self.encoder)
        return SegmenterSpec(**{**self.model_dump(), "encoder": encoder, "input_px": input_px})


class ClassifierSettings(BaseModel):
    """``[classifier]``: `classifier train` and `experiment classification`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: Literal["cpu", "thesis"] = Field(
        DEFAULT_PRESET, description="Values applied beneath file, environment and flags: cpu or thesis."
    )
    model: ClassifierModel = Field(default_factory=ClassifierModel, description="The classifier to build.")
    schedule: Schedule = Field(default_factory=Schedule, description="Iterations, batches, optimiser, precision.")

    @model_validator(mode="before")
    @classmethod
    def _preset_beneath(cls, data: Any) -> Any:
        return apply_preset(data, CLASSIFIER_PRESETS)


class SegmenterSettings(BaseModel):
    """``[segmenter]``: `segmenter train` and `experiment segmentation`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: Literal["cpu", "thesis"] = Field(
        DEFAULT_PRESET, description="Values applied beneath file, environment and flags: cpu or thesis."
    )
    model: SegmenterModel = Field(default_factory=SegmenterModel, description="The segmenter to build.")
    schedule: Schedule = Field(default_factory=Schedule, description="Iterations, batches, optimiser, precision.")
    healthy_share: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of healthy patches in every split (0 = defective only; 0.5 = §4.3.4)."
    )
    threshold: float = Field(0.9, gt=0.0, lt=1.0, description="Pixel probability above which a pixel is a defect.")
    tune_threshold: ConfigBool = Field(
        False,
        description="Choose the pixel threshold on validation (best defect IoU on a 0.1..0.9 grid) after "
        "training; `threshold` is then only the starting point of model selection. Recorded in the run.",
    )

    @model_validator(mode="before")
    @classmethod
    def _preset_beneath(cls, data: Any) -> Any:
        return apply_preset(data, SEGMENTER_PRESETS)


class ExportOptions(BaseModel):
    """``[export]``: how `pump-train export` turns a checkpoint into a bundle."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    opset: int = Field(17, ge=MIN_OPSET, le=30, description=f"ONNX opset of the default domain (>= {MIN_OPSET}).")
    atol: float = Field(
        1e-3,
        gt=0,
        le=1e-2,
        description="Largest allowed |ONNX Runtime - PyTorch| on the parity batches (logits; 1e-3 moves a "
        "probability by at most 2.5e-4).",
    )
