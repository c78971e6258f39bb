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


def noise_at(noise: torch.Tensor, size: int) -> torch.Tensor:
    """The full-resolution unit noise map averaged down to ``size`` px, rescaled to unit variance again."""
    factor = noise.shape[-1] // size
    return noise if factor == 1 else F.avg_pool2d(noise, factor) * factor


class _Up(nn.Module):
    """×2 up, conv, concat the skip, conv; + per-pixel noise (optional); then FiLM from z (scale around 1, shift).

    The noise (one map, per-channel learned strength starting at 0, as StyleGAN's noise inputs) gives the
    painting local texture that a z-only modulation cannot: FiLM changes whole channels at once."""

    def __init__(self, cin: int, cskip: int, cout: int, z_dim: int, *, noise: bool = False) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, cout, 3, padding=1)
        self.merge = nn.Conv2d(cout + cskip, cout, 3, padding=1)
        self.film = nn.Linear(z_dim, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.noise_strength = nn.Parameter(torch.zeros(1, cout, 1, 1)) if noise else None
        self.act = _act()

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, z: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.act(self.reduce(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)))
        x = self.merge(torch.cat([x, skip], dim=1))
        if self.noise_strength is not None and noise is not None:
            x = x + self.noise_strength * noise_at(noise, x.shape[-1]).to(x.dtype)
        scale, shift = self.film(z).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return self.act(x * (1 + scale) + shift)


class MaskedGenerator(nn.Module):
    """(filled background, mask, hole, z) -> painted patch in [-1, 1] (see the module docstring)."""

    def __init__(
        self, *, resolution: int, z_dim: int, channels: tuple[int, ...], img_channels: int = 1, noise: bool = False
    ) -> None:
        super().__init__()
        self.resolution, self.z_dim, self.img_channels, self.noise = resolution, z_dim, img_channels, noise
        widths = [channels[0], *channels]
        self.stem = nn.Sequential(nn.Conv2d(img_channels + 2, widths[0], 3, padding=1), _act())
        self.down = nn.ModuleList(_Down(widths[i], widths[i + 1]) for i in range(len(channels)))
        self.z_in = nn.Linear(z_dim, widths[-1])
        self.up = nn.ModuleList(
            _Up(widths[i + 1], widths[i], widths[i], z_dim, noise=noise) for i in reversed(range(len(channels)))
        )
        self.to_image = nn.Conv2d(widths[0], img_channels, 1)

    def forward(
        self,
        background: torch.Tensor,
        mask: torch.Tensor,
        hole: torch.Tensor,
        z: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``noise``: [N, 1, R, R] unit normal (None: no noise — the reconstruction's deterministic mode)."""
        x = self.stem(torch.cat([background, mask * 2 - 1, hole * 2 - 1], dim=1))
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = x + self.z_in(z).unsqueeze(-1).unsqueeze(-1)
        skips.pop()
        for block in self.up:
            x = block(x, skips.pop(), z, noise)
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

    def forward(self, x: torch.Tensor, taps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The logit map; ``taps``: a list that gets every hidden activation (for feature matching)."""
        if taps is None:
            return self.body(x)
        for layer in self.body:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                taps.append(x)
        return x


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

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, taps: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = torch.cat([image, mask * 2 - 1], dim=1)
        boxes = defect_crops(mask, self.local_px)
        return self.global_d(stacked, taps), self.local_d(crop(stacked, boxes, self.local_px), taps)


class MaskedSampler(nn.Module):
    """For the loop's grids: z -> (composite, mask) on a fixed set of backgrounds and moved masks."""

    def __init__(self, G: MaskedGenerator, background: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor) -> None:
        super().__init__()
        self.G = G
        self.register_buffer("background", background, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("alpha", alpha, persistent=False)
        fixed = noise_maps(len(background), background.shape[-1], seed=12345).to(background.device)
        self.register_buffer("noise", fixed, persistent=False)  # every grid of a run: the same noise

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        index = torch.arange(len(z), device=z.device) % len(self.background)
        background, mask, alpha = self.background[index], self.mask[index], self.alpha[index]
        painted = paint(self.G, background, mask, alpha, z=z, noise=self.noise[index])
        return torch.cat([composite(background, painted, alpha), mask * 2 - 1], dim=1)


def seeded_normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Unit normal values from one stream per seed: row i does not depend on how many rows are drawn."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def noise_maps(count: int, resolution: int, seed: int) -> torch.Tensor:
    """[count, 1, R, R] noise maps for G's noise inputs."""
    return seeded_normal((count, 1, resolution, resolution), seed)


def paint(
    G: MaskedGenerator,
    background: torch.Tensor,
    mask: torch.Tensor,
    alpha: torch.Tensor,
    *,
    z: torch.Tensor,
    noise: torch.Tensor | None = None,
):
    """G's painting of the hole of ``background`` (filled first, as in training); ``noise`` only where G has
    noise inputs (None: the deterministic mode)."""
    hole = hole_of(alpha)
    return G(fill_hole(background, hole), mask, hole, z, noise=noise if G.noise else None)
