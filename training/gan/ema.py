"""Exponential moving average of the generator's weights (StyleGAN2-ADA 'G_ema').

β = 0.5 ** (batch / ema_nimg): the EMA forgets half of its past every ``ema_kimg`` thousand
images, whatever the batch size. With a ramp-up the half-life is capped at ``rampup`` × images
seen so far, so early in training (when G changes fast) the EMA follows closely instead of
averaging over the random initialisation. Parameters are blended, buffers (w_avg, constant
noise) are copied.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch: int, ema_kimg: float, rampup: float | None, images_seen: int) -> float:
    """The per-step blend factor β (weight of the old EMA value)."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, images_seen * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(
    G_ema: nn.Module, G: nn.Module, batch: int, ema_kimg: float, *, rampup: float | None, images_seen: int
) -> float:
    """G_ema ← β·G_ema + (1 - β)·G for parameters, G_ema ← G for buffers; returns β.

    ``images_seen`` counts the images trained on *before* this update (the ramp-up's clock).
    """
    beta = ema_beta(batch, ema_kimg, rampup, images_seen)
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
    return beta
