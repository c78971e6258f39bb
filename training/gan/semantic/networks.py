"""SemanticGAN networks: a StyleGAN2 generator with a label branch, and the two discriminators.

Written from the SemanticGAN paper (Li et al., CVPR 2021, §3) and ``shared/design/gan-reference.md`` §2.

* Generator: the StyleGAN2 "skip" generator plus a *ToLabel* layer at every resolution beside
  ToImage — a 1x1 modulated conv (no demodulation) + bias on the shared trunk features with the
  same w as ToImage, summed with the up-sampled label of the previous resolution. It returns
  (image, label logits); nothing is squashed.
* D_img: the StyleGAN2 residual discriminator (``training.gan.stylegan2.networks.Discriminator``).
* D_sem: pix2pixHD's multi-scale PatchGAN on image ⊕ label: ``scales`` PatchGANs, each on the
  input average-pooled once more (3x3, stride 2); every PatchGAN is ``layers`` stride-2 4x4
  convs, one stride-1 4x4 conv and a stride-1 4x4 conv to one map, LeakyReLU 0.2, spectral norm
  on every conv and non-affine instance norm on the inner ones. It returns every layer's output
  (the last is the patch logit map) for the feature-matching term.

Label value range (what D_sem sees): real masks are {0, 1} per class mapped to {-1, +1}; fake
logits go through ``label_to_range`` = 2·sigmoid - 1 (binary) or 2·softmax - 1 (classes), so both
lie in [-1, 1] — the published code fed one-hot ±1 reals against raw, unbounded fake logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from training.gan.resample import upsample2d
from training.gan.stylegan2.networks import Discriminator, Generator, SynthesisNetwork, ToImageLayer


def label_to_range(logits: torch.Tensor) -> torch.Tensor:
    """Label logits [N, C, H, W] -> [-1, 1]: 2·sigmoid - 1 for one channel, 2·softmax - 1 over classes."""
    if logits.shape[1] == 1:
        return torch.tanh(logits * 0.5)  # = 2·sigmoid(x) - 1, computed stably
    return logits.softmax(dim=1) * 2 - 1


def mask_to_range(mask: torch.Tensor) -> torch.Tensor:
    """A real {0, 1} (or one-hot) mask as D_sem sees it: {-1, +1}."""
    return mask.float() * 2 - 1


def label_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities: sigmoid (one channel: P(defect)) or softmax over classes."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(dim=1)


class SemanticSynthesisNetwork(SynthesisNetwork):
    """ws -> (image, label logits): the "skip" synthesis with one ToLabel per block."""

    def __init__(self, *args, label_channels: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.label_channels = label_channels
        self.to_label = nn.ModuleList(
            ToImageLayer(block.conv1.weight.shape[0], label_channels, self.w_dim) for block in self.blocks
        )

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
        x = img = label = None
        index = 0
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for block, to_label in zip(self.blocks, self.to_label, strict=True):
            if x is None and block.is_first:
                x = block.const.to(ws.dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
                x = x.contiguous(memory_format=memory_format)
            block_ws = ws[:, index : index + block.num_conv + 1]
            x, img = block(x, img, block_ws, noise_mode)
            y = to_label(x, block_ws[:, block.num_conv])  # the same w as this block's ToImage
            label = y if label is None else upsample2d(label, block.resample_filter).to(y.dtype) + y
            index += block.num_conv
        return img, label


class SemanticGenerator(Generator):
    """Mapping + semantic synthesis: ``forward`` returns (image, label logits)."""

    def __init__(self, *args, label_channels: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s = self.synthesis
        self.synthesis = SemanticSynthesisNetwork(
            s.w_dim,
            s.img_resolution,
            s.img_channels,
            kwargs.get("channel_base", 16384),
            channel_max=kwargs.get("channel_max", 512),
            conv_clamp=kwargs.get("conv_clamp"),
            channels_last=s.channels_last,
            label_channels=label_channels,
        )
        self.label_channels = label_channels

    def image_branch(self) -> list[nn.Parameter]:
        """The ToImage layers' parameters: what D_sem's gradient may or may not reach (``sem_grad_to_image``)."""
        return [p for block in self.synthesis.blocks for p in block.to_image.parameters()]

    def label_branch(self) -> list[nn.Parameter]:
        return list(self.synthesis.to_label.parameters())


class SemanticSampler(nn.Module):
    """z -> [N, img_channels + label_channels, H, W]: the image, then the label in [-1, 1] (``label_to_range``).

    For one label channel, (channel + 1) / 2 is P(defect) per pixel. Grids and FID read the first
    channel (the image), as they do for the image GAN.
    """

    def __init__(self, generator: SemanticGenerator, psi: float = 1.0, noise_mode: str = "const") -> None:
        super().__init__()
        self.generator, self.psi, self.noise_mode = generator, psi, noise_mode

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        img, logits = self.generator(z, psi=self.psi, noise_mode=self.noise_mode)
        return torch.cat([img, label_to_range(logits).to(img.dtype)], dim=1)


class PatchDiscriminator(nn.Module):
    """One pix2pixHD PatchGAN: returns the output of every layer (the last: a 1-channel logit map)."""

    def __init__(self, in_channels: int, channels: int = 64, channels_max: int = 512, layers: int = 3) -> None:
        super().__init__()

        def conv(cin: int, cout: int, stride: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, 4, stride=stride, padding=2))

        widths = [min(channels * 2**i, channels_max) for i in range(layers + 1)]
        stages: list[nn.Module] = [nn.Sequential(conv(in_channels, widths[0], 2), nn.LeakyReLU(0.2))]
        for i in range(1, layers):
            stages.append(
                nn.Sequential(conv(widths[i - 1], widths[i], 2), nn.InstanceNorm2d(widths[i]), nn.LeakyReLU(0.2))
            )
        stages.append(
            nn.Sequential(
                conv(widths[layers - 1], widths[layers], 1), nn.InstanceNorm2d(widths[layers]), nn.LeakyReLU(0.2)
            )
        )
        stages.append(conv(widths[layers], 1, 1))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class MultiscalePatchDiscriminator(nn.Module):
    """``scales`` PatchGANs, the k-th on the input average-pooled k times: [[layer outputs] per scale]."""

    def __init__(
        self, in_channels: int, *, scales: int = 3, channels: int = 64, channels_max: int = 512, layers: int = 3
    ):
        super().__init__()
        self.nets = nn.ModuleList(
            PatchDiscriminator(in_channels, channels, channels_max, layers) for _ in range(scales)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for index, net in enumerate(self.nets):
            if index:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            results.append(net(x))
        return results


class SemanticDiscriminators(nn.Module):
    """D_img and D_sem as one module, so the loop's one D optimiser steps both (as SemanticGAN's two Adams would,
    with the same settings)."""

    def __init__(self, img: Discriminator, sem: MultiscalePatchDiscriminator) -> None:
        super().__init__()
        self.img, self.sem = img, sem

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.img(img)
