"""StyleGAN2 networks: mapping, "skip" synthesis, generator, "resnet" discriminator.

Written from the StyleGAN2 paper (arXiv 1912.04958, §2, Fig. 7, Appendix B) and the 'auto'
notes in ``shared/design/gan-reference.md``. Grayscale by default (``img_channels=1``); 3 works.
Channels at resolution r are ``min(channel_base // r, channel_max)``; resolutions are powers of
two >= 8. No optimiser, loss or logging in here, so the generator exports on its own
(``SamplingGenerator``: z -> image, fixed ψ, constant noise).

w indices ("num_ws"): the 4x4 block uses ws[0] for its conv and ws[1] for its ToImage; every
later block at 2^k uses ws[2k-5] (up-conv), ws[2k-4] (conv), ws[2k-3] (ToImage) — a block's
ToImage shares its index with the next block's first conv. num_ws = 2*log2(res) - 2.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.gan.modconv import modulated_conv2d
from training.gan.ops import EqualizedConv2d, EqualizedLinear, MinibatchStd, activation_gain
from training.gan.resample import fir_kernel, upsample2d

NOISE_MODES = ("random", "const", "none")


def channels_per_resolution(resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """{r: min(channel_base // r, channel_max)} for r = 4, 8, ..., ``resolution``."""
    log2 = int(math.log2(resolution))
    if resolution < 8 or 2**log2 != resolution:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return {2**k: max(1, min(channel_base // 2**k, channel_max)) for k in range(2, log2 + 1)}


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm of the latent: x / sqrt(mean(x²) + eps) along dim 1."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z -> w: pixel-normalised z through ``num_layers`` lrelu FC layers (lr multiplier 0.01).

    ``w_avg`` tracks the mean w (``w_avg_beta`` per update) for truncation: w' = w_avg + ψ(w - w_avg),
    applied to the first ``truncation_cutoff`` ws (all when None). Returns ws [N, num_ws, w_dim].
    """

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 2,
        *,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualizedLinear(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            for i in range(num_layers)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor,
        psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1.0:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            w_avg = self.w_avg.to(ws.dtype)
            truncated = w_avg.lerp(ws[:, :cutoff], psi)
            ws = torch.cat([truncated, ws[:, cutoff:]], dim=1)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally on the 2x up-sampled grid) + noise + bias + lrelu.

    Noise: one N(0, 1) map per sample ('random'), a fixed buffer ('const'), or off ('none'),
    times a learned per-layer strength initialised to 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.up = up
        self.conv_clamp = conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        # Demodulation cancels any constant weight scale, so no equalised-lr gain is needed here.
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", fir_kernel(), persistent=False)
        self.act_gain = activation_gain("lrelu")
        self.formulation = "scaled"

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        styles = self.affine(w)
        g = self.act_gain
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            resample_filter=self.resample_filter,
            out_gain=g,
            formulation=self.formulation,
        )
        if noise_mode == "random":
            n, _, h, wd = x.shape
            noise = torch.randn(n, 1, h, wd, device=x.device, dtype=x.dtype)
            x = x + noise * (self.noise_strength * g)
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * (self.noise_strength * g)
        elif noise_mode != "none":
            raise ValueError(f"unknown noise_mode {noise_mode!r}; valid: {NOISE_MODES}")
        x = torch.nn.functional.leaky_relu(x + (self.bias * g).to(x.dtype).reshape(1, -1, 1, 1), 0.2)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToImageLayer(nn.Module):
    """1x1 modulated conv *without* demodulation + bias: features -> image channels."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.formulation = "scaled"

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, formulation=self.formulation)
        x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisBlock(nn.Module):
    """One resolution of the "skip" generator: (up-conv,) conv, ToImage added to the up-sampled image."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        img_channels: int,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.is_first = in_channels == 0
        if self.is_first:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.to_image = ToImageLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", fir_kernel(), persistent=False)
        self.num_conv = 1 if self.is_first else 2

    def forward(
        self, x: torch.Tensor, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_first:  # x: the learned constant, batched by the caller
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.to_image(x, ws[:, self.num_conv])
        img = y if img is None else upsample2d(img, self.resample_filter).to(y.dtype) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, res, res] ("skip" architecture, no tanh)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 1,
        channel_base: int = 16384,
        *,
        channel_max: int = 512,
        conv_clamp: float | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.channels_last = channels_last
        self.channels = channels_per_resolution(img_resolution, channel_base, channel_max)
        self.blocks = nn.ModuleList()
        for res, out_channels in self.channels.items():
            in_channels = self.channels.get(res // 2, 0)
            self.blocks.append(
                SynthesisBlock(in_channels, out_channels, w_dim, res, img_channels=img_channels, conv_clamp=conv_clamp)
            )
        self.num_ws = 2 * int(math.log2(img_resolution)) - 2

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = img = None
        index = 0
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for block in self.blocks:
            if x is None and block.is_first:
                x = block.const.to(ws.dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
                x = x.contiguous(memory_format=memory_format)
            x, img = block(x, img, ws[:, index : index + block.num_conv + 1], noise_mode)
            index += block.num_conv
        return img


class Generator(nn.Module):
    """Mapping + synthesis. ``forward`` samples (ψ truncation, no mixing); ``map`` also style-mixes.

    Style mixing (training regularisation, StyleGAN §3.1): with probability ``mixing_prob`` a
    sample takes its ws from a second z from a random crossover index in [1, num_ws) onwards.
    """

    def __init__(
        self,
        z_dim: int = 512,
        w_dim: int = 512,
        img_resolution: int = 128,
        img_channels: int = 1,
        *,
        mapping_layers: int = 2,
        channel_base: int = 16384,
        channel_max: int = 512,
        conv_clamp: float | None = None,
        mapping_lr_multiplier: float = 0.01,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(
            w_dim,
            img_resolution,
            img_channels,
            channel_base,
            channel_max=channel_max,
            conv_clamp=conv_clamp,
            channels_last=channels_last,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, lr_multiplier=mapping_lr_multiplier)

    def map(
        self,
        z: torch.Tensor,
        psi: float = 1.0,
        truncation_cutoff: int | None = None,
        mixing_prob: float = 0.0,
        *,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """z [N, z_dim] -> ws [N, num_ws, w_dim], with optional style mixing."""
        ws = self.mapping(z, psi, truncation_cutoff, update_w_avg=update_w_avg)
        if mixing_prob > 0:
            n = z.shape[0]
            cutoff = torch.randint(1, self.num_ws, (n, 1), device=z.device)
            cutoff = torch.where(torch.rand(n, 1, device=z.device) < mixing_prob, cutoff, self.num_ws)
            ws2 = self.mapping(torch.randn_like(z), psi, truncation_cutoff)
            take2 = torch.arange(self.num_ws, device=z.device).unsqueeze(0) >= cutoff  # [N, num_ws]
            ws = torch.where(take2.unsqueeze(2), ws2, ws)
        return ws

    def forward(
        self,
        z: torch.Tensor,
        psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        return self.synthesis(self.map(z, psi, truncation_cutoff), noise_mode)


class SamplingGenerator(nn.Module):
    """z -> image with fixed ψ and noise mode: the module that is exported (ONNX) and sampled."""

    def __init__(self, generator: Generator, psi: float = 1.0, noise_mode: str = "const") -> None:
        super().__init__()
        self.generator, self.psi, self.noise_mode = generator, psi, noise_mode

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z, psi=self.psi, noise_mode=self.noise_mode)


class DiscriminatorBlock(nn.Module):
    """Residual block: 3x3 conv, 3x3 conv with 2x down-sampling; 1x1 down-sampled skip; both × sqrt(1/2)."""

    def __init__(self, in_channels: int, out_channels: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = math.sqrt(0.5)
        return self.skip(x, gain=gain) + self.conv1(self.conv0(x), gain=gain)


class Discriminator(nn.Module):
    """image [N, C, res, res] -> logit [N, 1] ("resnet" architecture).

    FromImage (1x1 lrelu) at full resolution, residual blocks down to 4x4, then the epilogue:
    minibatch std (group min(N, ``mbstd_group_size``), ``mbstd_num_channels``), 3x3 conv, FC, FC -> 1.
    """

    def __init__(
        self,
        img_resolution: int = 128,
        img_channels: int = 1,
        channel_base: int = 16384,
        channel_max: int = 512,
        *,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.channels_last = channels_last
        self.channels = channels_per_resolution(img_resolution, channel_base, channel_max)
        top = self.channels[img_resolution]
        self.from_image = EqualizedConv2d(img_channels, top, 1, activation="lrelu", conv_clamp=conv_clamp)
        resolutions = [r for r in sorted(self.channels, reverse=True) if r > 4]
        self.blocks = nn.Sequential(
            *(DiscriminatorBlock(self.channels[r], self.channels[r // 2], conv_clamp) for r in resolutions)
        )
        c4 = self.channels[4]
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels)
        self.conv = EqualizedConv2d(c4 + mbstd_num_channels, c4, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = EqualizedLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqualizedLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.from_image(img))
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))
