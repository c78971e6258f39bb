"""Tiny StyleGAN2 pieces shared by the GAN tests (16-32 px, 8-32 channels: each test runs in well under a second)."""

from __future__ import annotations

import pytest
import torch

from training.gan.stylegan2.config import StyleGAN2Config

TINY_TEST = {
    "resolution": 16,
    "z_dim": 16,
    "w_dim": 16,
    "channel_base": 256,
    "channel_max": 32,
    "batch_size": 4,
    "r1_gamma": 1.0,
}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _threads_restored():
    """`--threads 1` sets torch's global thread count; give later tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config() -> StyleGAN2Config:
    return StyleGAN2Config(**TINY_TEST)
