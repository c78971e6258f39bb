"""StyleGAN2-ADA hyper-parameters: one typed model and its presets, as data.

``paper`` is StyleGAN2-ADA's 'auto' configuration at 128 px on one GPU, exactly as
``shared/design/gan-reference.md`` §1 lists it (the thesis setting). ``tiny`` is this team's
CPU preset; why it looks the way it does is in ``TINY_RATIONALE`` (measured numbers).

'auto' formulas (functions below): R1 γ = 0.0002·res²/batch, EMA half-life = batch·10/32 kimg.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.gan.stylegan2.networks import channels_per_resolution


def auto_r1_gamma(resolution: int, batch_size: int) -> float:
    """'auto' R1 weight: 0.0002 · res² / batch (0.1024 at 128 px, batch 32)."""
    return 0.0002 * resolution**2 / batch_size


def auto_ema_kimg(batch_size: int) -> float:
    """'auto' G EMA half-life in kimg: batch · 10 / 32 (10 kimg at batch 32)."""
    return batch_size * 10 / 32


class StyleGAN2Config(BaseModel):
    """Everything that defines a StyleGAN2-ADA training run of this family (per GPU)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- architecture -------------------------------------------------------------------
    resolution: int = Field(128, description="Image size in px the GAN synthesises (power of two >= 8).")
    img_channels: int = Field(1, ge=1, description="Image channels: 1 = grayscale (this product), 3 = RGB.")
    z_dim: int = Field(512, ge=1, description="Latent z size.")
    w_dim: int = Field(512, ge=1, description="Intermediate latent w size (also the style affine input).")
    mapping_layers: int = Field(2, ge=1, description="FC layers of the mapping network ('auto': 2, paper: 8).")
    mapping_lr_multiplier: float = Field(0.01, gt=0, description="Learning-rate multiplier of the mapping network.")
    channel_base: int = Field(16384, ge=1, description="Channels at resolution r are min(channel_base / r, max).")
    channel_max: int = Field(512, ge=1, description="Upper bound of the channels at any resolution.")
    conv_clamp: float | None = Field(None, gt=0, description="Clamp conv outputs to ±this (None: off; 256 in fp16).")
    mbstd_group_size: int = Field(4, ge=1, description="Minibatch-stddev group size (used: min(batch, this)).")
    mbstd_num_channels: int = Field(1, ge=1, description="Minibatch-stddev feature maps added.")
    # --- optimisation ---------------------------------------------------------------------
    batch_size: int = Field(32, ge=1, description="Images per minibatch (per GPU).")
    lr_g: float = Field(0.0025, gt=0, description="Adam learning rate of G (before lazy-reg scaling).")
    lr_d: float = Field(0.0025, gt=0, description="Adam learning rate of D (before lazy-reg scaling).")
    betas: tuple[float, float] = Field((0.0, 0.99), description="Adam betas of G and D (before lazy-reg scaling).")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon.")
    ema_kimg: float = Field(10.0, gt=0, description="G EMA half-life in thousands of images.")
    ema_rampup: float | None = Field(0.05, gt=0, description="EMA half-life cap as a fraction of images seen.")
    style_mixing_prob: float = Field(0.9, ge=0, le=1, description="Share of generated images with mixed styles.")
    # --- regularisation -------------------------------------------------------------------
    r1_gamma: float = Field(0.1024, ge=0, description="R1 weight γ (penalty γ/2·‖∇D‖² on reals).")
    d_reg_interval: int = Field(16, ge=1, description="R1 every this many minibatches (lazy regularisation).")
    pl_weight: float = Field(2.0, ge=0, description="Path-length regularisation weight.")
    pl_batch_shrink: int = Field(2, ge=1, description="Path-length batch = batch / this.")
    pl_decay: float = Field(0.01, gt=0, le=1, description="Decay of the path-length running mean per step.")
    g_reg_interval: int = Field(4, ge=1, description="Path-length reg every this many minibatches.")
    # --- ADA ------------------------------------------------------------------------------
    augment: Literal["bgc", "blit", "none"] = Field("bgc", description="Augment pipe ops ('none': no ADA).")
    augment_p: float = Field(0.0, ge=0, description="Initial augment probability p.")
    ada_target: float | None = Field(0.6, description="Target r_t = E[sign D(real)]; None: keep p fixed.")
    ada_interval: int = Field(4, ge=1, description="Minibatches between p updates.")
    ada_kimg: float = Field(500.0, gt=0, description="p can move 0 -> 1 in this many kimg.")
    # --- speed ----------------------------------------------------------------------------
    precision: Literal["fp32", "bf16"] = Field("fp32", description="Autocast of the main phases (regs stay fp32).")

    @model_validator(mode="after")
    def _resolution_is_power_of_two(self) -> StyleGAN2Config:
        channels_per_resolution(self.resolution, self.channel_base, self.channel_max)
        return self

    def channels(self) -> dict[int, int]:
        """{resolution: channels} of both networks."""
        return channels_per_resolution(self.resolution, self.channel_base, self.channel_max)


PAPER = {
    "resolution": 128,
    "z_dim": 512,
    "w_dim": 512,
    "mapping_layers": 2,
    "channel_base": 16384,
    "channel_max": 512,
    "batch_size": 32,
    "mbstd_group_size": 4,
    "lr_g": 0.0025,
    "lr_d": 0.0025,
    "r1_gamma": auto_r1_gamma(128, 32),
    "ema_kimg": auto_ema_kimg(32),
}
TINY = {
    "resolution": 64,
    "z_dim": 128,
    "w_dim": 128,
    "mapping_layers": 2,
    "channel_base": 1024,
    "channel_max": 128,
    "batch_size": 32,
    "mbstd_group_size": 4,
    "lr_g": 0.0025,
    "lr_d": 0.0025,
    "r1_gamma": auto_r1_gamma(64, 32),
    "ema_kimg": auto_ema_kimg(32),
}
TINY_RATIONALE = """
Why ``tiny`` is 64 px, channel_base 1024, channel_max 128, z = w = 128, batch 32 (fp32).

Measured with ``benchmarks/gan_throughput.py --steps 3`` on this 2-core CPU (2 threads, ADA pipe
at p = 0.2, G_main + D_main + G_reg/4 + D_reg/16 with Adam steps; min over 3 repetitions):

    row           px  batch  step ms  img/s  kimg/h  channels 4..res
    paper         128     4    15794   0.25     0.9  512/512/512/512/256/128
    base 2048     128    32     3293    9.7    35.0  128/128/128/64/32/16
    base 1024     128    32     1210   26.5    95.3  128/128/64/32/16/8
    base 2048      64    32     2035   15.7    56.6  128/128/128/64/32
    base 1024      64    32      882   36.3   130.6  128/128/64/32/16     <- tiny
    ...same, NCHW  64    32      999   32.0   115.3  (channels-last is 1.13x faster)
    ...same, bf16  64    32    11544    2.8    10.0  (no native bf16 here: 13x slower)

Only base 1024 at 64 px clears the target of >= 30 img/s (~100 kimg/hour) for one training
step; at 128 px the same widths give 26.5 img/s with 8 channels at full resolution, and base
2048 is 2.3-2.7x slower at either size. 64 px also matches what the CPU classifier preset
looks at; a pool for 128 px consumers is the 64 px samples up-sampled 2x. A 10-minute run on
the 617 defective Magnetic Tile training patches (64 px) trains at 38 img/s (~23 kimg).
bf16 autocast is *not* the default: on a CPU without native bf16 (torch reports AVX2 only; the
table above) emulated bf16 makes the main phases ~13x slower, and where the CPU has it (AVX-512
bf16 + AMX, torch reports AVX512) it gains little: ``--rows tiny64,tiny64-bf16 --steps 3
--slow-steps 3`` on such a 2-core machine gave 997 vs 875 ms per step (1.14x; medians 1.37x),
not worth a precision that depends on the machine. ``precision = "bf16"`` stays available;
R1/PL stay fp32 in any case.

γ and the EMA follow the 'auto' formulas for 64 px / batch 32 (γ = 0.0256, EMA 10 kimg, ramp-up
0.05). ``ada_kimg``: see the preset value's comment.
"""
PRESETS: dict[str, dict] = {"paper": PAPER, "tiny": TINY}


def preset(name: str, **overrides: object) -> StyleGAN2Config:
    """The named preset with ``overrides`` applied; unknown names list the valid ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown StyleGAN2 preset {name!r}; valid: {sorted(PRESETS)}")
    return StyleGAN2Config(**{**PRESETS[name], **overrides})
