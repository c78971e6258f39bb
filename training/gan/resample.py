"""2x up/down-sampling with the [1, 3, 3, 1] FIR low-pass filter (StyleGAN2 §2, Appendix B).

All filtering is a depthwise ``conv2d``/``conv_transpose2d`` with zero padding, so every op is
differentiable to any order and exports to ONNX as plain convolutions. The filter is the
outer product of ``[1, 3, 3, 1]`` normalised to sum 1; up-sampling multiplies it by 4 (2 per
axis) so that a constant image stays constant away from the borders.

Index alignment (pixel centres, derived for a 1-D signal; 2-D is separable):

* ``upsample2d``: zero-insertion then the filter with padding (2, 1) — written as a stride-2
  transposed conv with padding 1. Output pixels ``2i`` and ``2i+1`` sit at ``i -+ 1/4`` input
  pixels, symmetric about input pixel ``i``.
* ``downsample2d``: the filter with padding 1, stride 2; output ``j`` is centred between input
  pixels ``2j`` and ``2j+1``.
* ``conv_up2`` (3x3 conv on the up-sampled grid, fused): stride-2 transposed 3x3 conv (output
  ``2H+1``) then the filter with padding 1 and gain 4 (output ``2H``); a quarter of the MACs of
  "up-sample, then 3x3 conv" and equal to it away from the borders.
* ``conv_down2``: the filter with padding 2 (output ``H+1``), then a 3x3 conv with stride 2 and
  no padding (output ``H/2``), centred like ``downsample2d``.

With a 1-D low-pass the 4x4 depthwise kernel could be split into two 1-D passes; at these sizes
one 4x4 depthwise conv is faster on CPU (fewer ops, same memory traffic), so it stays 2-D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_kernel(taps: tuple[float, ...] = FIR_TAPS) -> torch.Tensor:
    """Separable 2-D low-pass kernel (outer product of ``taps``), normalised to sum 1."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def _depthwise(f: torch.Tensor, channels: int, x: torch.Tensor, gain: float) -> torch.Tensor:
    """The kernel as a depthwise weight [C, 1, k, k] in the dtype/device of ``x``."""
    w = (f * gain).to(device=x.device, dtype=x.dtype)
    return w[None, None].expand(channels, 1, *f.shape)


def filter2d(x: torch.Tensor, f: torch.Tensor, padding: int, gain: float = 1.0) -> torch.Tensor:
    """Low-pass ``x`` [N, C, H, W] with ``f`` (zero padding ``padding`` on every side)."""
    channels = int(x.shape[1])  # a constant when traced (ONNX needs static conv kernels)
    return F.conv2d(x, _depthwise(f, channels, x, gain), padding=padding, groups=channels)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x up-sampling: zero-insertion + low-pass with gain 4, as one transposed conv."""
    channels = int(x.shape[1])  # a constant when traced (ONNX needs static conv kernels)
    return F.conv_transpose2d(x, _depthwise(f, channels, x, 4.0), stride=2, padding=1, groups=channels)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x down-sampling: low-pass then keep every second pixel, as one strided depthwise conv."""
    channels = int(x.shape[1])  # a constant when traced (ONNX needs static conv kernels)
    return F.conv2d(x, _depthwise(f, channels, x, 1.0), stride=2, padding=1, groups=channels)


def conv_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """3x3 conv ``weight`` [O, I/groups, 3, 3] on the 2x up-sampled grid (fused, see module doc)."""
    out_per_group, in_per_group, kh, kw = weight.shape
    # conv_transpose2d wants [in, out/groups, k, k]; regroup [g*o, i] -> [g*i, o].
    w = weight.reshape(groups, out_per_group // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_per_group // groups, kh, kw)
    x = F.conv_transpose2d(x, w, stride=2, groups=groups)
    return filter2d(x, f, padding=1, gain=4.0)


def conv_down2(
    x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """3x3 conv with stride 2 after the low-pass (padding 2): [N, I, H, W] -> [N, O, H/2, W/2]."""
    return F.conv2d(filter2d(x, f, padding=2), weight, bias, stride=2)
