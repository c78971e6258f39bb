"""The battery every exportable model family runs (SMP's ``BaseModelTester``, house style 19).

A family subclasses :class:`ModelContract` in a ``test_*.py`` module and provides a
class-scoped ``spec`` fixture (parametrised over its registered presets at a tiny size) and
:meth:`build`; each spec's module is built once per class and copied where a test changes it. The
battery: forward and backward on a tiny batch, a checkpoint round trip that gives the same
outputs, and ONNX export whose ONNX Runtime outputs match eager PyTorch (the export's own
parity check). A GAN family subclasses it for its generator: override :meth:`make_input`
(latents instead of patches), :meth:`output_shape` and :meth:`round_trip` (its checkpoint
holds G, D and G_ema).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from training.export.onnx_export import _export_onnx, _parity
from training.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

TINY_BATCH = 2
TINY_PX = 32


class ModelContract:
    """Subclass with a ``spec`` fixture and ``task``; the tests below run for every spec."""

    task: str = ""  # the checkpoint's task
    opset: int = 17
    atol: float = 1e-4

    def build(self, spec: Any) -> nn.Module:
        raise NotImplementedError

    def make_input(self, spec: Any, batch: int = TINY_BATCH) -> torch.Tensor:
        """float32 NCHW in [0, 1], the exported models' input contract."""
        generator = torch.Generator().manual_seed(0)
        return torch.rand(batch, spec.in_channels, spec.input_px, spec.input_px, generator=generator)

    def output_shape(self, spec: Any, batch: int) -> tuple[int, ...]:
        raise NotImplementedError

    def round_trip(self, module: nn.Module, spec: Any, path: Path) -> nn.Module:
        """Save as a training run's checkpoint (state_dict + spec) and build it again."""
        save_checkpoint(path, Checkpoint(task=self.task, spec=spec.to_dict(), state_dict=module.state_dict()))
        return load_checkpoint(path).build()

    @pytest.fixture(scope="class")
    def built(self, spec) -> nn.Module:
        """The spec's module, freshly initialised with a fixed seed, in eval mode (do not modify)."""
        torch.manual_seed(0)
        return self.build(spec).eval()

    def test_forward_and_backward_on_a_tiny_batch(self, spec, built):
        module = copy.deepcopy(built).train()
        output = module(self.make_input(spec))
        assert tuple(output.shape) == self.output_shape(spec, TINY_BATCH)
        output.float().square().mean().backward()
        missing = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"parameters without a gradient: {missing[:5]}"
        assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)

    def test_checkpoint_round_trip_gives_the_same_outputs(self, spec, built, tmp_path: Path):
        rebuilt = self.round_trip(built, spec, tmp_path / "model.pt").eval()
        x = self.make_input(spec)
        with torch.inference_mode():
            assert torch.equal(built(x), rebuilt(x))

    def test_onnx_export_matches_pytorch(self, spec, built, tmp_path: Path):
        module = built
        samples = self.make_input(spec, batch=3).numpy().astype(np.float32)
        path = tmp_path / "model.onnx"
        _export_onnx(module, path, torch.from_numpy(samples[:2]), self.opset)
        checks = _parity(module, path, samples, self.atol)  # raises ExportError beyond atol
        assert [check.batch_size for check in checks] == [3, 1], "a batch larger than the traced one, and one"
