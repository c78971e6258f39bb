"""StyleGAN2 mapping, synthesis, generator and discriminator at toy sizes."""

from __future__ import annotations

import pytest
import torch

from training.gan.stylegan2.build import build_networks
from training.gan.stylegan2.config import StyleGAN2Config
from training.gan.stylegan2.networks import (
    Discriminator,
    Generator,
    SynthesisLayer,
    ToImageLayer,
    channels_per_resolution,
)


def _generator(**kwargs: object) -> Generator:
    return Generator(
        **{"z_dim": 16, "w_dim": 16, "img_resolution": 16, "channel_base": 256, "channel_max": 32, **kwargs}
    )


def test_paper_widths_follow_channel_base_over_resolution_capped_at_channel_max() -> None:
    channels = channels_per_resolution(128, 16384, 512)
    assert channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128}
    for bad in (4, 48, 100):
        with pytest.raises(ValueError, match="power of two"):
            channels_per_resolution(bad, 16384, 512)


@pytest.mark.parametrize("img_channels", [1, 3])
@pytest.mark.parametrize("resolution", [16, 32])
def test_generator_and_discriminator_shapes_and_dtypes(img_channels: int, resolution: int) -> None:
    cfg = StyleGAN2Config(
        resolution=resolution, img_channels=img_channels, z_dim=16, w_dim=16, channel_base=256, channel_max=32
    )
    G, D = build_networks(cfg)
    assert G.num_ws == 2 * {16: 4, 32: 5}[resolution] - 2
    img = G(torch.randn(3, 16))
    assert img.shape == (3, img_channels, resolution, resolution) and img.dtype == torch.float32
    logits = D(img)
    assert logits.shape == (3, 1) and logits.dtype == torch.float32
    assert torch.isfinite(img).all() and torch.isfinite(logits).all()


def test_channels_last_does_not_change_the_numbers() -> None:
    G = _generator()
    z = torch.randn(2, 16)
    a = G(z, noise_mode="const")
    G.synthesis.channels_last = False
    torch.testing.assert_close(G(z, noise_mode="const"), a)
    D = Discriminator(img_resolution=16, channel_base=256, channel_max=32)
    b = D(a)
    D.channels_last = False
    torch.testing.assert_close(D(a), b)


def test_mapping_uses_the_lr_multiplier_and_two_layers_by_default() -> None:
    G = _generator()
    assert len(G.mapping.layers) == 2
    assert all(layer.bias_gain == 0.01 for layer in G.mapping.layers)


def test_noise_strength_starts_at_zero_and_receives_gradient() -> None:
    G = _generator()
    layers = [m for m in G.modules() if isinstance(m, SynthesisLayer)]
    assert layers and all(layer.noise_strength.item() == 0 for layer in layers)
    G(torch.randn(2, 16)).square().sum().backward()
    assert all(layer.noise_strength.grad.abs().item() > 0 for layer in layers)
    z = torch.randn(2, 16)
    torch.testing.assert_close(G(z, noise_mode="const"), G(z, noise_mode="const"))


def test_noise_modes_random_differs_once_strength_is_nonzero() -> None:
    G = _generator()
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, SynthesisLayer):
                m.noise_strength.fill_(0.5)
    z = torch.randn(2, 16)
    assert not torch.allclose(G(z, noise_mode="random"), G(z, noise_mode="random"))
    with pytest.raises(ValueError, match="valid"):
        G(z, noise_mode="loud")


def test_to_image_is_not_demodulated_but_synthesis_convs_are() -> None:
    x, w = torch.randn(2, 8, 8, 8), torch.randn(2, 16)
    to_image = ToImageLayer(8, 1, 16)
    base = to_image(x, w)
    with torch.no_grad():
        to_image.weight.mul_(2)
    torch.testing.assert_close(to_image(x, w), 2 * base)  # bias is 0: the output scales with the weight
    layer = SynthesisLayer(8, 8, 16, resolution=8)
    base = layer(x, w, noise_mode="none")
    with torch.no_grad():
        layer.weight.mul_(2)
    torch.testing.assert_close(layer(x, w, noise_mode="none"), base, atol=1e-5, rtol=1e-5)  # demodulated


def test_style_mixing_mixes_rows_only_when_asked() -> None:
    G = _generator()
    z = torch.randn(64, 16)
    plain = G.map(z, mixing_prob=0.0)
    assert torch.equal(plain, plain[:, :1].expand_as(plain))
    mixed = G.map(z, mixing_prob=1.0)
    torch.testing.assert_close(mixed[:, 0], plain[:, 0])  # the crossover index is >= 1
    differs = (mixed[:, -1] - mixed[:, 0]).abs().amax(dim=1) > 0
    assert differs.all()
    crossover = (mixed - mixed[:, :1]).abs().amax(dim=2).gt(0).float().argmax(dim=1)
    assert crossover.min() >= 1 and crossover.max() <= G.num_ws - 1 and len(crossover.unique()) > 1


def test_truncation_psi_zero_gives_w_avg_and_w_avg_tracks_the_mean() -> None:
    G = _generator()
    z = torch.randn(32, 16)
    G.mapping(z, update_w_avg=True)
    assert G.mapping.w_avg.abs().sum() > 0
    ws = G.map(z, psi=0.0)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand_as(ws))
    half = G.map(z, psi=0.5, truncation_cutoff=2)
    full = G.map(z)
    torch.testing.assert_close(half[:, 2:], full[:, 2:])
    torch.testing.assert_close(half[:, :2], G.mapping.w_avg + 0.5 * (full[:, :2] - G.mapping.w_avg))


def test_discriminator_is_residual_with_mbstd_epilogue() -> None:
    D = Discriminator(img_resolution=32, channel_base=256, channel_max=32, mbstd_group_size=4)
    assert [b.conv1.down for b in D.blocks] == [2, 2, 2]  # 32 -> 16 -> 8 -> 4
    assert D.conv.weight.shape[1] == D.channels[4] + 1  # the stddev channel
    assert D(torch.randn(6, 1, 32, 32)).shape == (6, 1)  # batch 6: group shrinks to 3
