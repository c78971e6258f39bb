"""ADA: the differentiable augmentation pipeline and the adaptive-p controller (arXiv 2006.06676).

``AugmentPipe`` applies the paper's 'bgc' ops, each with probability ``p`` (times its weight,
0 disables it), per sample, in this order:

* blit: x-flip, 90° rotations, integer translation (uniform, ≤ 12.5 % of the size);
* geometric: isotropic scaling (2^N(0, 0.2), i.e. log-normal σ = 0.2·ln2), arbitrary rotation
  (uniform ±180°), anisotropic scaling (2^N(0, 0.2) on x, its inverse on y), arbitrary rotation
  again, fractional translation (N(0, 0.125) of the size). The two rotations each fire with
  probability 1 - sqrt(1 - p), so that "some rotation" happens with probability p (paper App. B);
* colour: brightness (+N(0, 0.2)), contrast (×2^N(0, 0.5), about 0 = mid-grey of [-1, 1]);
  luma flip, hue rotation (about the luma axis, ±180°) and saturation (×2^N(0, 1) off the luma
  axis) exist only for 3 colour channels — on a grayscale image they are no-ops *by design*:
  a luma flip would invert the image (a dark scratch becomes a bright one) and hue/saturation
  do not exist.

Geometric and blit ops compose into **one** 3x3 matrix per sample (output -> input pixel
coordinates, origin at the image centre) and the image is resampled **once**. Resampling is a
plain bilinear ``grid_sample`` with reflection padding — simpler than the paper's "pad by
reflection, 2x up-sample with a low-pass filter, sample, low-pass and down-sample", and it
aliases somewhat under down-scaling/rotation; blit ops land on pixel centres and stay exact.
The grid sample is ``training.gan.gridsample.grid_sample`` so that R1 can differentiate twice
through it on any PyTorch 2.x.

Channels: geometric ops move every channel (an image + mask stack stays aligned); colour ops
touch only the first ``color_channels`` channels (default: all). ``p == 0`` returns the input
unchanged (the same tensor).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from training.gan.gridsample import grid_sample

RGB_ONLY_OPS = ("lumaflip", "hue", "saturation")


class AugmentOps(BaseModel):
    """Probability weight of every op (p × weight; 0 disables) and the strength of each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    xflip: float = Field(1.0, ge=0, description="x-flip (mirror) weight.")
    rotate90: float = Field(1.0, ge=0, description="Rotation by a multiple of 90° weight.")
    xint: float = Field(1.0, ge=0, description="Integer translation weight.")
    scale: float = Field(1.0, ge=0, description="Isotropic scaling weight.")
    rotate: float = Field(1.0, ge=0, description="Arbitrary rotation weight (pre and post anisotropic scaling).")
    aniso: float = Field(1.0, ge=0, description="Anisotropic scaling weight.")
    xfrac: float = Field(1.0, ge=0, description="Fractional translation weight.")
    brightness: float = Field(1.0, ge=0, description="Brightness weight.")
    contrast: float = Field(1.0, ge=0, description="Contrast weight.")
    lumaflip: float = Field(1.0, ge=0, description="Luma flip weight (3 colour channels only).")
    hue: float = Field(1.0, ge=0, description="Hue rotation weight (3 colour channels only).")
    saturation: float = Field(1.0, ge=0, description="Saturation weight (3 colour channels only).")
    xint_max: float = Field(0.125, ge=0, description="Integer translation range, fraction of the image size.")
    scale_std: float = Field(0.2, ge=0, description="Isotropic scaling: std of log2(scale).")
    rotate_max: float = Field(1.0, ge=0, description="Rotation range, fraction of 180°.")
    aniso_std: float = Field(0.2, ge=0, description="Anisotropic scaling: std of log2(scale).")
    xfrac_std: float = Field(0.125, ge=0, description="Fractional translation std, fraction of the image size.")
    brightness_std: float = Field(0.2, ge=0, description="Brightness offset std (pixel range [-1, 1]).")
    contrast_std: float = Field(0.5, ge=0, description="Contrast: std of log2(factor).")
    hue_max: float = Field(1.0, ge=0, description="Hue rotation range, fraction of 180°.")
    saturation_std: float = Field(1.0, ge=0, description="Saturation: std of log2(factor).")

    @classmethod
    def only(cls, *names: str) -> AugmentOps:
        """Every op off except ``names`` (weight 1)."""
        weights = {name: 0.0 for name in OP_NAMES}
        weights.update({name: 1.0 for name in names})
        return cls(**weights)


OP_NAMES = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast", *RGB_ONLY_OPS)
AUGMENT_PRESETS = {"bgc": AugmentOps(), "blit": AugmentOps.only("xflip", "rotate90", "xint")}


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=tx.device).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=sx.device).repeat(sx.shape[0], 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=cos.device).repeat(cos.shape[0], 1, 1)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


class AugmentPipe(nn.Module):
    """The ADA pipeline. Set ``p`` (a float; the ``AdaController`` steers it) before calling."""

    def __init__(self, ops: AugmentOps | None = None, color_channels: int | None = None) -> None:
        super().__init__()
        self.ops = ops or AugmentOps()
        self.color_channels = color_channels
        self.p = 0.0

    def _fires(self, n: int, weight: float, device: torch.device, prob: float | None = None) -> torch.Tensor:
        prob = self.p * weight if prob is None else prob
        return torch.rand(n, device=device) < prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0:
            return x
        x = self._geometric(x)
        colors = x.shape[1] if self.color_channels is None else self.color_channels
        if colors > 0:
            x = torch.cat([self._color(x[:, :colors]), x[:, colors:]], dim=1) if colors < x.shape[1] else self._color(x)
        return x

    def geometric_matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """[N, 3, 3] output -> input pixel-coordinate transforms (origin at the centre)."""
        o = self.ops
        g = torch.eye(3, device=device).repeat(n, 1, 1)
        zeros, ones = torch.zeros(n, device=device), torch.ones(n, device=device)
        if o.xflip > 0:
            flip = torch.randint(2, (n,), device=device) * self._fires(n, o.xflip, device)
            g = g @ _scale(1 - 2 * flip.float(), ones)
        if o.rotate90 > 0:
            k = torch.randint(4, (n,), device=device) * self._fires(n, o.rotate90, device)
            cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=device)[k]
            sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=device)[k]
            g = g @ _rotate(cos, sin)
        if o.xint > 0:
            t = (torch.rand(n, 2, device=device) * 2 - 1) * o.xint_max
            t = torch.where(self._fires(n, o.xint, device)[:, None], t, 0.0)
            g = g @ _translate(torch.round(t[:, 0] * width), torch.round(t[:, 1] * height))
        if o.scale > 0:
            s = torch.where(self._fires(n, o.scale, device), 2 ** (torch.randn(n, device=device) * o.scale_std), ones)
            g = g @ _scale(s, s)
        rotate_prob = 1 - math.sqrt(max(1 - self.p * o.rotate, 0.0))
        for stage in ("pre", "post"):
            if stage == "post" and o.aniso > 0:
                s = 2 ** (torch.randn(n, device=device) * o.aniso_std)
                s = torch.where(self._fires(n, o.aniso, device), s, ones)
                g = g @ _scale(s, 1 / s)
            if o.rotate > 0:
                theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * o.rotate_max
                theta = torch.where(self._fires(n, o.rotate, device, rotate_prob), theta, zeros)
                g = g @ _rotate(torch.cos(theta), torch.sin(theta))
        if o.xfrac > 0:
            t = torch.randn(n, 2, device=device) * o.xfrac_std
            t = torch.where(self._fires(n, o.xfrac, device)[:, None], t, 0.0)
            g = g @ _translate(t[:, 0] * width, t[:, 1] * height)
        return g

    def _geometric(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g = self.geometric_matrix(n, h, w, x.device)
        if torch.equal(g, torch.eye(3, device=x.device).expand(n, 3, 3)):
            return x
        # Pixel coordinates p = S u for affine_grid's normalised u (align_corners=False): S = diag(W/2, H/2).
        to_pixels = torch.diag(torch.tensor([w / 2, h / 2, 1.0], device=x.device))
        to_unit = torch.diag(torch.tensor([2 / w, 2 / h, 1.0], device=x.device))
        theta = (to_unit @ g @ to_pixels)[:, :2, :]
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return grid_sample(x, grid, padding_mode="reflection")

    def color_matrix(self, n: int, channels: int, device: torch.device) -> torch.Tensor:
        """[N, C+1, C+1] homogeneous colour transforms for ``channels`` colour channels."""
        o = self.ops
        c = channels
        eye = torch.eye(c + 1, device=device)
        m = eye.repeat(n, 1, 1)
        if o.brightness > 0:
            b = torch.where(self._fires(n, o.brightness, device), torch.randn(n, device=device) * o.brightness_std, 0.0)
            t = eye.repeat(n, 1, 1)
            t[:, :c, c] = b[:, None]
            m = t @ m
        if o.contrast > 0:
            s = torch.where(
                self._fires(n, o.contrast, device), 2 ** (torch.randn(n, device=device) * o.contrast_std), 1.0
            )
            t = eye.repeat(n, 1, 1)
            t[:, :c, :c] *= s[:, None, None]
            m = t @ m
        if c == 3:
            m = self._rgb_ops(m, n, device)
        return m

    def _rgb_ops(self, m: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
        """Luma flip, hue rotation, saturation (Rodrigues rotation about the luma axis v = (1,1,1)/√3)."""
        o = self.ops
        v = torch.ones(3, device=device) / math.sqrt(3)
        vv = torch.outer(v, v)
        eye3 = torch.eye(3, device=device)

        def apply(t3: torch.Tensor) -> torch.Tensor:
            t = torch.eye(4, device=device).repeat(n, 1, 1)
            t[:, :3, :3] = t3
            return t @ m

        if o.lumaflip > 0:
            flip = (torch.randint(2, (n,), device=device) * self._fires(n, o.lumaflip, device)).float()
            m = apply(eye3 - 2 * vv * flip[:, None, None])
        if o.hue > 0:
            theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * o.hue_max
            theta = torch.where(self._fires(n, o.hue, device), theta, 0.0)
            cross = torch.tensor([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]], device=device)
            cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
            m = apply(cos * eye3 + sin * cross + (1 - cos) * vv)
        if o.saturation > 0:
            s = torch.where(
                self._fires(n, o.saturation, device), 2 ** (torch.randn(n, device=device) * o.saturation_std), 1.0
            )
            m = apply(vv + (eye3 - vv) * s[:, None, None])
        return m

    def _color(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        m = self.color_matrix(n, c, x.device).to(x.dtype)
        if c == 1:
            return x * m[:, 0, 0].reshape(n, 1, 1, 1) + m[:, 0, 1].reshape(n, 1, 1, 1)
        y = torch.einsum("nij,njhw->nihw", m[:, :c, :c], x)
        return y + m[:, :c, c].reshape(n, c, 1, 1)


class AdaController:
    """Adaptive p (ADA §3): keep r_t = E[sign D(real)] near ``target``.

    The loop calls ``accumulate(signs_sum, count)`` after every D_main step and ``update()`` every
    ``interval`` minibatches; ``update`` moves p by sign(r_t - target) · (images since the last
    update) / (``speed_kimg`` · 1000), floored at 0 (no upper clamp, as in the paper's code), so p
    can travel 0 -> 1 in ``speed_kimg`` kimg. ``p`` and ``rt`` (last r_t, NaN before the first
    update) are for logging; ``state_dict`` holds everything a resumed run needs.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed_kimg: float = 500.0, p: float = 0.0) -> None:
        self.target, self.interval, self.speed_kimg = target, interval, speed_kimg
        self.p = p
        self.rt = float("nan")
        self._signs_sum = 0.0
        self._count = 0

    def accumulate(self, signs_sum: float, count: int) -> None:
        """Add the sum of sign(D(real)) over ``count`` real images."""
        self._signs_sum += float(signs_sum)
        self._count += int(count)

    def update(self) -> float:
        """Adjust p from the accumulated signs (no-op when nothing was accumulated); returns p."""
        if self._count == 0:
            return self.p
        self.rt = self._signs_sum / self._count
        step = self._count / (self.speed_kimg * 1000)
        direction = (self.rt > self.target) - (self.rt < self.target)
        self.p = max(0.0, self.p + direction * step)
        self._signs_sum, self._count = 0.0, 0
        return self.p

    def state_dict(self) -> dict[str, float]:
        return {"p": self.p, "rt": self.rt, "signs_sum": self._signs_sum, "count": self._count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p, self.rt = float(state["p"]), float(state["rt"])
        self._signs_sum, self._count = float(state["signs_sum"]), int(state["count"])
