"""StyleGAN2 presets: 'paper' is 'auto' at 128 px / 1 GPU; 'tiny' is a valid CPU preset."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from training.gan.stylegan2.config import PRESETS, StyleGAN2Config, auto_ema_kimg, auto_r1_gamma, preset


def test_paper_preset_is_auto_at_128px_on_one_gpu() -> None:
    cfg = preset("paper")
    assert (cfg.resolution, cfg.batch_size, cfg.mbstd_group_size) == (128, 32, 4)
    assert cfg.channels() == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128}
    assert (cfg.mapping_layers, cfg.z_dim, cfg.w_dim, cfg.mapping_lr_multiplier) == (2, 512, 512, 0.01)
    assert (cfg.lr_g, cfg.lr_d, cfg.betas, cfg.eps) == (0.0025, 0.0025, (0.0, 0.99), 1e-8)
    assert cfg.r1_gamma == pytest.approx(0.1024) and cfg.ema_kimg == 10 and cfg.ema_rampup == 0.05
    assert (cfg.style_mixing_prob, cfg.pl_weight, cfg.g_reg_interval, cfg.d_reg_interval) == (0.9, 2, 4, 16)
    assert (cfg.ada_target, cfg.ada_interval, cfg.ada_kimg, cfg.augment) == (0.6, 4, 500, "bgc")
    assert cfg.img_channels == 1 and cfg.precision == "fp32"


def test_tiny_preset_follows_the_auto_formulas_for_its_batch_and_resolution() -> None:
    cfg = preset("tiny")
    assert cfg.r1_gamma == pytest.approx(auto_r1_gamma(cfg.resolution, cfg.batch_size))
    assert cfg.ema_kimg == pytest.approx(auto_ema_kimg(cfg.batch_size))
    assert max(cfg.channels().values()) < 512


def test_auto_formulas() -> None:
    assert auto_r1_gamma(128, 32) == pytest.approx(0.1024) and auto_r1_gamma(128, 64) == pytest.approx(0.0512)
    assert auto_ema_kimg(32) == 10 and auto_ema_kimg(64) == 20


def test_presets_reject_unknown_names_and_fields() -> None:
    with pytest.raises(KeyError, match="paper"):
        preset("huge")
    with pytest.raises(ValidationError):
        preset("paper", channel_bass=1)
    with pytest.raises(ValidationError, match="power of two"):
        StyleGAN2Config(resolution=96)
    assert set(PRESETS) == {"paper", "tiny"}


def test_every_field_is_documented() -> None:
    assert all(field.description for field in StyleGAN2Config.model_fields.values())
