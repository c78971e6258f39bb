"""Build the SemanticGAN pieces from a ``SemanticGANConfig``: networks, augment pipe, loss, Adam settings."""

from __future__ import annotations

from training.gan.augment import AugmentPipe
from training.gan.semantic.config import SemanticGANConfig
from training.gan.semantic.distribution import DistributionLoss
from training.gan.semantic.loss import SemanticGANLoss
from training.gan.semantic.networks import MultiscalePatchDiscriminator, SemanticDiscriminators, SemanticGenerator
from training.gan.stylegan2.build import adam_settings, build_augment_pipe, build_discriminator, generator_kwargs

__all__ = ["adam_settings", "build_augment_pipe", "build_loss", "build_networks"]


def build_networks(cfg: SemanticGANConfig) -> tuple[SemanticGenerator, SemanticDiscriminators]:
    """Fresh (G, D = D_img + D_sem) for ``cfg`` (seed the global RNG first for reproducible weights)."""
    G = SemanticGenerator(**generator_kwargs(cfg), label_channels=cfg.label_channels)
    D_img = build_discriminator(cfg)  # before D_sem: the order the weights are drawn in
    D_sem = MultiscalePatchDiscriminator(
        cfg.img_channels + cfg.label_channels,
        scales=cfg.sem_scales,
        channels=cfg.sem_channels,
        channels_max=cfg.sem_channels_max,
        layers=cfg.sem_layers,
    )
    return G, SemanticDiscriminators(D_img, D_sem)


def build_distribution_loss(cfg: SemanticGANConfig) -> DistributionLoss | None:
    """The eq. 5 loss (None when λ is 0); its target must be known (``ld_real_mean/std``, set from the data)."""
    if cfg.ld_weight == 0:
        return None
    target = cfg.ld_target()
    if target is None:
        raise ValueError("ld_weight > 0 needs the real defect-fraction statistics (ld_real_mean, ld_real_std)")
    means, stds = target
    return DistributionLoss(
        weight=cfg.ld_weight, classes=cfg.ld_classes, target_mean=means, target_std=stds, decay_kimg=cfg.ld_decay_kimg
    )


def build_loss(
    cfg: SemanticGANConfig, G: SemanticGenerator, D: SemanticDiscriminators, pipe: AugmentPipe | None
) -> SemanticGANLoss:
    """``SemanticGANLoss`` with the config's weights, the variant switches and the distribution loss."""
    return SemanticGANLoss(
        G,
        D,
        pipe,
        r1_gamma=cfg.r1_gamma,
        sem_r1_gamma=cfg.sem_r1_gamma,
        sem_weight=cfg.sem_weight,
        fm_weight=cfg.fm_weight,
        sem_grad_to_image=cfg.sem_grad_to_image,
        pair_augment=cfg.pair_augment_mode(),
        distribution=build_distribution_loss(cfg),
        style_mixing_prob=cfg.style_mixing_prob,
        pl_weight=cfg.pl_weight,
        pl_batch_shrink=cfg.pl_batch_shrink,
        pl_decay=cfg.pl_decay,
        precision=cfg.precision,
    )
