"""Equalised-lr layers, bias/activation, FIR resampling, modulated convolution, minibatch stddev."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.gan.modconv import demodulation_coefficients, modulated_conv2d
from training.gan.ops import EqualizedConv2d, EqualizedLinear, bias_act, mbstd_group, minibatch_stddev
from training.gan.resample import conv_down2, conv_up2, downsample2d, fir_kernel, upsample2d


def _adam_step_effective_change(layer: EqualizedLinear, lr: float) -> torch.Tensor:
    before = layer.effective_weight().detach().clone()
    optimizer = torch.optim.Adam(layer.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-12)
    layer(torch.randn(8, layer.weight.shape[1])).square().sum().backward()
    optimizer.step()
    return (layer.effective_weight().detach() - before).abs()


def test_equalized_linear_scales_the_stored_weight_by_lr_multiplier_over_sqrt_fan_in() -> None:
    layer = EqualizedLinear(64, 32, lr_multiplier=0.01)
    assert layer.effective_weight().std().item() == pytest.approx(1 / math.sqrt(64), rel=0.1)
    assert layer.weight.std().item() == pytest.approx(100.0, rel=0.1)


def test_lr_multiplier_slows_the_effective_adam_step_by_its_factor() -> None:
    lr, fan_in = 1e-3, 64
    fast = _adam_step_effective_change(EqualizedLinear(fan_in, 16), lr)
    slow = _adam_step_effective_change(EqualizedLinear(fan_in, 16, lr_multiplier=0.01), lr)
    # Adam's first step moves every stored parameter by ~lr, so the effective weight moves lr*λ/sqrt(fan_in).
    assert fast.mean().item() == pytest.approx(lr / math.sqrt(fan_in), rel=1e-3)
    assert slow.mean().item() == pytest.approx(0.01 * lr / math.sqrt(fan_in), rel=1e-2)  # fp32: stored weights ~100


def test_bias_act_lrelu_keeps_unit_second_moment_and_clamps() -> None:
    x = torch.randn(200_000)
    assert bias_act(x, activation="lrelu").square().mean().item() == pytest.approx(1.0, rel=0.05)
    assert bias_act(x * 100, activation="lrelu", clamp=3.0).abs().max().item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="valid"):
        bias_act(x, activation="swish")


def test_equalized_conv_folds_its_gain_like_the_explicit_bias_act() -> None:
    conv = EqualizedConv2d(4, 6, 3, activation="lrelu")
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 4, 8, 8)
    expected = bias_act(
        F.conv2d(x, conv.weight * conv.weight_gain, padding=1), conv.bias, "lrelu", gain=math.sqrt(2) * 0.5
    )
    torch.testing.assert_close(conv(x, gain=0.5), expected)


def test_fir_resampling_keeps_a_constant_image_constant_away_from_the_borders() -> None:
    f = fir_kernel()
    assert f.sum().item() == pytest.approx(1.0)
    x = torch.ones(1, 3, 8, 8)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape == (1, 3, 16, 16) and down.shape == (1, 3, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones(1, 3, 12, 12))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.ones(1, 3, 2, 2))


def test_fused_up_conv_equals_upsample_then_conv_in_the_interior() -> None:
    f, x, w = fir_kernel(), torch.randn(2, 3, 8, 8), torch.randn(5, 3, 3, 3)
    fused = conv_up2(x, w, f)
    reference = F.conv2d(upsample2d(x, f), w.flip([2, 3]), padding=1)  # transposed conv = flipped kernel
    assert fused.shape == (2, 5, 16, 16)
    torch.testing.assert_close(fused[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2], atol=1e-5, rtol=1e-5)


def test_down_conv_equals_conv_then_downsample_in_the_interior() -> None:
    f, x, w = fir_kernel(), torch.randn(2, 3, 16, 16), torch.randn(5, 3, 3, 3)
    fused = conv_down2(x, w, f)
    reference = downsample2d(F.conv2d(x, w, padding=1), f)
    assert fused.shape == (2, 5, 8, 8)
    torch.testing.assert_close(fused[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [False, True])
def test_grouped_and_scaled_modconv_formulations_agree(up: bool, demodulate: bool) -> None:
    x, w, s = torch.randn(3, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(3, 4)
    kwargs = {"demodulate": demodulate, "up": up, "resample_filter": fir_kernel(), "out_gain": 1.5}
    grouped = modulated_conv2d(x, w, s, formulation="grouped", **kwargs)
    scaled = modulated_conv2d(x, w, s, formulation="scaled", **kwargs)
    torch.testing.assert_close(grouped, scaled, atol=1e-4, rtol=1e-4)


def test_demodulation_gives_unit_variance_per_output_channel_for_unit_variance_input() -> None:
    x, w, s = torch.randn(16, 32, 24, 24), torch.randn(8, 32, 3, 3), torch.randn(16, 32) + 1
    y = modulated_conv2d(x, w, s)[..., 1:-1, 1:-1]
    std = y.std(dim=[2, 3])  # [N, O]
    assert std.mean().item() == pytest.approx(1.0, abs=0.05)
    assert std.min().item() > 0.85 and std.max().item() < 1.15
    d = demodulation_coefficients(w, s)
    explicit = ((w[None] * s[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    torch.testing.assert_close(d, explicit)


def test_minibatch_stddev_adds_one_channel_from_groups_of_min_batch_and_four() -> None:
    x = torch.randn(8, 6, 4, 4)
    y = minibatch_stddev(x, group_size=4)
    assert y.shape == (8, 7, 4, 4)
    torch.testing.assert_close(y[:, :6], x)
    # Group size 4 on a batch of 8: samples j, j+2, j+4, j+6 form group j (j = 0, 1).
    group = x[0::2]
    expected = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(y[0, 6], expected.expand(4, 4))
    torch.testing.assert_close(y[2, 6], y[0, 6])
    assert not torch.allclose(y[1, 6], y[0, 6])
    assert mbstd_group(2, 4) == 2 and mbstd_group(8, 4) == 4 and mbstd_group(6, 4) == 3 and mbstd_group(1, 4) == 1
    small = minibatch_stddev(x[:2], group_size=4)  # group = min(batch, 4) = 2: one group, one value
    torch.testing.assert_close(small[0, 6], small[1, 6])
