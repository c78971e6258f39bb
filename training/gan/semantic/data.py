"""What a SemanticGAN trains on: labelled real pairs (image + defect mask) and unlabelled real images.

The image GAN's rule holds (``training/gan/data.py``): only training-split groups, never a
validation or test group. Within it:

* **labelled pairs** = the training split's real defective patches with their masks (+ the
  defect-pasted copies of training-group defects from ``--pasted`` pools: their masks are exact).
  ``labelled_fraction`` < 1 keeps the masks of that share of the training groups only (seeded
  draw of groups) — the thesis's half-and-half scenario (§4.3.4), where most patches are unlabelled;
* **unlabelled images** (what D_img sees) = every labelled image, the images of the groups whose
  masks were withheld, plus optionally ``unlabelled_good`` good training patches (random, seeded)
  and the ``origin=line`` patches ingested from the edge (``unlabelled_line``; they belong to no
  split and carry no mask).

Masks become binary at the GAN's resolution: defect pixels (255) -> 1, good and ignore -> 0,
area-resized and thresholded at 0.5 (a defect pixel survives down-scaling where it covers at
least half the output pixel).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from shared.masks import MASK_DEFECT
from training.data.patchset import PatchOrigin, PatchRecord, load_patchset
from training.data.splits import TRAIN
from training.gan.data import GanData, data_fingerprint, resize_square, select_records, to_gray

MASK_THRESHOLD = 0.5  # share of an output pixel that must be defect after area down-scaling


def binary_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A product mask (0 good, 255 defect, 64 ignore) as uint8 {0, 1} at ``size`` px."""
    defect = (mask == MASK_DEFECT).astype(np.float32)
    if defect.shape[0] != size:
        defect = cv2.resize(defect, (size, size), interpolation=cv2.INTER_AREA)
    return (defect >= MASK_THRESHOLD).astype(np.uint8)


def group_of(record: PatchRecord) -> str:
    """The real group a training row stands for (a pasted copy: its source defect's group)."""
    return record.source_group if record.origin == PatchOrigin.PASTED.value else record.group


def load_semantic_data(
    patches: Path,
    *,
    resolution: int,
    pasted: tuple[Path, ...] = (),
    labelled_fraction: float = 1.0,
    unlabelled_good: int = 0,
    unlabelled_line: bool = False,
    seed: int = 0,
) -> GanData:
    """Labelled pairs + unlabelled images of ``patches`` at ``resolution`` px (see the module docstring)."""
    if not 0.0 < labelled_fraction <= 1.0:
        raise ValueError(f"labelled_fraction must be in (0, 1], got {labelled_fraction}")
    patchset = load_patchset(patches)
    pools = [load_patchset(p) for p in pasted]
    chosen, counts = select_records(patchset, pools)
    if not chosen:
        raise ValueError(f"{patches}: no defective training-split patches to train a SemanticGAN on")
    rng = np.random.default_rng([seed, 7])
    groups = sorted({group_of(r) for _, r in chosen})
    keep = max(1, math.ceil(labelled_fraction * len(groups)))
    labelled_groups = set(rng.permutation(groups)[:keep].tolist()) if keep < len(groups) else set(groups)

    # a line patch labelled "defect" without a mask is an image, not a pair
    pair_rows = [(s, r) for s, r in chosen if group_of(r) in labelled_groups and r.defect_fraction > 0]
    image_rows = list(chosen)
    if unlabelled_good:
        good = [
            r for r in patchset.records if r.origin == PatchOrigin.REAL.value and r.split == TRAIN and not r.has_defect
        ]
        picked = rng.permutation(len(good))[:unlabelled_good]
        image_rows += [(patchset, good[i]) for i in sorted(picked)]
        counts["unlabelled_good"] = int(len(picked))
    if unlabelled_line:
        line = [r for r in patchset.records if r.origin == PatchOrigin.LINE.value]
        image_rows += [(patchset, r) for r in line]
        counts["unlabelled_line"] = len(line)
    counts.update(
        labelled_pairs=len(pair_rows),
        labelled_groups=len(labelled_groups),
        unlabelled_only_groups=len(groups) - len(labelled_groups),
        unlabelled_images=len(image_rows),
    )

    def gray(source, record) -> np.ndarray:
        return resize_square(to_gray(source.read_image(record)), resolution)

    images = np.stack([gray(s, r) for s, r in image_rows])
    pair_images = np.stack([gray(s, r) for s, r in pair_rows])
    pair_masks = np.stack([binary_mask(s.read_mask(r), resolution) for s, r in pair_rows])
    return GanData(
        images=images,
        patches=Path(patches),
        pasted_pools=tuple(Path(p) for p in pasted),
        counts=counts,
        fingerprint=data_fingerprint(patchset, {"u:": image_rows, "l:": pair_rows}, [images, pair_masks]),
        pair_images=pair_images,
        pair_masks=pair_masks,
        rules={
            "labelled_fraction": labelled_fraction,
            "labelled_rule": "train-split defective patches (+ pasted train-group copies) of the labelled groups",
            "unlabelled_rule": "labelled images + withheld groups' images + optional good train and line patches",
            "mask_rule": f"defect (255) -> 1, good/ignore -> 0, area-resized to {resolution} px, >= {MASK_THRESHOLD}",
        },
    )


def defect_fraction_statistics(pair_masks: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the labelled pairs' per-image defect fractions (class 1): the distribution loss's target."""
    from training.gan.semantic.distribution import real_statistics

    fractions = pair_masks.reshape(len(pair_masks), -1).mean(axis=1, dtype=np.float64)
    return real_statistics(fractions[:, None])
