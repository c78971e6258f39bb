"""The thesis's distribution loss (eq. 5): pull the batch's per-image defect shares toward the real ones.

Per class c, every generated label's pixel fraction f_i,c = mean over pixels of its probability
(sigmoid/softmax of the logits, so the loss is differentiable). In each batch μ_f, σ_f are the
mean and standard deviation of those fractions; the loss is

    λ · mean_c KL(N(μ_r, σ_r²) ‖ N(μ_f, σ_f²)),
    KL = ln(σ_f/σ_r) + (σ_r² + (μ_r − μ_f)²) / (2σ_f²) − ½

with μ_r, σ_r pre-computed from the real labelled masks (optionally inflated: mean × k,
variance × k, the thesis's k = 2 for pumps), ε added to both σ, and λ constant or falling
linearly to 0 over ``decay_kimg``. KL is 0 for equal statistics and grows with the squared
mean shift in units of σ_f.
"""

from __future__ import annotations

import numpy as np
import torch

from training.gan.semantic.networks import label_probabilities

EPS = 1e-4  # added to both σ: a batch whose fractions are all equal must not divide by zero


def gaussian_kl(mu_r: torch.Tensor, sigma_r: torch.Tensor, mu_f: torch.Tensor, sigma_f: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_r, σ_r²) ‖ N(μ_f, σ_f²)) elementwise (σ already > 0)."""
    return torch.log(sigma_f / sigma_r) + (sigma_r**2 + (mu_r - mu_f) ** 2) / (2 * sigma_f**2) - 0.5


def class_fractions(logits: torch.Tensor, classes: tuple[int, ...]) -> torch.Tensor:
    """Differentiable per-image pixel fractions [N, len(classes)] of the label logits [N, C, H, W].

    One channel: class 1 is the defect (sigmoid), class 0 the rest; several: softmax channel c.
    """
    probs = label_probabilities(logits.float())
    if logits.shape[1] == 1:
        defect = probs[:, 0]
        maps = [defect if c == 1 else 1 - defect for c in classes]
    else:
        maps = [probs[:, c] for c in classes]
    return torch.stack([m.mean(dim=(1, 2)) for m in maps], dim=1)


def real_statistics(fractions: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(means, stds) per column of real per-image fractions [N, K] (population std, as the batch's)."""
    fractions = np.asarray(fractions, dtype=np.float64).reshape(len(fractions), -1)
    if len(fractions) < 2:
        raise ValueError(
            f"the distribution loss needs >= 2 labelled real masks for its statistics, got {len(fractions)}"
        )
    return tuple(float(m) for m in fractions.mean(0)), tuple(float(s) for s in fractions.std(0))


class DistributionLoss:
    """λ(t) · mean over classes of KL(real ‖ batch) (see the module docstring)."""

    def __init__(
        self,
        *,
        weight: float,
        classes: tuple[int, ...],
        target_mean: tuple[float, ...],
        target_std: tuple[float, ...],
        decay_kimg: float | None = None,
    ) -> None:
        if len(target_mean) != len(classes) or len(target_std) != len(classes):
            raise ValueError("the distribution loss needs one target mean and std per class")
        self.weight, self.classes, self.decay_kimg = weight, tuple(classes), decay_kimg
        self.mu_r = torch.tensor(target_mean, dtype=torch.float32)
        self.sigma_r = torch.tensor(target_std, dtype=torch.float32) + EPS

    def weight_at(self, kimg: float) -> float:
        """λ after ``kimg`` thousand images: constant, or falling linearly to 0 over ``decay_kimg``."""
        if self.decay_kimg is None:
            return self.weight
        return self.weight * max(0.0, 1.0 - kimg / self.decay_kimg)

    def divergence(self, logits: torch.Tensor) -> torch.Tensor:
        """Mean over classes of KL(N(μ_r, σ_r²) ‖ N(μ_f, σ_f²)) for this batch (no λ)."""
        fractions = class_fractions(logits, self.classes)
        mu_f = fractions.mean(dim=0)
        sigma_f = fractions.std(dim=0, unbiased=False) + EPS
        mu_r, sigma_r = self.mu_r.to(fractions.device), self.sigma_r.to(fractions.device)
        return gaussian_kl(mu_r, sigma_r, mu_f, sigma_f).mean()

    def __call__(self, logits: torch.Tensor, kimg: float) -> tuple[torch.Tensor, float]:
        """(λ(kimg) · divergence, λ(kimg)); a zero λ costs no forward."""
        weight = self.weight_at(kimg)
        if weight == 0:
            return logits.new_zeros([]), 0.0
        return self.divergence(logits) * weight, weight
