"""Defect statistics of full-frame masks as the patch pipeline will see them.

The thesis data has a known shape at patch level (about 5% of random 128-px patches
show a defect, and a defective patch is only ~2-3% defect pixels); the synthetic set is
tuned to match it. The numbers are measured with the same geometry and mask resizing
as ``pump-train patches`` (:mod:`shared.tiling`, :mod:`shared.patching`), not a copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from shared.masks import MASK_DEFECT, MASK_IGNORE
from shared.patching import extract_mask_patches
from shared.tiling import center_roi, random_tiles


@dataclass(frozen=True)
class PatchStatistics:
    """Defect statistics over random patches of a set of frames."""

    frames: int
    patches: int
    defective_patches: int
    defective_patch_share: float  # share of patches with >= 1 defect pixel
    mean_defect_fraction: float  # mean share of defect pixels inside defective patches
    median_defect_fraction: float
    full_frame_defect_share: float  # defect pixels / all pixels of the full frames
    crop_px: int
    tile_px: int
    patch_px: int
    patches_per_frame: int

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """Readable multi-line summary."""
        rows = [
            ("frames", f"{self.frames}"),
            ("geometry", f"{self.crop_px}px centre crop, {self.tile_px}px tiles -> {self.patch_px}px patches"),
            ("patches", f"{self.patches} ({self.patches_per_frame} per frame)"),
            ("defective patches", f"{self.defective_patches} ({self.defective_patch_share:.2%})"),
            (
                "defect px in defective patches",
                f"mean {self.mean_defect_fraction:.2%}, median {self.median_defect_fraction:.2%}",
            ),
            ("defect px at full-frame scale", f"{self.full_frame_defect_share:.4%}"),
        ]
        return "\n".join(f"{name:<30}  {value}" for name, value in rows)

    def format(self) -> str:
        """Same as :meth:`table`."""
        return self.table()


def random_patch_statistics(
    masks: Iterable[np.ndarray],
    seed: int,
    *,
    crop_px: int = 1920,
    tile_px: int = 256,
    patch_px: int = 128,
    patches_per_frame: int = 64,
) -> PatchStatistics:
    """Cut ``patches_per_frame`` random tiles from each mask's centre crop and measure defects.

    Masks are full frames (0 good, 255 defect). Tiles are resized to ``patch_px`` with
    nearest interpolation, exactly as mask patches are made for training. Fractions are
    of labelled pixels (padding past a small frame's ROI is ignored).
    """
    rng = np.random.default_rng(seed)
    frames = 0
    frame_pixels = 0
    frame_defect_pixels = 0
    fractions: list[np.ndarray] = []
    patches = 0
    for mask in masks:
        frames += 1
        frame_pixels += mask.size
        frame_defect_pixels += int(np.count_nonzero(mask == MASK_DEFECT))
        height, width = mask.shape[:2]
        roi = center_roi(width, height, crop_px, crop_px)
        boxes = random_tiles(roi, tile_px, patches_per_frame, rng)
        batch = extract_mask_patches(mask, boxes, roi, patch_px)
        patches += len(batch)
        defect = np.count_nonzero(batch == MASK_DEFECT, axis=(1, 2))
        labelled = batch[0].size - np.count_nonzero(batch == MASK_IGNORE, axis=(1, 2))
        hit = defect > 0
        fractions.append(defect[hit] / np.maximum(labelled[hit], 1))
    defective = np.concatenate(fractions) if fractions else np.zeros(0)
    return PatchStatistics(
        frames=frames,
        patches=patches,
        defective_patches=int(len(defective)),
        defective_patch_share=len(defective) / patches if patches else 0.0,
        mean_defect_fraction=float(defective.mean()) if len(defective) else 0.0,
        median_defect_fraction=float(np.median(defective)) if len(defective) else 0.0,
        full_frame_defect_share=frame_defect_pixels / frame_pixels if frame_pixels else 0.0,
        crop_px=crop_px,
        tile_px=tile_px,
        patch_px=patch_px,
        patches_per_frame=patches_per_frame,
    )
