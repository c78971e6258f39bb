"""Settings of the synthetic pump-part frames that stand in for the private thesis data.

The defaults reproduce the thesis camera (3200x2224 px) and its defect statistics; tests
shrink the frame, and the part and its defects shrink with it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFECT_KINDS = ("scratch", "pit", "chip", "contamination")


class DefectKindWeights(BaseModel):
    """Relative frequency of each defect kind (normalised when sampling, need not sum to 1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    scratch: float = Field(0.25, ge=0.0, le=1000.0, description="Weight of thin straight/curved scratches.")
    pit: float = Field(0.25, ge=0.0, le=1000.0, description="Weight of pits/dents (dark ellipse, light rim).")
    chip: float = Field(0.18, ge=0.0, le=1000.0, description="Weight of chipped edges of the part or a bore.")
    contamination: float = Field(0.32, ge=0.0, le=1000.0, description="Weight of irregular dirt/oil/residue blobs.")

    def probabilities(self) -> tuple[float, ...]:
        """Sampling probabilities in the order of :data:`DEFECT_KINDS`."""
        weights = tuple(float(getattr(self, kind)) for kind in DEFECT_KINDS)
        total = sum(weights)
        if total <= 0.0:
            raise ValueError("at least one defect kind weight must be positive")
        return tuple(weight / total for weight in weights)


class SynthConfig(BaseModel):
    """How synthetic frames are rendered: frame size, pose/lighting jitter, noise and defects."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    width_px: int = Field(3200, ge=64, le=16384, description="Frame width in pixels (thesis camera: 3200).")
    height_px: int = Field(2224, ge=64, le=16384, description="Frame height in pixels (thesis camera: 2224).")
    position_jitter_px: float = Field(
        20.0, ge=0.0, le=500.0, description="Maximum shift of the part along x and y, in frame pixels."
    )
    rotation_jitter_deg: float = Field(
        1.0, ge=0.0, le=180.0, description="Maximum rotation of the part about its centre, in degrees."
    )
    brightness_jitter: float = Field(
        0.15, ge=0.0, le=0.9, description="Maximum relative change of the overall brightness (0.15 = +-15%)."
    )
    contrast_jitter: float = Field(
        0.15, ge=0.0, le=0.9, description="Maximum relative change of the contrast about mid grey (+-15%)."
    )
    vignetting: float = Field(
        0.25, ge=0.0, le=0.9, description="Relative brightness loss in the frame corners (lens vignetting)."
    )
    texture_variation: float = Field(
        0.04,
        ge=0.0,
        le=0.5,
        description="Amplitude of the per-frame low-frequency gain variation (surface finish, lighting).",
    )
    grain_variation: float = Field(
        0.015, ge=0.0, le=0.5, description="Amplitude of the per-frame fine surface grain (relative gain)."
    )
    noise_sigma: float = Field(
        2.5, ge=0.0, le=50.0, description="Standard deviation of the sensor noise, in 8-bit grey levels."
    )
    defects_per_frame: float = Field(
        1.45,
        ge=0.0,
        le=50.0,
        description="Mean of the Poisson-distributed defect count per frame (some frames get none).",
    )
    kind_weights: DefectKindWeights = Field(
        default_factory=DefectKindWeights, description="Relative frequency of the defect kinds."
    )

    @model_validator(mode="after")
    def _kinds_possible(self) -> SynthConfig:
        if self.defects_per_frame > 0:
            self.kind_weights.probabilities()  # raises when every weight is zero
        return self
