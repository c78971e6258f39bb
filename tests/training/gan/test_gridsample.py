"""The double-differentiable grid sample, and R1 through the ADA pipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.gan.augment import AugmentPipe
from training.gan.gridsample import grid_sample
from training.gan.stylegan2.build import build_augment_pipe, build_loss, build_networks
from training.gan.stylegan2.config import StyleGAN2Config


def _grid(n: int, size: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    theta = torch.tensor([[0.9, 0.3, 0.11], [-0.25, 1.1, -0.07]], dtype=dtype).expand(n, 2, 3)
    return F.affine_grid(theta, [n, 1, size, size], align_corners=False)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_forward_is_stock_grid_sample(padding_mode: str) -> None:
    x, grid = torch.randn(2, 3, 7, 7), _grid(2, 7, torch.float32)
    expected = F.grid_sample(x, grid, padding_mode=padding_mode, align_corners=False)
    torch.testing.assert_close(grid_sample(x, grid, padding_mode), expected)


def test_gradcheck_and_gradgradcheck_in_double_precision() -> None:
    x, grid = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True), _grid(2, 5)
    assert torch.autograd.gradcheck(lambda v: grid_sample(v, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda v: grid_sample(v, grid), (x,))


def _r1_grads(sample) -> torch.Tensor:  # noqa: ANN001
    """d/dw ‖∂ sum(tanh(conv(sample(x))))/∂x‖² for a one-layer 'D' with weight w."""
    torch.manual_seed(1)
    x = torch.randn(2, 1, 6, 6, requires_grad=True)
    w = torch.randn(1, 1, 3, 3, requires_grad=True)
    grid = _grid(2, 6, torch.float32)
    out = F.conv2d(sample(x, grid), w).tanh().sum()
    (gx,) = torch.autograd.grad(out, x, create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), w)
    return gw


def test_stock_grid_sample_double_backward_either_fails_or_agrees_with_ours() -> None:
    """PyTorch 2.0-2.x raised here (pytorch#34704), which is why this op exists; newer releases agree."""
    ours = _r1_grads(lambda x, g: grid_sample(x, g))
    try:
        stock = _r1_grads(lambda x, g: F.grid_sample(x, g, padding_mode="reflection", align_corners=False))
    except RuntimeError as error:
        assert "grid_sampler_2d_backward" in str(error)
    else:
        torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-4)
    assert torch.isfinite(ours).all() and ours.abs().sum() > 0


def test_r1_through_the_pipe_at_p1_gives_finite_nonzero_gradients_to_every_weight_of_d() -> None:
    cfg = StyleGAN2Config(resolution=16, z_dim=16, w_dim=16, channel_base=256, channel_max=32, r1_gamma=1.0)
    G, D = build_networks(cfg)
    pipe = build_augment_pipe(cfg)
    pipe.p = 1.0
    loss = build_loss(cfg, G, D, pipe)
    stats = loss.accumulate_gradients("D_reg", torch.randn(4, 1, 16, 16), torch.randn(4, 16), gain=16.0)
    assert stats["Loss/r1_penalty"] > 0
    for name, p in D.named_parameters():
        # ∂D/∂x does not depend on the biases after the minibatch-stddev layer (piecewise-linear net).
        if name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert all(p.grad is None for p in G.parameters())


def test_r1_gradient_passes_through_the_pipe_to_the_unaugmented_real() -> None:
    pipe = AugmentPipe()
    pipe.p = 1.0
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    y = pipe(x)
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    assert g.shape == x.shape and g.requires_grad
