"""The mask-guided generator (a U-Net that paints a hole, z-modulated) and its global + local PatchGANs.

Written for this product from the ideas of image inpainting GANs (a global and a local
discriminator: Iizuka et al. 2017) and defect synthesis that keeps real backgrounds (DFMGAN,
Duan et al. 2023; Defect-GAN, Zhang et al. 2021), not from their code.

* ``MaskedGenerator(background, mask, hole, z) -> painted``: the input is the background with its
  hole filled (``composite.fill_hole``), the defect mask and the hole ({0, 1}); a U-Net
  (stride-2 convs down, bilinear up + skip connections) whose decoder stages are FiLM-modulated
  by z, so one mask gives many defects. Output: tanh, one gray channel, the *whole* patch — only
  the alpha-weighted hole of it reaches the composite.
* ``PatchDiscriminator``: stride-2 4x4 convs with LeakyReLU 0.2, then a 3x3 conv to a logit map,
  on image ⊕ mask (so it judges whether the defect fits its mask and its surroundings).
* ``MaskedDiscriminators``: the global one on the whole patch and the local one on a
  ``local_px`` crop centred on the defect (``defect_crops``); one module for the loop's D optimiser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.gan.masked.composite import composite, fill_hole, hole_of


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=2, padding=1), _act(), nn.Conv2d(cout, cout, 3, padding=1), _act()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Up(nn.Module):
    """×2 up, conv, concat the skip, conv; then FiLM from z (scale around 1, shift)."""

    def __init__(self, cin: int, cskip: int, cout: int, z_dim: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, cout, 3, padding=1)
        self.merge = nn.Conv2d(cout + cskip, cout, 3, padding=1)
        self.film = nn.Linear(z_dim, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.act = _act()

    def forward(self, x: torch.Tensor, skip: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.act(self.reduce(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)))
        x = self.merge(torch.cat([x, skip], dim=1))
        scale, shift = self.film(z).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return self.act(x * (1 + scale) + shift)


class MaskedGenerator(nn.Module):
    """(filled background, mask, hole, z) -> painted patch in [-1, 1] (see the module docstring)."""

    def __init__(self, *, resolution: int, z_dim: int, channels: tuple[int, ...], img_channels: int = 1) -> None:
        super().__init__()
        self.resolution, self.z_dim, self.img_channels = resolution, z_dim, img_channels
        widths = [channels[0], *channels]
        self.stem = nn.Sequential(nn.Conv2d(img_channels + 2, widths[0], 3, padding=1), _act())
        self.down = nn.ModuleList(_Down(widths[i], widths[i + 1]) for i in range(len(channels)))
        self.z_in = nn.Linear(z_dim, widths[-1])
        self.up = nn.ModuleList(_Up(widths[i + 1], widths[i], widths[i], z_dim) for i in reversed(range(len(channels))))
        self.to_image = nn.Conv2d(widths[0], img_channels, 1)

    def forward(
        self, background: torch.Tensor, mask: torch.Tensor, hole: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        x = self.stem(torch.cat([background, mask * 2 - 1, hole * 2 - 1], dim=1))
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = x + self.z_in(z).unsqueeze(-1).unsqueeze(-1)
        skips.pop()
        for block in self.up:
            x = block(x, skips.pop(), z)
        return torch.tanh(self.to_image(x))


class PatchDiscriminator(nn.Module):
    """image ⊕ mask -> logit map (one logit per receptive field)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], norm: str = "none") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for index, cout in enumerate(channels):
            layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1))
            if norm == "instance" and index > 0:
                layers.append(nn.InstanceNorm2d(cout, affine=True))
            layers.append(_act())
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def defect_crops(masks: torch.Tensor, size: int) -> list[tuple[int, int]]:
    """Top-left (y, x) of a ``size`` crop centred on each mask's defect bounding box, inside the patch."""
    n, _, h, w = masks.shape
    boxes = []
    for i in range(n):
        rows = torch.nonzero(masks[i, 0].amax(dim=1) > 0.5).flatten()
        cols = torch.nonzero(masks[i, 0].amax(dim=0) > 0.5).flatten()
        cy = int((rows[0] + rows[-1]) // 2) if len(rows) else h // 2
        cx = int((cols[0] + cols[-1]) // 2) if len(cols) else w // 2
        boxes.append((min(max(cy - size // 2, 0), h - size), min(max(cx - size // 2, 0), w - size)))
    return boxes


def crop(x: torch.Tensor, boxes: list[tuple[int, int]], size: int) -> torch.Tensor:
    return torch.stack([x[i, :, y : y + size, x0 : x0 + size] for i, (y, x0) in enumerate(boxes)])


class MaskedDiscriminators(nn.Module):
    """Global + local PatchGAN; ``forward`` returns both logit maps."""

    def __init__(self, *, img_channels: int, channels: tuple[int, ...], local_px: int, norm: str = "none") -> None:
        super().__init__()
        self.local_px = local_px
        self.global_d = PatchDiscriminator(img_channels + 1, channels, norm)
        self.local_d = PatchDiscriminator(img_channels + 1, channels[:-1] or channels, norm)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = torch.cat([image, mask * 2 - 1], dim=1)
        boxes = defect_crops(mask, self.local_px)
        return self.global_d(stacked), self.local_d(crop(stacked, boxes, self.local_px))


class MaskedSampler(nn.Module):
    """For the loop's grids: z -> (composite, mask) on a fixed set of backgrounds and moved masks."""

    def __init__(self, G: MaskedGenerator, background: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor) -> None:
        super().__init__()
        self.G = G
        self.register_buffer("background", background, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("alpha", alpha, persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        index = torch.arange(len(z), device=z.device) % len(self.background)
        background, mask, alpha = self.background[index], self.mask[index], self.alpha[index]
        painted = paint(self.G, background, mask, alpha, z=z)
        return torch.cat([composite(background, painted, alpha), mask * 2 - 1], dim=1)


def paint(G: MaskedGenerator, background: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor, *, z: torch.Tensor):
    """G's painting of the hole of ``background`` (filled first, as in training)."""
    hole = hole_of(alpha)
    return G(fill_hole(background, hole), mask, hole, z)
