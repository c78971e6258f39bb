"""SemanticGAN hyper-parameters: the StyleGAN2 fields plus the label branch, D_sem and the distribution loss.

``paper`` is the thesis's setting (§3.2.2: SemanticGAN's generator widths at 128 px, batch 8,
140K iterations = 1,120 kimg, R1 γ 10 on both discriminators, feature matching 2.0, no ADA).
``tiny`` is this team's CPU preset on the image GAN's ``tiny`` widths (64 px); see
``TINY_RATIONALE`` for what was measured.

The three variants the thesis compares are this config with two switches::

    semgan   sem_grad_to_image = False, ld_weight = 0      (the published method)
    ours     sem_grad_to_image = True,  ld_weight = 0      (D_sem's gradient reaches the image branch)
    ours+ld  sem_grad_to_image = True,  ld_weight > 0      (+ the distribution loss, thesis eq. 5)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from training.gan.stylegan2.config import PAPER as STYLEGAN2_PAPER
from training.gan.stylegan2.config import TINY as STYLEGAN2_TINY
from training.gan.stylegan2.config import StyleGAN2Config

PAIR_AUGMENTS = ("auto", "none", "flips", "affine")


class SemanticGANConfig(StyleGAN2Config):
    """Everything that defines a SemanticGAN run (per GPU); the StyleGAN2 fields mean what they mean there."""

    # --- label branch ---------------------------------------------------------------------
    label_channels: int = Field(1, ge=1, description="Label logit maps: 1 = binary defect mask (sigmoid).")
    # --- D_sem: multi-scale PatchGAN on image ⊕ label ----------------------------------------
    sem_channels: int = Field(64, ge=1, description="Channels of D_sem's first conv (doubled per layer).")
    sem_channels_max: int = Field(512, ge=1, description="Upper bound of D_sem's channels.")
    sem_scales: int = Field(3, ge=1, le=5, description="PatchGANs at 1, 1/2, 1/4 ... of the input size.")
    sem_layers: int = Field(3, ge=1, le=6, description="Stride-2 convs per PatchGAN (then two stride-1 convs).")
    sem_r1_gamma: float = Field(10.0, ge=0, description="R1 weight on D_sem (w.r.t. the real image ⊕ label).")
    sem_weight: float = Field(1.0, ge=0, description="Weight of D_sem's hinge term in G's loss.")
    fm_weight: float = Field(2.0, ge=0, description="Feature-matching weight (× 1/scales, summed over layers).")
    sem_grad_to_image: bool = Field(
        True, description="True: D_sem's gradient reaches the image branch (thesis); False: detached (original)."
    )
    pair_augment: Literal["auto", "none", "flips", "affine"] = Field(
        "auto",
        description="Labelled-pair augmentation: auto = flips with sem_grad_to_image, else flips + affine.",
    )
    # --- distribution loss (thesis eq. 5) --------------------------------------------------------
    ld_weight: float = Field(0.0, ge=0, description="λ of the distribution loss (0: off).")
    ld_decay_kimg: float | None = Field(
        None, gt=0, description="λ falls linearly to 0 over this many kimg (None: constant)."
    )
    ld_classes: tuple[int, ...] = Field((1,), description="Label classes the loss covers (binary: 1 = defect).")
    ld_inflation: float = Field(1.0, gt=0, description="Target mean and variance × this (thesis pumps: 2).")
    ld_real_mean: tuple[float, ...] | None = Field(
        None, description="Real per-image defect-fraction mean per ld class (None: measured from the labelled data)."
    )
    ld_real_std: tuple[float, ...] | None = Field(
        None, description="Real per-image defect-fraction std per ld class (None: measured from the labelled data)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SemanticGANConfig:
        if self.sem_grad_to_image and self.pair_augment == "affine":
            raise ValueError(
                "pair_augment 'affine' with sem_grad_to_image: only flips may augment labelled pairs when D_sem's "
                "gradient reaches the image (an affine-warped real pair would teach G the warp)"
            )
        valid = range(1, 2) if self.label_channels == 1 else range(self.label_channels)
        bad = [c for c in self.ld_classes if c not in valid]
        if bad or not self.ld_classes:
            raise ValueError(
                f"ld_classes {list(self.ld_classes)}: valid class ids are {list(valid)} (binary: 1 = defect)"
            )
        for name in ("ld_real_mean", "ld_real_std"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.ld_classes):
                raise ValueError(f"{name} has {len(value)} values for {len(self.ld_classes)} ld_classes")
        return self

    def pair_augment_mode(self) -> str:
        """The labelled-pair augmentation in force ('auto' resolved)."""
        if self.pair_augment != "auto":
            return self.pair_augment
        return "flips" if self.sem_grad_to_image else "affine"

    def ld_target(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(means, stds) the distribution loss pulls toward, inflated; None until the real statistics are known."""
        if self.ld_real_mean is None or self.ld_real_std is None:
            return None
        k = self.ld_inflation
        means = tuple(m * k for m in self.ld_real_mean)
        stds = tuple(s * k**0.5 for s in self.ld_real_std)  # variance × k
        return means, stds


# The thesis's SemanticGAN at 128 px: SemanticGAN's widths (512 up to 64², 256 at 128²: base 32768),
# mapping 8, batch 8, lr 0.002, R1 10 on both Ds, PL 2, mixing 0.9, FM 2.0, no ADA; 140K iterations.
PAPER = {
    **STYLEGAN2_PAPER,
    "mapping_layers": 8,
    "channel_base": 32768,
    "channel_max": 512,
    "batch_size": 8,
    "lr_g": 0.002,
    "lr_d": 0.002,
    "r1_gamma": 10.0,
    "ema_kimg": 10.0,
    "augment": "none",
    "sem_channels": 64,
}
TINY = {
    **STYLEGAN2_TINY,
    "batch_size": 16,
    "r1_gamma": 0.0002 * 64**2 / 16,
    "ema_kimg": 16 * 10 / 32,
    "sem_channels": 16,
    "sem_channels_max": 128,
    "sem_r1_gamma": 1.0,
}
TINY_RATIONALE = """
Why ``tiny`` is the image GAN's tiny widths at batch 16, D_sem 16 -> 128 channels, R1(D_sem) γ 1.

The generator trunk is the image GAN's measured CPU choice (64 px, channel_base 1024, max 128;
``training.gan.stylegan2.config.TINY_RATIONALE``); the label branch adds one 1x1 modulated conv
per resolution. Measured side by side in one run while three other 1-thread trainings shared
the 2 cores (``python benchmarks/gan_throughput.py --rows
semantic-tiny64,semantic-tiny64-dsem64,semantic-tiny64-b32,tiny64 --steps 2 --threads 1``;
min ms per phase, amortised step):

    row                      batch  G_main  D_main  G_reg  D_reg  step ms  img/s
    semantic-tiny64 (this)      16     611     683    387    854     1445   11.1
    ...D_sem 64 -> 512 ch       16    1255    2192    397   2518     3704    4.3
    ...batch 32                 32    1110    1176    704   1308     2543   12.6
    image GAN tiny64            32     776     880    654   1059     1885   17.0

D_sem at SemanticGAN's 64 first-layer channels makes a step 2.6x slower; 16 keeps the family
at 2/3 of the image GAN's images/s. Batch 16 gives 12 % fewer images/s than 32 but twice the
optimiser steps per kimg (not compared for quality yet). R1 on D_sem: SemanticGAN's γ 10 is
for 256 px inputs; the 'auto' rule's γ ∝ res² scales it to 0.6 at 64 px, rounded up to 1.
"""
PRESETS: dict[str, dict] = {"paper": PAPER, "tiny": TINY}


def preset(name: str, **overrides: object) -> SemanticGANConfig:
    """The named preset with ``overrides`` applied; unknown names list the valid ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown SemanticGAN preset {name!r}; valid: {sorted(PRESETS)}")
    return SemanticGANConfig(**{**PRESETS[name], **overrides})
