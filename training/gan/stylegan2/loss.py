"""StyleGAN2-ADA losses and regularisers, one phase at a time (StyleGAN2 §4-5, ADA §2-3).

The training loop calls ``accumulate_gradients(phase, real_img, gen_z, gain)`` with one of
``PHASES`` and then steps the optimiser of that phase's network; it never needs to know the
architecture. Per minibatch the 'auto' schedule is::

    G_main (gain 1)  -> opt_G.step()
    G_reg  (gain 4)  -> opt_G.step()      every g_reg_interval (4) minibatches
    D_main (gain 1)  -> opt_D.step()
    D_reg  (gain 16) -> opt_D.step()      every d_reg_interval (16) minibatches

(each phase after ``zero_grad``; the gain of a lazy phase is its interval, see
``lazy_regularization``). Phases:

* ``G_main``: non-saturating loss softplus(-D(aug(G(z)))), style mixing 0.9.
* ``G_reg``: path-length penalty on ``len(gen_z) // pl_batch_shrink`` samples:
  a = ‖J_wᵀ y‖₂ with y ~ N(0, I)/sqrt(H·W), averaged over the ws; penalty (a - ā)² · pl_weight,
  ā an exponential running mean (decay ``pl_decay`` per step; checkpoint it: ``state_dict``).
* ``D_main``: softplus(D(aug(G(z)))) + softplus(-D(aug(x))). Returns ``Loss/signs/real`` for ADA.
* ``D_reg``: R1 = γ/2 · ‖∇ₓ D(aug(x))‖² w.r.t. the *un-augmented* real x, so the gradient runs
  back through the augment pipe (the double-differentiable grid sample makes this possible).

Each phase switches ``requires_grad`` on for its own network's parameters only (and restores
the flags afterwards): G phases leave D without gradients, D phases leave G without them, and a
regulariser can never miss its network's weights (the SemanticGAN bug: an R1 whose gradient
reached only the input because D's parameters had been frozen by an earlier phase).

Precision: with ``precision='bf16'`` the *main* phases run G and D under CPU/CUDA bf16 autocast;
the augment pipe, the losses and both regularisers (R1, PL) stay fp32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.gan.augment import AugmentPipe

PHASES = ("G_main", "G_reg", "D_main", "D_reg")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class LazyRegularization:
    """Optimiser settings and loss gain for a regulariser applied every ``interval`` minibatches.

    StyleGAN2 App. C: with c = I/(I+1), Adam gets lr·c and betas^c (so the momentum horizon in
    *minibatches* stays as it was), and the regulariser's loss is multiplied by I.
    """

    lr: float
    betas: tuple[float, float]
    gain: float
    interval: int


def lazy_regularization(lr: float, betas: tuple[float, float], interval: int | None) -> LazyRegularization:
    """``LazyRegularization`` for ``interval`` (None or 0: regularise every step, nothing changes)."""
    if not interval:
        return LazyRegularization(lr, tuple(betas), 1.0, 1)
    c = interval / (interval + 1)
    return LazyRegularization(lr * c, (betas[0] ** c, betas[1] ** c), float(interval), interval)


@contextlib.contextmanager
def _grads_only_for(train: nn.Module, frozen: nn.Module) -> Iterator[None]:
    """``requires_grad`` True on ``train``'s parameters, False on ``frozen``'s; flags restored on exit."""
    saved = [(p, p.requires_grad) for p in (*train.parameters(), *frozen.parameters())]
    try:
        frozen.requires_grad_(False)
        train.requires_grad_(True)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


class StyleGAN2Loss:
    """Owns the four phases and the path-length running mean (see the module docstring)."""

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        augment_pipe: AugmentPipe | None = None,
        r1_gamma: float = 10.0,
        *,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 2.0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        precision: str = "fp32",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {PRECISIONS}")
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma, self.style_mixing_prob = r1_gamma, style_mixing_prob
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.precision = precision
        self.pl_mean = torch.zeros([])

    def _autocast(self, device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
        if self.precision == "bf16" and enabled:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run_G(
        self, z: torch.Tensor, update_w_avg: bool = False, fast: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(fp32 image, ws): style-mixed ws through the synthesis network."""
        with self._autocast(z.device, fast):
            ws = self.G.map(z, mixing_prob=self.style_mixing_prob, update_w_avg=update_w_avg)
            img = self.G.synthesis(ws)
        return img.float(), ws

    def run_D(self, img: torch.Tensor, fast: bool = True) -> torch.Tensor:
        """fp32 logits [N] of the augmented image (augmentation always in fp32)."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        with self._autocast(img.device, fast):
            logits = self.D(img)
        return logits.float().flatten()

    def accumulate_gradients(
        self, phase: str, real_img: torch.Tensor, gen_z: torch.Tensor, gain: float = 1.0
    ) -> dict[str, float]:
        """Backward the phase's loss × ``gain`` into its network's ``.grad``; returns scalars to log."""
        if phase == "G_main":
            with _grads_only_for(self.G, self.D):
                return self._g_main(gen_z, gain)
        if phase == "G_reg":
            with _grads_only_for(self.G, self.D):
                return self._g_reg(gen_z, gain)
        if phase == "D_main":
            with _grads_only_for(self.D, self.G):
                return self._d_main(real_img, gen_z, gain)
        if phase == "D_reg":
            with _grads_only_for(self.D, self.G):
                return self._d_reg(real_img, gain)
        raise ValueError(f"unknown phase {phase!r}; valid: {PHASES}")

    def _g_main(self, gen_z: torch.Tensor, gain: float) -> dict[str, float]:
        img, _ = self.run_G(gen_z, update_w_avg=True)
        logits = self.run_D(img)
        loss = F.softplus(-logits)
        loss.mean().mul(gain).backward()
        return {
            "Loss/scores/fake": logits.mean().item(),
            "Loss/signs/fake": logits.sign().mean().item(),
            "Loss/G/loss": loss.mean().item(),
        }

    def _g_reg(self, gen_z: torch.Tensor, gain: float) -> dict[str, float]:
        batch = max(1, gen_z.shape[0] // self.pl_batch_shrink)
        img, ws = self.run_G(gen_z[:batch], fast=False)
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
        self.pl_mean = self.pl_mean.to(lengths.device).lerp(lengths.mean().detach(), self.pl_decay)
        penalty = (lengths - self.pl_mean).square()
        loss = penalty * self.pl_weight
        loss.mean().mul(gain).backward()
        return {
            "Loss/pl_penalty": penalty.mean().item(),
            "Loss/pl_mean": self.pl_mean.item(),
            "Loss/G/reg": loss.mean().item(),
        }

    def _d_main(self, real_img: torch.Tensor, gen_z: torch.Tensor, gain: float) -> dict[str, float]:
        with torch.no_grad():
            fake_img, _ = self.run_G(gen_z, update_w_avg=True)
        fake_logits = self.run_D(fake_img)
        real_logits = self.run_D(real_img.detach())
        loss_fake, loss_real = F.softplus(fake_logits), F.softplus(-real_logits)
        (loss_fake.mean() + loss_real.mean()).mul(gain).backward()
        return {
            "Loss/scores/fake": fake_logits.mean().item(),
            "Loss/signs/fake": fake_logits.sign().mean().item(),
            "Loss/scores/real": real_logits.mean().item(),
            "Loss/signs/real": real_logits.sign().mean().item(),
            "Loss/D/loss": (loss_fake + loss_real).mean().item(),
        }

    def _d_reg(self, real_img: torch.Tensor, gain: float) -> dict[str, float]:
        real = real_img.detach().float().requires_grad_(True)
        logits = self.run_D(real, fast=False)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grads.square().sum(dim=[1, 2, 3])
        loss = penalty * (self.r1_gamma / 2)
        loss.mean().mul(gain).backward()
        return {"Loss/r1_penalty": penalty.mean().item(), "Loss/D/reg": loss.mean().item()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a resumed run needs besides the networks and optimisers: the path-length mean."""
        return {"pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pl_mean = state["pl_mean"].detach().clone()
