"""Modulated / demodulated convolution (StyleGAN2 §2.2, eqs. 1-3).

Per sample n with style s (one scale per input channel i):

    w'_nijk = s_ni * w_ijk                                   (modulation)
    w''_nijk = w'_nijk / sqrt(sum_{i,k} w'_nijk**2 + eps)   (demodulation, eps 1e-8)

The demodulation coefficient d_nj = rsqrt(sum_i s_ni**2 * sum_k w_jik**2 + eps) is one matmul of
the squared styles with the squared-and-summed weight. Two equivalent ways to apply it:

* ``grouped``: build per-sample weights [N*O, I, k, k] and run one grouped conv (groups = N) on
  the batch folded into channels (what the paper's "fused" implementation does);
* ``scaled``: scale the activations by s, run one conv with the shared weight, scale the output
  by d (eq. 3 read as "scale inputs, convolve, scale outputs"; exact as long as noise and bias are
  added after the scaling, which they are).

**Measured** (this 2-core CPU, shared, 2 threads, fp32; forward + backward of one
``SynthesisLayer`` incl. noise/bias/lrelu, channels-last, min of 2-10 runs, ms; N = batch;
``benchmarks/gan_throughput.py --modconv`` repeats it):

=========================  =======  ======  ===========================================
layer                      grouped  scaled
=========================  =======  ======  ===========================================
N32 128->128 @ 8              67.0    20.5  tiny preset widths (64 px, base 1024)
N32 128->64 @ 16 (up)         50.2    18.1
N32 64->64 @ 16               28.2    21.0
N32 64->32 @ 32 (up)          33.9    22.2
N32 32->32 @ 32               23.4    25.1
N32 32->16 @ 64 (up)          41.2    34.5
N32 16->16 @ 64               31.4    37.3
N32 8->8 @ 128                51.8    75.1  (128 px, base 1024)
N4 512->512 @ 16             271.7   118.5  paper widths (128 px, base 16384)
N4 512->512 @ 32 (up)        321.6   172.7
N4 512->256 @ 64 (up)        372.1   384.5
N4 256->256 @ 64             566.7   434.9
N4 256->128 @ 128 (up)       831.6   522.3
N4 128->128 @ 128            641.5   879.0
=========================  =======  ======  ===========================================

``scaled`` wins 2-3x where channels are wide and images small, ties in the middle, and loses
~1.4x only on the narrow full-resolution 128 px convs; summed over a network it wins at both
the tiny (0.65x the time) and the paper widths (2.5 s vs 3.0 s per layer set). So ``scaled`` is
the default everywhere: it also exports to ONNX with a dynamic batch (a grouped conv's
``groups`` would be baked to the traced batch size) and needs no per-sample weight tensors. The
grouped form stays selectable per layer (``SynthesisLayer.formulation``) as the reference the
tests compare against; a per-resolution switch would gain < 10 % of a 128 px paper step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.gan.resample import conv_up2

DEMOD_EPS = 1e-8
FORMULATIONS = ("scaled", "grouped")


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """d [N, O] = rsqrt(styles² @ (Σ_k weight²)ᵀ + eps) for ``weight`` [O, I, k, k], ``styles`` [N, I]."""
    return torch.rsqrt(styles.square() @ weight.square().sum(dim=[2, 3]).t() + DEMOD_EPS)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    *,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
    out_gain: float = 1.0,
    formulation: str = "scaled",
) -> torch.Tensor:
    """Modulated conv of ``x`` [N, I, H, W] with ``weight`` [O, I, k, k] and ``styles`` [N, I].

    ``up=True`` convolves on the 2x up-sampled grid (needs ``resample_filter``); ``out_gain``
    multiplies the output (callers fold their activation gain into it). Returns [N, O, H', W'].
    """
    n, in_channels, h, w = x.shape
    out_channels, _, kh, _ = weight.shape
    coefs = styles * out_gain if not demodulate else styles
    dcoefs = demodulation_coefficients(weight, styles) * out_gain if demodulate else None
    if formulation == "scaled":
        x = x * coefs.reshape(n, in_channels, 1, 1)
        x = conv_up2(x, weight, resample_filter) if up else F.conv2d(x, weight, padding=kh // 2)
        if dcoefs is not None:
            x = x * dcoefs.reshape(n, out_channels, 1, 1)
        return x
    if formulation != "grouped":
        raise ValueError(f"unknown modconv formulation {formulation!r}; valid: {FORMULATIONS}")
    wn = weight.unsqueeze(0) * coefs.reshape(n, 1, in_channels, 1, 1)  # [N, O, I, k, k]
    if dcoefs is not None:
        wn = wn * dcoefs.reshape(n, out_channels, 1, 1, 1)
    wn = wn.reshape(n * out_channels, in_channels, kh, kh)
    x = x.reshape(1, n * in_channels, h, w)
    x = conv_up2(x, wn, resample_filter, groups=n) if up else F.conv2d(x, wn, padding=kh // 2, groups=n)
    return x.reshape(n, out_channels, *x.shape[2:])
