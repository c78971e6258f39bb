"""Patch sets as in-memory arrays for training and evaluation.

A 128 px gray patch is 16 KiB, so even the thesis's 42K patches fit in memory; reading
the PNGs once and sampling batches from arrays keeps the training loop free of I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from shared.masks import MASK_DEFECT
from training.data.patchset import PatchRecord, PatchSet


@dataclass(frozen=True)
class PatchArrays:
    """Images (N, H, W[, C]) uint8, masks (N, H, W) uint8 and their manifest rows."""

    images: np.ndarray
    masks: np.ndarray
    records: tuple[PatchRecord, ...]

    @property
    def labels(self) -> np.ndarray:
        """Patch-level defect labels (1 = defect)."""
        return np.array([record.has_defect for record in self.records], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, indices: Sequence[int] | np.ndarray) -> PatchArrays:
        indices = np.asarray(indices, dtype=np.int64)
        return PatchArrays(self.images[indices], self.masks[indices], tuple(self.records[i] for i in indices))

    @staticmethod
    def concat(parts: Sequence[PatchArrays]) -> PatchArrays:
        parts = [part for part in parts if len(part)]
        if not parts:
            raise ValueError("no patches to concatenate")
        return PatchArrays(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.masks for p in parts]),
            tuple(record for p in parts for record in p.records),
        )


def load_arrays(patchset: PatchSet, records: Sequence[PatchRecord], progress: bool = False) -> PatchArrays:
    """Read the given rows' PNGs into arrays."""
    if not records:
        raise ValueError(f"{patchset.root}: no patches selected")
    first = patchset.read_image(records[0])
    images = np.empty((len(records), *first.shape), dtype=np.uint8)
    masks = np.empty((len(records), *first.shape[:2]), dtype=np.uint8)
    for index, record in enumerate(
        tqdm(records, desc=f"read {patchset.root.name}", unit="patch", disable=not progress)
    ):
        images[index] = patchset.read_image(record)
        masks[index] = patchset.read_mask(record)
    return PatchArrays(images, masks, tuple(records))


def defect_targets(masks: np.ndarray) -> np.ndarray:
    """Per-pixel defect targets as float32 (1 defect, 0 otherwise; ignore handled by the loss)."""
    return (masks == MASK_DEFECT).astype(np.float32)
