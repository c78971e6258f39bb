"""Where and how a training run computes: device, seeds, threads, precision, tensor layout.

Architecture-blind: the classifier and segmenter loops use it, and so will the GAN loop.
:func:`start_runtime` does the start-up steps in their order (threads, seeds, device) and
returns a :class:`Runtime` that owns the run's numpy generator, places modules and
batches (channels-last) and opens the training forward pass's autocast context.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from shared.pixels import to_model_input

PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (weights, dropout) and return the run's numpy generator (batches, augmentation)."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def set_threads(threads: int) -> None:
    """``threads`` > 0 pins torch's intra-op threads; 0 takes every core unless OMP_NUM_THREADS is set."""
    if threads > 0:
        torch.set_num_threads(threads)
    elif os.environ.get("OMP_NUM_THREADS") is None:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16/AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of a training forward pass (a no-op for fp32).

    ``bf16`` runs convolutions in bfloat16 with fp32 weights; the caller computes the loss in
    fp32. Validation, test scoring and export stay fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {PRECISIONS}")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "--precision bf16 on a CPU without native bfloat16 (AVX512-BF16/AMX) is slower than fp32; "
            "pass --precision fp32",
            RuntimeWarning,
            stacklevel=2,
        )
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W[, C]) -> float32 NCHW in [0, 1], the exported models' input contract.

    The values are :func:`shared.pixels.to_model_input`'s, bit for bit what the edge feeds the
    exported model (a float division on the device may round differently, e.g. CUDA's by reciprocal).
    """
    tensor = torch.from_numpy(to_model_input(images)).to(device=device)
    # channels-last is oneDNN's native layout: ~15 % faster CPU convolutions, same values
    return tensor.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def predict(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Sigmoid outputs for all images, in batches (fp32, eval mode)."""
    model.eval()
    outputs = [
        torch.sigmoid(model(to_tensor(images[i : i + batch_size], device))).cpu().numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs)


@dataclass(frozen=True)
class Runtime:
    """A started run's device, precision and numpy generator."""

    device: torch.device
    precision: str
    rng: np.random.Generator

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context of one training forward pass."""
        return autocast(self.precision, self.device)

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module on the run's device, channels-last (oneDNN's and cuDNN's fast layout)."""
        return module.to(device=self.device, memory_format=torch.channels_last)

    def tensor(self, images: np.ndarray) -> torch.Tensor:
        """A uint8 batch as the models' float input on the run's device."""
        return to_tensor(images, self.device)


def start_runtime(*, seed: int, device: str = "cpu", threads: int = 0, precision: str = "fp32") -> Runtime:
    """Threads, then seeds, then the device: the start-up every training loop shares."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {PRECISIONS}")
    set_threads(threads)
    rng = seed_everything(seed)
    return Runtime(device=resolve_device(device), precision=precision, rng=rng)


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state (names and values, in name order): equal iff the weights are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
