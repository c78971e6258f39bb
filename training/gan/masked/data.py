"""What the mask-guided generator trains on: real defect pairs and good backgrounds of the training split.

* **Pairs**: the training split's real defective patches with a defect pixel in their mask
  (:func:`training.gan.data.select_records`: train-split groups only, labelled line defects
  included; ``--pasted`` pools add pasted copies of train-group defects, whose masks are exact).
* **Backgrounds**: good real patches of training-split groups. For the unpaired half of each
  step a pair's mask is moved (:mod:`.masks`) onto one of them. On a part of fixed structure
  (``dataset.fixed_structure``, e.g. the pump line) a background must come from near the defect's
  own tile position (within ``LOCATION_TOLERANCE_PX`` frame px, the paste command's default) and the
  mask is not turned; elsewhere any background and any turn will do.

No validation or test group is read. ``data.json`` records the counts and the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from shared.masks import MASK_DEFECT
from training.data.patchset import PatchOrigin, load_patchset
from training.data.splits import TRAIN
from training.gan.data import data_fingerprint, resize_square, select_records, to_gray

LOCATION_TOLERANCE_PX = 24  # PasteOptions.location_tolerance_px's default


@dataclass(frozen=True)
class MaskedData:
    """Pairs, backgrounds and which backgrounds each pair's mask may move to."""

    images: np.ndarray  # uint8 [N, R, R] real defective patches
    masks: np.ndarray  # uint8 {0, 1} [N, R, R]
    backgrounds: np.ndarray  # uint8 [M, R, R] good training patches
    near: list[np.ndarray]  # per pair: background indices its mask may move to
    fixed_structure: bool
    patches: Path
    pasted_pools: tuple[Path, ...]
    counts: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    pair_records: tuple = ()  # PatchRecord of each pair (sampling names its donor)
    background_records: tuple = ()  # PatchRecord of each background

    def loop_input(self) -> dict[str, np.ndarray]:
        offsets = np.cumsum([0, *(len(n) for n in self.near)])
        return {
            "images": self.images,
            "masks": self.masks,
            "backgrounds": self.backgrounds,
            "near_index": np.concatenate(self.near) if self.near else np.zeros(0, np.int64),
            "near_offsets": offsets.astype(np.int64),
            "fixed_structure": np.array(self.fixed_structure),
        }

    def describe(self) -> dict:
        return {
            "patches": str(self.patches.resolve()),
            "pasted_pools": [str(p.resolve()) for p in self.pasted_pools],
            "split": TRAIN,
            "rule": "pairs: train-split defective patches with a defect pixel (+ pasted train-group copies); "
            "backgrounds: good train-split patches; no val/test group",
            "placement": f"fixed: backgrounds within {LOCATION_TOLERANCE_PX} px of the defect's tile, no turns"
            if self.fixed_structure
            else "free: any background, dihedral turns",
            "counts": dict(self.counts),
            "resolution": int(self.images.shape[-1]),
            "fingerprint": self.fingerprint,
        }


def binary_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """uint8 {0, 1}: defect pixels (255), nearest-resized to ``size``."""
    defect = (mask == MASK_DEFECT).astype(np.uint8)
    if defect.shape[0] != size:
        defect = cv2.resize(defect, (size, size), interpolation=cv2.INTER_NEAREST)
    return defect


def near_backgrounds(defects: list, goods: list, fixed: bool, tolerance_px: int = LOCATION_TOLERANCE_PX) -> list:
    """Per defect row: the good rows (indices) its mask may move to (fixed: near its position; a defect with
    none near falls back to every background)."""
    every = np.arange(len(goods), dtype=np.int64)
    if not fixed:
        return [every for _ in defects]
    xy = np.array([(g.x, g.y) for g in goods], dtype=np.int64).reshape(-1, 2)
    out = []
    for d in defects:
        close = np.flatnonzero((np.abs(xy[:, 0] - d.x) <= tolerance_px) & (np.abs(xy[:, 1] - d.y) <= tolerance_px))
        out.append(close.astype(np.int64) if len(close) else every)
    return out


def load_masked_data(
    patches: Path, *, resolution: int, pasted: tuple[Path, ...] = (), options: dict | None = None, seed: int = 0
) -> MaskedData:
    """Read pairs and backgrounds at ``resolution`` px (``options``: none yet; ``seed``: unused, draws are per step)."""
    patchset = load_patchset(patches)
    pools = [load_patchset(p) for p in pasted]
    chosen, counts = select_records(patchset, pools)
    chosen = [(s, r) for s, r in chosen if r.defect_fraction > 0]
    if not chosen:
        raise ValueError(f"{patches}: no defective training-split patch with a mask to train the masked generator on")
    goods = [
        r
        for r in patchset.records
        if r.origin == PatchOrigin.REAL.value and r.split == TRAIN and not r.has_defect and r.valid_fraction >= 1.0
    ]
    if not goods:
        raise ValueError(f"{patches}: no good training-split patch to use as a background")
    fixed = bool(patchset.meta.get("dataset", {}).get("fixed_structure"))
    images = np.stack([resize_square(to_gray(s.read_image(r)), resolution) for s, r in chosen])
    masks = np.stack([binary_mask(s.read_mask(r), resolution) for s, r in chosen])
    backgrounds = np.stack([resize_square(to_gray(patchset.read_image(r)), resolution) for r in goods])
    near = near_backgrounds([r for _, r in chosen], goods, fixed)
    counts.update(pairs=len(chosen), backgrounds=len(goods), pairs_with_no_near_background=0)
    if fixed:
        counts["pairs_with_no_near_background"] = int(sum(len(n) == len(goods) for n in near))
    return MaskedData(
        images=images,
        masks=masks,
        backgrounds=backgrounds,
        near=near,
        fixed_structure=fixed,
        patches=Path(patches),
        pasted_pools=tuple(Path(p) for p in pasted),
        counts=counts,
        fingerprint=data_fingerprint(
            patchset, {"p:": chosen, "b:": [(patchset, r) for r in goods]}, [images, masks, backgrounds]
        ),
        pair_records=tuple(r for _, r in chosen),
        background_records=tuple(goods),
    )
