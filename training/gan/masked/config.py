"""Hyper-parameters of the mask-guided defect generator (family ``masked``, origin ``masked``).

The generator sees a real background patch with a hole where the defect goes and the defect mask,
plus a latent z; it paints the hole, and the composite keeps every pixel outside the grown mask
(``dilate_px`` + ``feather_px``) byte-identical to the background (``composite.py``). Training
pairs are real defective patches with their defect region filled in (``cv2.inpaint``); a
global PatchGAN judges the whole patch and a local one a crop around the defect, both seeing the
mask as a second channel. G's loss = adversarial (both D's) + ``rec_weight`` · L1 of the paired
region at z = 0 − ``div_weight`` · a bounded diversity reward (two z, one mask: different defects).

``tiny`` trains on the patches at full patch resolution (128 px) on a CPU; ``paper`` is the GPU
preset (wider, batch 32). The loop fields (``g_reg_interval``, ``augment_p``, ADA) are what the
family-blind loop reads; this family has no G regulariser and no ADA (the pairs get exact dihedral
turns instead: ADA's pipe cannot take an image ⊕ mask stack).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

NO_REGULARISER = 1_000_000_000  # the loop's G_reg runs at step 0 only (zero gradients: no Adam move)


class MaskedGANConfig(BaseModel):
    """Everything that defines a masked-generator run (per GPU)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    resolution: int = Field(128, ge=16, le=1024, description="Patch side in px (trained at the pool's size).")
    img_channels: int = Field(1, ge=1, le=1, description="Gray patches (the product's).")
    z_dim: int = Field(32, ge=1, le=1024, description="Latent size: one mask, many defects.")
    g_channels: tuple[int, ...] = Field(
        (32, 64, 128, 128), description="U-Net encoder widths, one per stride-2 level (decoder mirrors them)."
    )
    d_channels: tuple[int, ...] = Field((32, 64, 128, 128), description="PatchGAN widths, one per stride-2 conv.")
    # instance norm: without it D stayed at chance against G (alternating steps, 200 of them on Magnetic Tile)
    d_norm: str = Field("instance", pattern="^(none|instance)$", description="Normalisation of the inner D layers.")
    local_px: int = Field(64, ge=8, le=1024, description="Side of the local discriminator's crop around the defect.")
    batch_size: int = Field(8, ge=1, le=4096, description="Pairs per step per process.")
    unpaired_fraction: float = Field(
        0.5, ge=0, lt=1, description="Share of fakes painted on good background patches with a moved real mask."
    )
    # D 5x G (two time-scale rule); at 2e-4 for both D did not leave chance in 250 steps
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(1e-3, gt=0, le=1)
    betas: tuple[float, float] = Field((0.5, 0.99), description="Adam betas of G and D (pix2pix's beta1).")
    r1_gamma: float = Field(1.0, ge=0, description="R1 weight on both discriminators (w.r.t. real image ⊕ mask).")
    d_reg_interval: int = Field(16, ge=1, le=1_000_000, description="Lazy R1: every N steps, gain N.")
    rec_weight: float = Field(10.0, ge=0, description="L1 of the painted region vs the real defect at z = 0.")
    # 1 = per pixel. Per-pixel L1 pulls a large hole to its conditional mean (flat grey on Magnetic Tile's Break
    # and Uneven); on k x k means it fixes brightness and shape and leaves the texture to the discriminators.
    rec_pool_px: int = Field(1, ge=1, le=64, description="The reconstruction compares k x k means of the hole.")
    noise_inputs: bool = Field(False, description="Per-pixel noise in G's decoder (texture; off in the z = 0 rec).")
    # pix2pixHD's feature matching: the painted pair's hidden D activations against the real pair's (same
    # background, so only the cells that see the hole differ) - texture statistics as the discriminators see them
    fm_weight: float = Field(0.0, ge=0, description="Feature matching on the paired half (0: off).")
    div_weight: float = Field(1.0, ge=0, description="Diversity: reward region difference per latent distance.")
    div_tau: float = Field(
        0.2, gt=0, le=10, description="Diversity is rewarded up to this difference per latent distance ([-1, 1] units)."
    )
    dilate_px: int = Field(3, ge=0, le=64, description="The hole: defect mask grown by this many px.")
    feather_px: int = Field(2, ge=0, le=64, description="Soft border outside the hole (alpha 1 -> 0 over it).")
    ema_kimg: float = Field(5.0, ge=0, description="Half-life of the generator's EMA, kimg.")
    ema_rampup: float | None = Field(0.05, description="EMA ramp-up (None: off).")
    precision: str = Field("fp32", pattern="^(fp32|bf16)$", description="Main phases' autocast.")
    # what the family-blind loop reads (no ADA, no G regulariser here)
    g_reg_interval: int = Field(NO_REGULARISER, ge=1, description="Loop field: this family has no G regulariser.")
    augment_p: float = Field(0.0, ge=0, le=0, description="Loop field: no ADA pipe (dihedral turns instead).")
    ada_target: float | None = Field(None, description="Loop field: no ADA.")
    ada_interval: int = Field(4, ge=1)
    ada_kimg: float = Field(100.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> MaskedGANConfig:
        levels = len(self.g_channels)
        if not self.g_channels or self.resolution % (2**levels):
            raise ValueError(f"resolution {self.resolution} must be divisible by 2**{levels} (g_channels levels)")
        if self.local_px > self.resolution or self.local_px % (2 ** len(self.d_channels)):
            raise ValueError(
                f"local_px {self.local_px} must be <= resolution and divisible by 2**{len(self.d_channels)}"
            )
        if self.resolution % self.rec_pool_px:
            raise ValueError(f"rec_pool_px {self.rec_pool_px} must divide resolution {self.resolution}")
        if self.ada_target is not None:
            raise ValueError("ada_target: the masked family has no ADA pipe (image ⊕ mask stacks)")
        return self


TINY = {"resolution": 128, "batch_size": 8, "g_channels": (16, 32, 64, 128), "d_channels": (16, 32, 64, 128)}
PAPER = {
    "resolution": 128,
    "batch_size": 32,
    "z_dim": 64,
    "g_channels": (64, 128, 256, 512),
    "d_channels": (64, 128, 256, 512),
    "ema_kimg": 10.0,
}
PRESETS: dict[str, dict] = {"tiny": TINY, "paper": PAPER}


def preset(name: str, **overrides: object) -> MaskedGANConfig:
    """The named preset with ``overrides`` applied; unknown names list the valid ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown masked-generator preset {name!r}; valid: {sorted(PRESETS)}")
    return MaskedGANConfig(**{**PRESETS[name], **overrides})
