"""What every training command shares: the schedule flags, batches, augmentation, devices."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Schedule:
    """Iteration-based schedule: a randomly sampled batch per iteration (thesis §3.3.2)."""

    iterations: int = 2000
    val_every: int = 200
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # 0 = torch's default

    def __post_init__(self) -> None:
        if self.iterations <= 0 or self.val_every <= 0 or self.batch_size <= 0:
            raise ValueError(f"iterations, val_every and batch_size must be positive: {self}")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def augment_flips(images: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator):
    """Random horizontal/vertical flips per sample (the only transforms that keep pasted labels honest)."""
    flip_h = rng.random(len(images)) < 0.5
    flip_v = rng.random(len(images)) < 0.5
    images = images.copy()
    images[flip_h] = images[flip_h, :, ::-1]
    images[flip_v] = images[flip_v, ::-1]
    if masks is not None:
        masks = masks.copy()
        masks[flip_h] = masks[flip_h, :, ::-1]
        masks[flip_v] = masks[flip_v, ::-1]
    return images, masks


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W[, C]) -> float32 NCHW in [0, 1], the exported models' input contract."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32) / 255.0
    return tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)


@torch.inference_mode()
def predict(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Sigmoid outputs for all images, in batches."""
    model.eval()
    outputs = [
        torch.sigmoid(model(to_tensor(images[i : i + batch_size], device))).cpu().numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs)


class MetricsLog:
    """Append-only JSONL of training statistics (`report(name, value)` style, namespaced keys)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.started = time.perf_counter()

    def write(self, **values: float) -> None:
        record = {"seconds": round(time.perf_counter() - self.started, 2), **values}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    elif os.environ.get("OMP_NUM_THREADS") is None:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
