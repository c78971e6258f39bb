"""The masked generator's losses on the loop's four phases.

Per step the loop gives ``real`` (:class:`training.gan.masked.reals.MaskedBatches`) and latents z.
The fakes: the first ``B − U`` are the real pairs repainted (G sees the pair with its hole
filled), the last ``U = round(B · unpaired_fraction)`` good backgrounds with a moved real mask;
each is composited (:func:`training.gan.masked.composite.composite`), so only the hole and its
feathered rim are G's. The two discriminators see image ⊕ mask (global patch, local crop).

* ``G_main``: softplus(−D(fake)) for both D's  +  ``rec_weight`` · L1 of the hole at z = 0 (no noise;
  on ``rec_pool_px`` means) against the real defect (paired only; alpha-weighted mean)  −  ``div_weight``
  · min(d, ``div_tau``), the bounded diversity term (Yang et al. 2019, DSGAN): d = mean |paint(z1) −
  paint(z2)| over the hole / mean |z1 − z2|  +  ``fm_weight`` · feature matching (pix2pixHD, Wang et
  al. 2018): the paired half's hidden D activations against the real pair's. (Mode seeking's 1 / d,
  Mao et al. 2019, was tried first: at start, when z barely matters, it was ~1,000 against an
  adversarial loss of ~1.4 and drowned every other term.)
* ``G_reg``: nothing (this family has no generator regulariser; the loop calls it at step 0 only).
* ``D_main``: softplus(D(fake)) + softplus(−D(real)), both D's.
* ``D_reg``: R1 = γ/2 · ‖∇ D(real image ⊕ mask)‖² w.r.t. the real image, both D's.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from training.gan.masked.composite import alpha_map, composite
from training.gan.masked.config import MaskedGANConfig
from training.gan.masked.networks import MaskedDiscriminators, MaskedGenerator, crop, defect_crops, paint
from training.gan.stylegan2.loss import _grads_only_for

PHASES = ("G_main", "G_reg", "D_main", "D_reg")


class MaskedGANLoss:
    """Owns the phases (see the module docstring); stateless between steps."""

    def __init__(self, G: MaskedGenerator, D: MaskedDiscriminators, cfg: MaskedGANConfig) -> None:
        self.G, self.D, self.cfg = G, D, cfg

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def unpaired(self, batch: int) -> int:
        return int(round(batch * self.cfg.unpaired_fraction))

    def conditions(self, real: dict[str, torch.Tensor], batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(backgrounds, masks, alphas) of the fakes: the paired ones first, then the unpaired ones."""
        paired = batch - self.unpaired(batch)
        background = torch.cat([real["image"][:paired], real["background"][: batch - paired]])
        mask = torch.cat([real["mask"][:paired], real["background_mask"][: batch - paired]])
        return background, mask, alpha_map(mask, self.cfg.dilate_px, self.cfg.feather_px)

    def paint(self, background, mask, alpha, z, *, noisy: bool = True) -> torch.Tensor:  # noqa: ANN001
        """G's painting; ``noisy``: fresh per-pixel noise where G has noise inputs (off: deterministic)."""
        noise = torch.randn_like(background[:, :1]) if noisy and self.G.noise else None
        with self._autocast(z.device):
            return paint(self.G, background, mask, alpha, z=z, noise=noise).float()

    def run_D(
        self, image: torch.Tensor, mask: torch.Tensor, taps: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast(image.device):
            global_map, local_map = self.D(image, mask, taps)
        return global_map.float(), local_map.float()

    def feature_matching(self, fake_taps: list[torch.Tensor], real: dict[str, torch.Tensor], paired: int):
        """Mean over D's hidden layers of the L1 between the first ``paired`` fakes' activations and their real
        pairs' (D frozen: its real pass takes no gradient)."""
        real_taps: list[torch.Tensor] = []
        with torch.no_grad():
            self.run_D(real["image"][:paired], real["mask"][:paired], real_taps)
        pairs = zip(fake_taps, real_taps, strict=True)
        return sum((f[:paired].float() - r.float()).abs().mean() for f, r in pairs) / len(real_taps)

    def region_weights(self, mask: torch.Tensor, global_map: torch.Tensor, local_map: torch.Tensor):  # noqa: ANN201
        """Per-logit weights: the logits whose cell overlaps the grown defect (elsewhere real and fake are the
        same background, so those logits can only guess: averaging them in drowns the signal)."""
        grown = alpha_map(mask, self.cfg.dilate_px, self.cfg.feather_px).gt(0).float()
        size = self.cfg.local_px
        boxes = defect_crops(mask, size)
        local = crop(grown, boxes, size)
        weights = []
        for region, logits in ((grown, global_map), (local, local_map)):
            cells = F.adaptive_max_pool2d(region, logits.shape[-2:])
            weights.append(cells / cells.sum(dim=[1, 2, 3], keepdim=True).clamp_min(1.0))
        return weights

    def reconstruction(self, painted: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Alpha-weighted L1 of the hole on ``rec_pool_px`` means (1: per pixel), per hole pixel."""
        k = self.cfg.rec_pool_px
        error = F.avg_pool2d((painted - target) * alpha, k).abs().sum() * (k * k)
        return error / alpha.sum().clamp_min(1.0)

    @staticmethod
    def weighted(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Mean over samples of each sample's weighted mean over its logits."""
        return (values * weights).sum(dim=[1, 2, 3]).mean()

    # --- phases ---------------------------------------------------------------------------------

    def accumulate_gradients(
        self, phase: str, real: dict[str, torch.Tensor], gen_z: torch.Tensor, gain: float = 1.0
    ) -> dict[str, float]:
        """Backward the phase's loss × ``gain`` into its network's ``.grad``; returns scalars to log."""
        if phase == "G_main":
            with _grads_only_for(self.G, self.D):
                return self._g_main(real, gen_z, gain)
        if phase == "G_reg":
            return {}
        if phase == "D_main":
            with _grads_only_for(self.D, self.G):
                return self._d_main(real, gen_z, gain)
        if phase == "D_reg":
            with _grads_only_for(self.D, self.G):
                return self._d_reg(real, gain)
        raise ValueError(f"unknown phase {phase!r}; valid: {PHASES}")

    def _g_main(self, real: dict[str, torch.Tensor], z: torch.Tensor, gain: float) -> dict[str, float]:
        batch = len(z)
        background, mask, alpha = self.conditions(real, batch)
        painted = self.paint(background, mask, alpha, z)
        fake = composite(background, painted, alpha)
        paired = batch - self.unpaired(batch)
        taps: list[torch.Tensor] | None = [] if paired and self.cfg.fm_weight > 0 else None
        global_map, local_map = self.run_D(fake, mask, taps)
        w_global, w_local = self.region_weights(mask, global_map, local_map)
        terms = {
            "adv": self.weighted(F.softplus(-global_map), w_global) + self.weighted(F.softplus(-local_map), w_local)
        }
        if taps is not None:
            terms["fm"] = self.feature_matching(taps, real, paired) * self.cfg.fm_weight
        if paired and (self.cfg.rec_weight > 0 or self.cfg.div_weight > 0):
            pb, pm, pa = background[:paired], mask[:paired], alpha[:paired]
            area = pa.sum().clamp_min(1.0)
            if self.cfg.rec_weight > 0:
                at_zero = self.paint(pb, pm, pa, torch.zeros_like(z[:paired]), noisy=False)
                terms["rec"] = self.reconstruction(at_zero, real["image"][:paired], pa) * self.cfg.rec_weight
            if self.cfg.div_weight > 0:
                z2 = torch.randn_like(z[:paired])
                other = self.paint(pb, pm, pa, z2)
                spread = ((painted[:paired] - other).abs() * pa).sum() / area
                distance = (z[:paired] - z2).abs().mean()
                terms["div"] = -torch.clamp(spread / distance, max=self.cfg.div_tau) * self.cfg.div_weight
        total = sum(terms.values())
        total.mul(gain).backward()
        return {f"Loss/G/{name}": float(value.item()) for name, value in terms.items()} | {
            "Loss/G/loss": float(total.item()),
            "Loss/scores/fake": float(global_map.mean().item()),
        }

    def _d_main(self, real: dict[str, torch.Tensor], z: torch.Tensor, gain: float) -> dict[str, float]:
        with torch.no_grad():
            background, mask, alpha = self.conditions(real, len(z))
            fake = composite(background, self.paint(background, mask, alpha, z), alpha)
        fake_global, fake_local = self.run_D(fake, mask)
        real_global, real_local = self.run_D(real["image"], real["mask"])
        wf_global, wf_local = self.region_weights(mask, fake_global, fake_local)
        wr_global, wr_local = self.region_weights(real["mask"], real_global, real_local)
        loss_global = self.weighted(F.softplus(fake_global), wf_global) + self.weighted(
            F.softplus(-real_global), wr_global
        )
        loss_local = self.weighted(F.softplus(fake_local), wf_local) + self.weighted(F.softplus(-real_local), wr_local)
        (loss_global + loss_local).mul(gain).backward()
        return {
            "Loss/scores/fake": fake_global.mean().item(),
            "Loss/scores/real": real_global.mean().item(),
            "Loss/signs/real": real_global.mean(dim=[1, 2, 3]).sign().mean().item(),
            "Loss/D/global": loss_global.item(),
            "Loss/D/local": loss_local.item(),
            "Loss/D/loss": (loss_global + loss_local).item(),
        }

    def _d_reg(self, real: dict[str, torch.Tensor], gain: float) -> dict[str, float]:
        image = real["image"].detach().float().requires_grad_(True)
        global_map, local_map = self.D(image, real["mask"])
        score = global_map.mean(dim=[1, 2, 3]).sum() + local_map.mean(dim=[1, 2, 3]).sum()
        (grads,) = torch.autograd.grad(score, image, create_graph=True)
        penalty = grads.square().sum(dim=[1, 2, 3])
        loss = penalty.mean() * (self.cfg.r1_gamma / 2)
        loss.mul(gain).backward()
        return {"Loss/r1_penalty": penalty.mean().item(), "Loss/D/reg": loss.item()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None
