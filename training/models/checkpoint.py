"""Model checkpoints: ``state_dict`` + the spec to rebuild the module + what it was trained on.

Saved with ``torch.save`` as a dict of tensors and plain values and loaded with
``weights_only=True``, so a checkpoint cannot execute code (no pickled modules).
A training run folder holds ``model.pt`` (best weights) beside its config and metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.models.classifier import ClassifierSpec, create_classifier
from training.models.segmenter import SegmenterSpec, create_segmenter

CHECKPOINT_NAME = "model.pt"
TASKS = ("classifier", "segmenter")


@dataclass
class Checkpoint:
    """A trained model and the facts an export needs."""

    task: str  # "classifier" | "segmenter"
    spec: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    threshold: float = 0.5  # decision threshold on the sigmoid output (tuned on validation)
    geometry: dict[str, int] = field(default_factory=dict)  # crop_px, tile_px, patch_px, min_overlap_px
    data_fingerprint: str = ""
    class_names: list[str] = field(default_factory=lambda: ["good", "defect"])
    metrics: dict[str, float] = field(default_factory=dict)  # test metrics
    name: str = ""
    version: str = "0.1.0"

    def build(self) -> nn.Module:
        """The module with the trained weights, in eval mode."""
        if self.task == "classifier":
            model = create_classifier(ClassifierSpec(**self.spec))
        elif self.task == "segmenter":
            model = create_segmenter(SegmenterSpec(**self.spec))
        else:
            raise ValueError(f"unknown task {self.task!r}; expected one of {TASKS}")
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = {key: getattr(checkpoint, key) for key in Checkpoint.__dataclass_fields__}
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> Checkpoint:
    """Load safely (``weights_only=True``); a run folder may be given instead of the file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (train a model first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: not a loadable checkpoint ({error})") from None
    missing = [key for key in ("task", "spec", "state_dict") if key not in payload]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing}")
    return Checkpoint(**{key: payload[key] for key in Checkpoint.__dataclass_fields__ if key in payload})
