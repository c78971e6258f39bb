"""Build the masked family's pieces from a ``MaskedGANConfig``: networks, loss, Adam settings, grid sampler."""

from __future__ import annotations

import numpy as np

from training.gan.masked.composite import alpha_map
from training.gan.masked.config import MaskedGANConfig
from training.gan.masked.loss import MaskedGANLoss
from training.gan.masked.networks import MaskedDiscriminators, MaskedGenerator, MaskedSampler
from training.gan.masked.reals import MaskedBatches


def build_networks(cfg: MaskedGANConfig) -> tuple[MaskedGenerator, MaskedDiscriminators]:
    """Fresh (G, D) for ``cfg`` (seed the global RNG first for reproducible weights)."""
    G = MaskedGenerator(
        resolution=cfg.resolution,
        z_dim=cfg.z_dim,
        channels=tuple(cfg.g_channels),
        img_channels=cfg.img_channels,
        noise=cfg.noise_inputs,
    )
    D = MaskedDiscriminators(
        img_channels=cfg.img_channels, channels=tuple(cfg.d_channels), local_px=cfg.local_px, norm=cfg.d_norm
    )
    return G, D


def build_loss(cfg: MaskedGANConfig, G: MaskedGenerator, D: MaskedDiscriminators, pipe: object) -> MaskedGANLoss:
    return MaskedGANLoss(G, D, cfg)


def adam_settings(cfg: MaskedGANConfig) -> dict[str, dict]:
    """G: plain Adam; D: Adam with the lazy-R1 correction (StyleGAN2 App. C) for ``d_reg_interval``."""
    c = cfg.d_reg_interval / (cfg.d_reg_interval + 1)
    betas_d = (cfg.betas[0] ** c, cfg.betas[1] ** c)
    return {
        "G": {"lr": cfg.lr_g, "betas": tuple(cfg.betas), "eps": 1e-8},
        "D": {"lr": cfg.lr_d * c, "betas": betas_d, "eps": 1e-8},
    }


def grid_sampler(G: MaskedGenerator, batches: MaskedBatches, cfg: MaskedGANConfig, count: int = 64) -> MaskedSampler:
    """A sampler on fixed backgrounds and moved masks (seeded), so every grid of a run shows the same conditions."""
    fixed = batches.next_fixed(count, np.random.default_rng(12345))
    alpha = alpha_map(fixed["background_mask"], cfg.dilate_px, cfg.feather_px)
    device = next(G.parameters()).device
    return MaskedSampler(G, fixed["background"].to(device), fixed["background_mask"].to(device), alpha.to(device))
