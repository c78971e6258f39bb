"""A bilinear ``grid_sample`` that is differentiable twice w.r.t. its input (for R1 through ADA).

R1 needs d/dθ ‖∂D(aug(x))/∂x‖², i.e. the derivative of grid_sample's *backward* w.r.t. the
incoming gradient. PyTorch 2.0-2.x (issue pytorch/pytorch#34704) raised "derivative for
aten::grid_sampler_2d_backward is not implemented"; newer releases (the 2.14 in this venv) ship
a formula. This op does not depend on which: for a fixed grid, sampling is linear in the input,

    y = A x,    ∂L/∂x = Aᵀ g    (g = ∂L/∂y, computed by aten.grid_sampler_2d_backward)

and the backward of ``g -> Aᵀ g`` applied to a vector v is ``A v`` — grid_sample again with the
same grid. So two autograd Functions call each other: ``_Sample`` (forward A, backward Aᵀ via
``_SampleAdjoint``) and ``_SampleAdjoint`` (forward Aᵀ, backward A via ``_Sample``), which makes
every order of derivative w.r.t. the input exact. The grid gets no gradient: in ADA it is a
random transform, not a learned quantity. Written from that derivation; checked with
``gradcheck``/``gradgradcheck`` in tests/training/gan.

Bilinear interpolation, ``align_corners=False``; padding 'zeros', 'border' or 'reflection'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}
BILINEAR = 0


class _Sample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: torch.Tensor, padding_mode: str) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x, grid)
        ctx.padding_mode = padding_mode
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: ANN001, ANN205
        x, grid = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _SampleAdjoint.apply(grad_out, x, grid, ctx.padding_mode)
        return grad_x, None, None


class _SampleAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_out: torch.Tensor, x: torch.Tensor, grid: torch.Tensor, padding_mode: str):  # noqa: ANN001, ANN205
        ctx.save_for_backward(grid)
        ctx.padding_mode = padding_mode
        grad_x, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_out, x, grid, BILINEAR, PADDING_MODES[padding_mode], False, [True, False]
        )
        return grad_x

    @staticmethod
    def backward(ctx, grad_grad_x: torch.Tensor):  # noqa: ANN001, ANN205
        (grid,) = ctx.saved_tensors
        grad_grad_out = None
        if ctx.needs_input_grad[0]:
            grad_grad_out = _Sample.apply(grad_grad_x, grid, ctx.padding_mode)
        return grad_grad_out, None, None, None


def grid_sample(x: torch.Tensor, grid: torch.Tensor, padding_mode: str = "reflection") -> torch.Tensor:
    """Bilinear ``F.grid_sample(x, grid, padding_mode, align_corners=False)``, twice differentiable in ``x``.

    ``grid`` [N, H', W', 2] is treated as a constant (no gradient flows to it).
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"unknown padding_mode {padding_mode!r}; valid: {sorted(PADDING_MODES)}")
    return _Sample.apply(x, grid.detach(), padding_mode)
