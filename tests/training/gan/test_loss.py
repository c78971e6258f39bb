"""StyleGAN2Loss phases, lazy regularisation settings, G EMA."""

from __future__ import annotations

import math

import pytest
import torch

from training.gan.ema import ema_beta, update_ema
from training.gan.stylegan2.build import adam_settings, build_augment_pipe, build_loss, build_networks
from training.gan.stylegan2.config import StyleGAN2Config
from training.gan.stylegan2.loss import PHASES, lazy_regularization
from training.gan.stylegan2.networks import Generator


def _setup(cfg: StyleGAN2Config, p: float = 0.5):  # noqa: ANN202
    G, D = build_networks(cfg)
    pipe = build_augment_pipe(cfg)
    pipe.p = p
    return G, D, build_loss(cfg, G, D, pipe)


def _without_grad(module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.grad is None or p.grad.abs().sum().item() == 0}


# Regularisers differentiate ∂output/∂input: constant offsets (ToImage biases; in D, the biases after the
# minibatch-stddev layer, where the net is piecewise linear) do not change it, so they get no gradient.
REG_BLIND = {
    "G_reg": {f"synthesis.blocks.{i}.to_image.bias" for i in range(3)},
    "D_reg": {"conv.bias", "fc.bias", "out.bias"},
}


@pytest.mark.parametrize("phase", PHASES)
def test_each_phase_returns_finite_scalars_and_grads_only_its_network(tiny_config: StyleGAN2Config, phase: str) -> None:
    G, D, loss = _setup(tiny_config)
    real, z = torch.randn(4, 1, 16, 16), torch.randn(4, 16)
    stats = loss.accumulate_gradients(phase, real, z, gain=1.0)
    assert stats and all(isinstance(v, float) and math.isfinite(v) for v in stats.values())
    trained, frozen = (G, D) if phase.startswith("G") else (D, G)
    assert _without_grad(trained) == REG_BLIND.get(phase, set())
    assert _without_grad(frozen) == {name for name, _ in frozen.named_parameters()}
    assert all(p.requires_grad for p in (*G.parameters(), *D.parameters()))  # flags restored


def test_d_main_reports_the_real_signs_ada_needs(tiny_config: StyleGAN2Config) -> None:
    _, _, loss = _setup(tiny_config)
    stats = loss.accumulate_gradients("D_main", torch.randn(4, 1, 16, 16), torch.randn(4, 16))
    assert -1.0 <= stats["Loss/signs/real"] <= 1.0


def test_unknown_phase_lists_the_valid_ones(tiny_config: StyleGAN2Config) -> None:
    _, _, loss = _setup(tiny_config)
    with pytest.raises(ValueError, match="G_main"):
        loss.accumulate_gradients("Gboth", torch.randn(4, 1, 16, 16), torch.randn(4, 16))


def test_gain_scales_the_gradients(tiny_config: StyleGAN2Config) -> None:
    G, D, loss = _setup(tiny_config, p=0.0)
    real = torch.randn(4, 1, 16, 16)
    loss.accumulate_gradients("D_reg", real, torch.randn(4, 16), gain=1.0)
    one = [p.grad.clone() for p in D.parameters() if p.grad is not None]
    D.zero_grad(set_to_none=True)
    loss.accumulate_gradients("D_reg", real, torch.randn(4, 16), gain=16.0)
    sixteen = [p.grad for p in D.parameters() if p.grad is not None]
    for a, b in zip(one, sixteen, strict=True):
        torch.testing.assert_close(b, 16 * a, atol=1e-6, rtol=1e-4)


def test_path_length_mean_moves_with_its_decay_and_round_trips(tiny_config: StyleGAN2Config) -> None:
    _, _, loss = _setup(tiny_config)
    assert loss.pl_mean.item() == 0
    stats = loss.accumulate_gradients("G_reg", torch.randn(4, 1, 16, 16), torch.randn(4, 16))
    assert stats["Loss/pl_mean"] > 0
    state = loss.state_dict()
    _, _, other = _setup(tiny_config)
    other.load_state_dict(state)
    assert other.pl_mean.item() == pytest.approx(stats["Loss/pl_mean"])


def test_bf16_main_phases_are_finite_and_r1_stays_fp32(tiny_config: StyleGAN2Config) -> None:
    G, D, loss = _setup(tiny_config, p=0.0)
    real, z = torch.randn(4, 1, 16, 16), torch.randn(4, 16)
    fp32 = loss.accumulate_gradients("D_reg", real, z)["Loss/r1_penalty"]
    loss.precision = "bf16"
    assert loss.accumulate_gradients("D_reg", real, z)["Loss/r1_penalty"] == pytest.approx(fp32, rel=1e-6)
    for phase in ("G_main", "D_main"):
        assert all(math.isfinite(v) for v in loss.accumulate_gradients(phase, real, z).values())


def test_lazy_regularization_scales_lr_betas_and_gain() -> None:
    d = lazy_regularization(0.0025, (0.0, 0.99), 16)
    c = 16 / 17
    assert d.lr == pytest.approx(0.0025 * c) and d.gain == 16 and d.interval == 16
    assert d.betas == pytest.approx((0.0, 0.99**c))
    g = lazy_regularization(0.0025, (0.0, 0.99), 4)
    assert g.lr == pytest.approx(0.002) and g.betas[1] == pytest.approx(0.99**0.8) and g.gain == 4
    assert lazy_regularization(0.001, (0.5, 0.9), None) == lazy_regularization(0.001, (0.5, 0.9), 0)
    assert lazy_regularization(0.001, (0.5, 0.9), None).lr == 0.001
    settings = adam_settings(StyleGAN2Config())
    assert settings["D"]["lr"] == pytest.approx(d.lr) and settings["G"]["betas"] == pytest.approx(g.betas)


def test_ema_beta_is_half_per_half_life_with_rampup_cap() -> None:
    assert ema_beta(32, 10, None, 0) == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_beta(32, 10, 0.05, 10**9) == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_beta(32, 10, 0.05, 2000) == pytest.approx(0.5 ** (32 / 100))  # capped at 0.05 * 2000 images
    assert ema_beta(32, 10, 0.05, 0) == pytest.approx(0.0)


def test_update_ema_blends_parameters_and_copies_buffers() -> None:
    kwargs = {"z_dim": 8, "w_dim": 8, "img_resolution": 8, "channel_base": 64, "channel_max": 8}
    G, G_ema = Generator(**kwargs), Generator(**kwargs)
    G.mapping.w_avg.fill_(3.0)
    before = [p.detach().clone() for p in G_ema.parameters()]
    beta = update_ema(G_ema, G, batch=32, ema_kimg=10, rampup=None, images_seen=0)
    assert beta == pytest.approx(0.5 ** (32 / 10_000))
    for old, new, target in zip(before, G_ema.parameters(), G.parameters(), strict=True):
        torch.testing.assert_close(new, target + beta * (old - target), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(G_ema.mapping.w_avg, G.mapping.w_avg)
