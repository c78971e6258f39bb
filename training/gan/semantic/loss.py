"""SemanticGAN losses, one phase at a time, on the loop's four phases (thesis eq. 2-4 + feature matching).

Per minibatch the loop gives ``real`` = {"image": unlabelled and labelled real images for D_img,
"pair_image", "pair_mask": labelled real pairs for D_sem} (see ``PairedBatches``) and latents z:

* ``G_main``: L_G = softplus(-D_img(aug(x̃)))                        (non-saturating, eq. 2)
  + sem_weight · (-mean D_sem(x̃' ⊕ ỹ))  (hinge, mean over scales)
  + fm_weight · 1/scales · Σ_scales Σ_inner layers L1(D_sem features of fake, of a real pair)
  + λ(t) · L_d                                                        (distribution loss, eq. 5)
  where x̃' = x̃ with ``sem_grad_to_image`` (the thesis) and x̃.detach() without (the original:
  D_sem reaches the trunk only through the label branch, never ToImage).
* ``G_reg``: path-length penalty on the image output (StyleGAN2, as SemanticGAN).
* ``D_main``: D_img: softplus(D(aug(x̃))) + softplus(-D(aug(x))) (eq. 3); D_sem: hinge
  ½·[relu(1 + D(x̃ ⊕ ỹ)) + relu(1 - D(x ⊕ y))], mean over scales (eq. 4).
* ``D_reg``: R1 on D_img (γ, w.r.t. the un-augmented real image, through the ADA pipe) *and* on
  D_sem (``sem_r1_gamma``, w.r.t. the real image ⊕ label, on the sum over scales of the mean
  final map). Both discriminators are one module whose parameters all have ``requires_grad``
  in this phase, so R1 really updates D_img (the published code's bug: it did not).

Labels reach D_sem in one range: real masks {0,1} -> {-1,+1}, fake logits -> 2·sigmoid - 1
(``training.gan.semantic.networks``). Labelled real pairs are augmented with flips only when
D_sem's gradient reaches the image, flips + affine otherwise (``pairs.py``); ADA acts on D_img only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.gan.augment import AugmentPipe
from training.gan.semantic.distribution import DistributionLoss
from training.gan.semantic.networks import SemanticDiscriminators, SemanticGenerator, label_to_range, mask_to_range
from training.gan.semantic.pairs import augment_pairs
from training.gan.stylegan2.loss import StyleGAN2Loss, _grads_only_for

PHASES = ("G_main", "G_reg", "D_main", "D_reg")


def _final_maps(outputs: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [layers[-1] for layers in outputs]


class SemanticGANLoss(StyleGAN2Loss):
    """The four phases; path-length mean, precision and mixing as in :class:`StyleGAN2Loss`, plus the λ clock."""

    def __init__(
        self,
        G: SemanticGenerator,
        D: SemanticDiscriminators,
        augment_pipe: AugmentPipe | None = None,
        *,
        r1_gamma: float,
        sem_r1_gamma: float,
        sem_weight: float = 1.0,
        fm_weight: float = 2.0,
        sem_grad_to_image: bool = True,
        pair_augment: str = "flips",
        distribution: DistributionLoss | None = None,
        **stylegan2: object,
    ) -> None:
        super().__init__(G, D, augment_pipe, r1_gamma, **stylegan2)
        self.sem_r1_gamma = sem_r1_gamma
        self.sem_weight, self.fm_weight = sem_weight, fm_weight
        self.sem_grad_to_image, self.pair_augment = sem_grad_to_image, pair_augment
        self.distribution = distribution
        self.kimg = 0.0

    # --- plumbing -------------------------------------------------------------------------------

    def set_progress(self, images: int) -> None:
        """The loop tells the loss how many real images were shown (the λ schedule's clock)."""
        self.kimg = images / 1000

    def run_pair(self, z: torch.Tensor, update_w_avg: bool = False, fast: bool = True):
        """(fp32 image, fp32 label logits, ws): style-mixed ws through the semantic synthesis."""
        with self._autocast(z.device, fast):
            ws = self.G.map(z, mixing_prob=self.style_mixing_prob, update_w_avg=update_w_avg)
            img, logits = self.G.synthesis(ws)
        return img.float(), logits.float(), ws

    def run_G(self, z: torch.Tensor, update_w_avg: bool = False, fast: bool = True):
        """(fp32 image, ws): what the inherited path-length phase regularises (the image output)."""
        img, _, ws = self.run_pair(z, update_w_avg, fast)
        return img, ws

    def run_D_img(self, img: torch.Tensor, fast: bool = True) -> torch.Tensor:
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        with self._autocast(img.device, fast):
            logits = self.D.img(img)
        return logits.float().flatten()

    def run_D_sem(self, img: torch.Tensor, label: torch.Tensor, fast: bool = True) -> list[list[torch.Tensor]]:
        """D_sem's layer outputs for image ⊕ label (label already in [-1, 1])."""
        with self._autocast(img.device, fast):
            outputs = self.D.sem(torch.cat([img, label.to(img.dtype)], dim=1))
        return [[t.float() for t in layers] for layers in outputs]

    def real_pairs(self, real: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled real pairs as D_sem sees them: augmented (``pair_augment``), label in {-1, +1}."""
        image, mask = augment_pairs(real["pair_image"], real["pair_mask"].float(), self.pair_augment)
        return image, mask_to_range(mask)

    # --- phases ---------------------------------------------------------------------------------

    def accumulate_gradients(
        self, phase: str, real: dict[str, torch.Tensor], gen_z: torch.Tensor, gain: float = 1.0
    ) -> dict[str, float]:
        """Backward the phase's loss × ``gain`` into its network's ``.grad``; returns scalars to log."""
        if phase == "G_main":
            with _grads_only_for(self.G, self.D):
                terms = self.generator_terms(real, gen_z)
                total = sum(terms.values())
                total.mul(gain).backward()
                return {f"Loss/G/{name}": float(value.item()) for name, value in terms.items()} | {
                    "Loss/G/loss": float(total.item()),
                    "Loss/ld_weight": self.distribution.weight_at(self.kimg) if self.distribution else 0.0,
                }
        if phase == "G_reg":
            with _grads_only_for(self.G, self.D):
                return self._g_reg(gen_z, gain)
        if phase == "D_main":
            with _grads_only_for(self.D, self.G):
                return self._d_main(real, gen_z, gain)
        if phase == "D_reg":
            with _grads_only_for(self.D, self.G):
                return self._d_reg(real, gain)
        raise ValueError(f"unknown phase {phase!r}; valid: {PHASES}")

    def generator_terms(self, real: dict[str, torch.Tensor], gen_z: torch.Tensor) -> dict[str, torch.Tensor]:
        """G's loss terms (not yet backwarded): img (eq. 2, D_img), sem (hinge), fm, ld."""
        img, logits, _ = self.run_pair(gen_z, update_w_avg=True)
        terms = {"img": F.softplus(-self.run_D_img(img)).mean()}
        sem_img = img if self.sem_grad_to_image else img.detach()
        fake_out = self.run_D_sem(sem_img, label_to_range(logits))
        terms["sem"] = -torch.stack([m.mean() for m in _final_maps(fake_out)]).mean() * self.sem_weight
        if self.fm_weight > 0:
            with torch.no_grad():
                real_out = self.run_D_sem(*self.real_pairs(real))
            fm = sum(
                F.l1_loss(fake, true.detach())
                for fake_layers, real_layers in zip(fake_out, real_out, strict=True)
                for fake, true in zip(fake_layers[:-1], real_layers[:-1], strict=True)
            )
            terms["fm"] = fm * (self.fm_weight / len(fake_out))
        if self.distribution is not None:
            terms["ld"], _ = self.distribution(logits, self.kimg)
        return terms

    def _d_main(self, real: dict[str, torch.Tensor], gen_z: torch.Tensor, gain: float) -> dict[str, float]:
        with torch.no_grad():
            fake_img, fake_logits, _ = self.run_pair(gen_z, update_w_avg=True)
        fake_scores = self.run_D_img(fake_img)
        real_scores = self.run_D_img(real["image"].detach())
        loss_img = F.softplus(fake_scores).mean() + F.softplus(-real_scores).mean()
        fake_sem = _final_maps(self.run_D_sem(fake_img, label_to_range(fake_logits)))
        real_sem = _final_maps(self.run_D_sem(*self.real_pairs(real)))
        hinge_fake = torch.stack([F.relu(1 + m).mean() for m in fake_sem]).mean()
        hinge_real = torch.stack([F.relu(1 - m).mean() for m in real_sem]).mean()
        loss_sem = (hinge_fake + hinge_real) / 2
        (loss_img + loss_sem).mul(gain).backward()
        return {
            "Loss/scores/fake": fake_scores.mean().item(),
            "Loss/scores/real": real_scores.mean().item(),
            "Loss/signs/real": real_scores.sign().mean().item(),
            "Loss/D/loss": loss_img.item(),
            "Loss/Dsem/loss": loss_sem.item(),
            "Loss/Dsem/real": torch.stack([m.mean() for m in real_sem]).mean().item(),
            "Loss/Dsem/fake": torch.stack([m.mean() for m in fake_sem]).mean().item(),
        }

    def _d_reg(self, real: dict[str, torch.Tensor], gain: float) -> dict[str, float]:
        image = real["image"].detach().float().requires_grad_(True)
        (grads,) = torch.autograd.grad(self.run_D_img(image, fast=False).sum(), image, create_graph=True)
        penalty_img = grads.square().sum(dim=[1, 2, 3])
        pair = torch.cat(self.real_pairs(real), dim=1).detach().requires_grad_(True)
        channels = real["pair_image"].shape[1]
        outputs = self.run_D_sem(pair[:, :channels], pair[:, channels:], fast=False)
        score = sum(m.mean() for m in _final_maps(outputs))
        (grads_sem,) = torch.autograd.grad(score, pair, create_graph=True)
        penalty_sem = grads_sem.square().sum(dim=[1, 2, 3])
        loss = penalty_img.mean() * (self.r1_gamma / 2) + penalty_sem.mean() * (self.sem_r1_gamma / 2)
        loss.mul(gain).backward()
        return {
            "Loss/r1_penalty": penalty_img.mean().item(),
            "Loss/r1_penalty_sem": penalty_sem.mean().item(),
            "Loss/D/reg": loss.item(),
        }
