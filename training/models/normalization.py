"""Input normalisation inside the graph, shared by the classifier and the segmenter.

Both models take [0, 1] patches and normalise in ``forward``, so the exported ONNX model
carries it and the edge never has to agree on constants. ``fixed`` subtracts a mean and
divides by a std; ``patch`` standardises each patch by its own mean and spread, so exposure
changes between frames, parts or stations do not shift the input (on Magnetic Tile it was
what lifted the classifier over its learning gate).
"""

from __future__ import annotations

import torch

INPUT_NORMS = ("fixed", "patch")
MIN_PATCH_STD = 0.02  # per-patch normalisation must not blow sensor noise on a flat patch up to full scale


def normalize_input(x: torch.Tensor, mode: str, mean: float, std: float) -> torch.Tensor:
    """``x`` (N, C, H, W) in [0, 1] normalised by ``mode`` (``fixed`` uses ``mean``/``std``)."""
    if mode == "patch":
        centre = x.mean(dim=(2, 3), keepdim=True)
        spread = ((x - centre) ** 2).mean(dim=(2, 3), keepdim=True).sqrt().clamp_min(MIN_PATCH_STD)
        return (x - centre) / spread
    return (x - mean) / std


def check_input_norm(mode: str) -> None:
    if mode not in INPUT_NORMS:
        raise ValueError(f"unknown input_norm {mode!r}; choose {' or '.join(INPUT_NORMS)}")
