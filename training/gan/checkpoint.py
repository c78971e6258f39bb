"""GAN checkpoints: state dicts + config, written atomically, read back with ``weights_only=True``.

One file per snapshot, ``<run>/checkpoints/snapshot-<images>.pt`` (images trained on so far,
zero-padded so names sort by progress), holding plain tensors, numbers and strings only::

    {"format": 1, "family": "stylegan2", "config": {...}, "kimg": 12.3,
     "G": state_dict, "D": state_dict, "G_ema": state_dict,
     "opt_G": state_dict, "opt_D": state_dict,
     "augment": AdaController.state_dict() or {}, "loss": loss.state_dict(),
     "progress": {"images": ..., "step": ..., "tick": ...}, "rng": capture_rng(...)}

Never a pickled module: a checkpoint loads into modules the family registry builds from the
saved config. :func:`load_generator` is what sampling, metrics and export use;
:func:`load_checkpoint` is what ``--resume`` uses.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.gan.families import get_family

CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^snapshot-(\d+)\.pt$")


def checkpoint_name(images: int) -> str:
    """File name of the snapshot taken after ``images`` training images."""
    return f"snapshot-{int(images):012d}.pt"


def capture_rng(rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Torch (CPU and CUDA) and numpy generator states, as weights_only-loadable values."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if rng is not None:
        state["numpy"] = rng.bit_generator.state
    return state


def restore_rng(state: dict[str, Any], rng: np.random.Generator | None = None) -> None:
    """Undo :func:`capture_rng` (``rng`` gets its saved numpy state in place)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if rng is not None and "numpy" in state:
        rng.bit_generator.state = state["numpy"]


def _cpu(value: Any) -> Any:
    """Tensors moved to the CPU, recursively (so a CUDA run's checkpoint loads anywhere)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cpu(item) for item in value)
    return value


def save_checkpoint(
    *,
    path: Path,
    family: str,
    config: dict[str, Any],
    G: nn.Module,
    D: nn.Module,
    G_ema: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    augment_state: dict[str, Any],
    loss_state: dict[str, Any],
    progress: dict[str, Any],
    rng: dict[str, Any],
) -> Path:
    """Write one checkpoint atomically (temporary sibling, then rename); returns ``path``.

    ``config`` is the family config as JSON-able data (``cfg.model_dump(mode="json")``);
    ``progress`` holds at least ``images`` (trained so far); ``kimg`` is derived from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "family": family,
        "config": dict(config),
        "kimg": float(progress["images"]) / 1000.0,
        "G": G.state_dict(),
        "D": D.state_dict(),
        "G_ema": G_ema.state_dict(),
        "opt_G": opt_G.state_dict(),
        "opt_D": opt_D.state_dict(),
        "augment": dict(augment_state),
        "loss": dict(loss_state),
        "progress": dict(progress),
        "rng": rng,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(_cpu(payload), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(images, path) of every snapshot of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def find_checkpoint(run_dir: Path, kimg: float | None = None) -> Path:
    """The latest snapshot (``kimg=None``) or the one closest to ``kimg`` (within 0.5 kimg)."""
    found = list_checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir}: no GAN checkpoints in {CHECKPOINT_DIR}/ (is this a `gan train` run?)")
    if kimg is None:
        return found[-1][1]
    images, path = min(found, key=lambda item: abs(item[0] - kimg * 1000))
    if abs(images - kimg * 1000) > 500:
        available = ", ".join(f"{i / 1000:g}" for i, _ in found)
        raise FileNotFoundError(f"{run_dir}: no checkpoint at {kimg:g} kimg; available kimg: {available}")
    return path


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's contents (``weights_only=True``: tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    data = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "family" not in data:
        raise ValueError(f"{path}: not a GAN checkpoint of format {CHECKPOINT_FORMAT}")
    return data


@dataclass(frozen=True)
class LoadedGenerator:
    """A trained run's EMA generator, ready to sample (eval mode, no gradients needed)."""

    generator: nn.Module
    family: str
    config: Any
    kimg: float
    checkpoint: Path
    run_dir: Path


def load_generator(run_dir: Path, *, kimg: float | None = None, device: str | torch.device = "cpu") -> LoadedGenerator:
    """G_ema of ``run_dir``'s latest snapshot (or the one at ``kimg``), built by its family from the saved config."""
    run_dir = Path(run_dir)
    path = find_checkpoint(run_dir, kimg)
    data = load_checkpoint(path, device="cpu")
    family = get_family(data["family"])
    config = family.parse_config(data["config"])
    G, _ = family.build(config)
    G.load_state_dict(data["G_ema"])
    G = G.to(device).eval().requires_grad_(False)
    return LoadedGenerator(
        generator=G, family=family.key, config=config, kimg=float(data["kimg"]), checkpoint=path, run_dir=run_dir
    )
