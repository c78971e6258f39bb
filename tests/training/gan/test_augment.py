"""ADA augment pipe (1-channel, image+mask stacks, RGB) and the adaptive-p controller."""

from __future__ import annotations

import math

import pytest
import torch

from training.gan.augment import OP_NAMES, RGB_ONLY_OPS, AdaController, AugmentOps, AugmentPipe

GRAY_OPS = [name for name in OP_NAMES if name not in RGB_ONLY_OPS]
GEOMETRIC_OPS = ["xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac"]


def _pipe(*ops: str, p: float = 1.0, color_channels: int | None = None) -> AugmentPipe:
    pipe = AugmentPipe(AugmentOps.only(*ops) if ops else AugmentOps(), color_channels=color_channels)
    pipe.p = p
    return pipe


def _changed(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y - x).abs().flatten(1).amax(dim=1) > 1e-4


def test_p_zero_is_the_exact_identity() -> None:
    x = torch.randn(4, 2, 16, 16)
    assert _pipe(p=0.0)(x) is x


@pytest.mark.parametrize("op", GRAY_OPS)
def test_each_op_alone_changes_a_one_channel_image_when_forced(op: str) -> None:
    x = torch.randn(16, 1, 16, 16)
    y = _pipe(op)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert _changed(x, y).any()


@pytest.mark.parametrize("op", RGB_ONLY_OPS)
def test_rgb_only_ops_change_rgb_and_skip_grayscale(op: str) -> None:
    rgb = torch.randn(16, 3, 8, 8)
    assert _changed(rgb, _pipe(op)(rgb)).any()
    gray = torch.randn(16, 1, 8, 8)
    torch.testing.assert_close(_pipe(op)(gray), gray)


@pytest.mark.parametrize("op", ["brightness", "contrast"])
def test_colour_ops_leave_mask_channels_untouched(op: str) -> None:
    x = torch.randn(16, 2, 16, 16)  # image + mask
    y = _pipe(op, color_channels=1)(x)
    assert _changed(x[:, :1], y[:, :1]).any()
    torch.testing.assert_close(y[:, 1], x[:, 1])


@pytest.mark.parametrize("op", GEOMETRIC_OPS)
def test_geometric_ops_move_image_and_mask_together(op: str) -> None:
    img = torch.randn(8, 1, 16, 16)
    y = _pipe(op, color_channels=1)(torch.cat([img, img], dim=1))
    torch.testing.assert_close(y[:, 0], y[:, 1])


def test_blit_ops_are_exact_dihedral_transforms_and_integer_shifts() -> None:
    x = torch.randn(16, 1, 12, 12)
    y = _pipe("xflip", "rotate90")(x)
    for i in range(len(x)):
        candidates = [torch.rot90(v, k, dims=(1, 2)) for v in (x[i], x[i].flip(2)) for k in range(4)]
        assert min((y[i] - c).abs().max().item() for c in candidates) < 1e-5
    shifted = _pipe("xint")(x)
    for i in range(len(x)):  # an integer shift keeps the pixel values (reflection fills the edge)
        interior = shifted[i, 0, 3:-3, 3:-3].flatten()
        assert all((x[i, 0] - v).abs().min() < 1e-5 for v in interior[:10])


def test_pipe_is_differentiable_and_keeps_channels() -> None:
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = _pipe(p=1.0)(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ada_raises_p_by_the_exact_step_when_d_overfits() -> None:
    ada = AdaController(target=0.6, interval=4, speed_kimg=500)
    batch = 32
    for _ in range(4):
        ada.accumulate(signs_sum=batch * 1.0, count=batch)  # D(real) > 0 everywhere: r_t = 1
    ada.update()
    assert ada.rt == 1.0
    assert ada.p == pytest.approx(batch * 4 / (500 * 1000))
    for _ in range(4):
        ada.accumulate(signs_sum=batch * 0.8, count=batch)
    ada.update()
    assert ada.p == pytest.approx(2 * batch * 4 / (500 * 1000))


def test_ada_lowers_p_and_floors_it_at_zero() -> None:
    ada = AdaController(p=0.0003)
    for _ in range(4):
        ada.accumulate(signs_sum=-8.0, count=32)  # r_t = -0.25 < 0.6
    ada.update()
    assert ada.p == pytest.approx(0.0003 - 128 / 500_000)
    ada.accumulate(signs_sum=0.0, count=128)
    assert ada.update() == 0.0
    assert ada.update() == 0.0  # nothing accumulated: no change


def test_ada_state_round_trips() -> None:
    ada = AdaController()
    ada.accumulate(32.0, 32)
    ada.update()
    ada.accumulate(5.0, 16)
    other = AdaController()
    other.load_state_dict(ada.state_dict())
    assert other.state_dict() == ada.state_dict()
    assert math.isclose(other.update(), ada.update())
