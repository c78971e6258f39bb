"""Build the StyleGAN2-ADA pieces from a ``StyleGAN2Config``: networks, augment pipe, loss, Adam settings."""

from __future__ import annotations

from training.gan.augment import AUGMENT_PRESETS, AugmentPipe
from training.gan.stylegan2.config import StyleGAN2Config
from training.gan.stylegan2.loss import StyleGAN2Loss, lazy_regularization
from training.gan.stylegan2.networks import Discriminator, Generator


def generator_kwargs(cfg: StyleGAN2Config) -> dict:
    """``Generator`` arguments of ``cfg`` (SemanticGAN's generator takes the same plus its label channels)."""
    return {
        "z_dim": cfg.z_dim,
        "w_dim": cfg.w_dim,
        "img_resolution": cfg.resolution,
        "img_channels": cfg.img_channels,
        "mapping_layers": cfg.mapping_layers,
        "channel_base": cfg.channel_base,
        "channel_max": cfg.channel_max,
        "conv_clamp": cfg.conv_clamp,
        "mapping_lr_multiplier": cfg.mapping_lr_multiplier,
    }


def build_discriminator(cfg: StyleGAN2Config) -> Discriminator:
    """The residual image discriminator of ``cfg`` (SemanticGAN's D_img)."""
    return Discriminator(
        img_resolution=cfg.resolution,
        img_channels=cfg.img_channels,
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        mbstd_group_size=cfg.mbstd_group_size,
        mbstd_num_channels=cfg.mbstd_num_channels,
        conv_clamp=cfg.conv_clamp,
    )


def build_networks(cfg: StyleGAN2Config) -> tuple[Generator, Discriminator]:
    """Fresh (G, D) for ``cfg`` (seed the global RNG first for reproducible weights)."""
    return Generator(**generator_kwargs(cfg)), build_discriminator(cfg)


def build_augment_pipe(cfg: StyleGAN2Config, color_channels: int | None = None) -> AugmentPipe | None:
    """The ADA pipe (p = ``cfg.augment_p``) or None for ``augment='none'``."""
    if cfg.augment == "none":
        return None
    pipe = AugmentPipe(AUGMENT_PRESETS[cfg.augment], color_channels=color_channels)
    pipe.p = cfg.augment_p
    return pipe


def build_loss(cfg: StyleGAN2Config, G: Generator, D: Discriminator, pipe: AugmentPipe | None) -> StyleGAN2Loss:
    """``StyleGAN2Loss`` with the config's regularisation weights and precision."""
    return StyleGAN2Loss(
        G,
        D,
        pipe,
        r1_gamma=cfg.r1_gamma,
        style_mixing_prob=cfg.style_mixing_prob,
        pl_weight=cfg.pl_weight,
        pl_batch_shrink=cfg.pl_batch_shrink,
        pl_decay=cfg.pl_decay,
        precision=cfg.precision,
    )


def adam_settings(cfg: StyleGAN2Config) -> dict[str, dict]:
    """Adam kwargs for 'G' and 'D' with the lazy-regularisation lr/betas scaling applied."""
    g = lazy_regularization(cfg.lr_g, cfg.betas, cfg.g_reg_interval)
    d = lazy_regularization(cfg.lr_d, cfg.betas, cfg.d_reg_interval)
    return {
        "G": {"lr": g.lr, "betas": g.betas, "eps": cfg.eps},
        "D": {"lr": d.lr, "betas": d.betas, "eps": cfg.eps},
    }
