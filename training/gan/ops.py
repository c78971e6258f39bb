"""Equalised-learning-rate layers, bias + activation, minibatch standard deviation.

Equalised learning rate (ProGAN, kept by StyleGAN2): a parameter is stored as N(0, 1/λ²) and
scaled at run time by ``λ / sqrt(fan_in)`` (λ = ``lr_multiplier``; biases by λ). Adam's step is
scale-free in the stored parameter, so the *effective* weight moves ``λ / sqrt(fan_in)`` times
the learning rate: every layer learns at the same relative speed, and λ = 0.01 slows the
mapping network down 100x.

Activations: ``lrelu`` is leaky ReLU (slope 0.2) times ``sqrt(2)``, which keeps unit variance
through a layer of unit-variance inputs; ``linear`` has gain 1. Because leaky ReLU is positively
homogeneous, ``lrelu(a) * g == lrelu(a * g)`` for ``g > 0``, so layers fold the gain into their
weight and bias instead of spending an extra pass over the activations. An optional ``clamp``
bounds the result (StyleGAN2 uses 256 with reduced precision; off by default).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.gan.resample import conv_down2, downsample2d, fir_kernel

LRELU_SLOPE = 0.2
ACTIVATION_GAIN = {"linear": 1.0, "lrelu": math.sqrt(2.0)}


def activation_gain(activation: str) -> float:
    """Default gain of ``activation`` ('linear' or 'lrelu')."""
    if activation not in ACTIVATION_GAIN:
        raise ValueError(f"unknown activation {activation!r}; valid: {sorted(ACTIVATION_GAIN)}")
    return ACTIVATION_GAIN[activation]


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str = "linear",
    gain: float | None = None,
    *,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(act(x + bias) * gain)``, bias along dim 1; ``gain`` defaults to the activation's."""
    gain = activation_gain(activation) if gain is None else gain
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _act(x: torch.Tensor, activation: str, clamp: float | None) -> torch.Tensor:
    """Activation with the gain already folded into the preceding weights."""
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class EqualizedLinear(nn.Module):
    """Fully connected layer with equalised learning rate and a per-layer lr multiplier."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        *,
        lr_multiplier: float = 1.0,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        self.activation = activation
        self.act_gain = activation_gain(activation)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer computes with (stored weight times its run-time gain)."""
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        g = self.act_gain * gain
        w = self.weight * (self.weight_gain * g)
        b = None if self.bias is None else self.bias * (self.bias_gain * g)
        return _act(F.linear(x, w, b), self.activation, None)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in={in_features}, out={out_features}, act={self.activation}, lr_mult={self.bias_gain:g}"


class EqualizedConv2d(nn.Module):
    """Conv layer with equalised learning rate, optional FIR 2x down-sampling, bias and activation.

    ``down=2`` low-passes and decimates (3x3: fused, see ``resample.conv_down2``; 1x1: decimate
    first, then the cheaper 1x1 conv at half resolution). ``gain`` in ``forward`` scales the
    output (the residual discriminator uses sqrt(1/2)); ``conv_clamp`` is scaled with it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        *,
        activation: str = "linear",
        down: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        if down not in (1, 2):
            raise ValueError(f"down must be 1 or 2, got {down}")
        self.activation = activation
        self.act_gain = activation_gain(activation)
        self.down = down
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        g = self.act_gain * gain
        w = self.weight * (self.weight_gain * g)
        b = None if self.bias is None else self.bias * g
        kernel_size = w.shape[-1]
        if self.down == 1:
            x = F.conv2d(x, w, b, padding=self.padding)
        elif kernel_size == 1:
            x = F.conv2d(downsample2d(x, self.resample_filter), w, b)
        else:
            x = conv_down2(x, w, self.resample_filter, b)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return _act(x, self.activation, clamp)

    def extra_repr(self) -> str:
        out_channels, in_channels, k, _ = self.weight.shape
        return f"{in_channels}->{out_channels}, k={k}, down={self.down}, act={self.activation}"


def mbstd_group(batch: int, group_size: int) -> int:
    """Largest group size <= min(batch, group_size) that divides ``batch``."""
    group = max(1, min(batch, group_size))
    while batch % group:
        group -= 1
    return group


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append ``num_channels`` feature maps holding the minibatch standard deviation.

    Samples ``i`` and ``i + N/G`` (...) form a group of G = min(N, ``group_size``) (shrunk to a
    divisor of N). Per group: the std over the group of every feature (+1e-8 inside the sqrt),
    averaged over the features, spatial positions and the channels of each of ``num_channels``
    channel slices; the scalar is broadcast to the group's samples as a constant map.
    """
    n, c, h, w = x.shape
    g = mbstd_group(n, group_size)
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [N/G, F, c, H, W]
    y = y.mean(dim=[2, 3, 4])  # [N/G, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
    return torch.cat([x, y], dim=1)


class MinibatchStd(nn.Module):
    """``minibatch_stddev`` as a layer (adds ``num_channels`` channels)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_stddev(x, self.group_size, self.num_channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
