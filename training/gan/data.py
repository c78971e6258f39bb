"""What a GAN trains on: the training split's defective patches plus their defect-pasted copies.

The thesis's recipe (without pasted copies the GAN ignores the rare defects), with one hard
rule: **no test-split group reaches the GAN** — a GAN trained on test content leaks it into
every synthetic pool made from it. The validation split is left out too: the classifier's
threshold is tuned on it, so a pool that had seen it would tune on its own training data.

Selected rows of ``PATCHES`` (split as written in ``patches.csv``, never re-drawn):

* ``origin=real``, ``split=train``, ``has_defect``;
* ``origin=pasted`` with ``has_defect`` whose ``source_group`` is a training group — from
  ``PATCHES`` itself and from any ``--pasted`` pool made from it (`pump-train paste`). A pasted
  row whose source group is validation or test (or unknown) is dropped and counted.

Images become grayscale (BGR -> gray), area-resized (or linearly up-sized) to the GAN's
resolution, uint8 [N, res, res]. :func:`GanData.describe` is what the run folder records.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from training.data.library import labelled_line_records
from training.data.patchset import PatchOrigin, PatchRecord, PatchSet, load_patchset
from training.data.splits import TRAIN


@dataclass(frozen=True)
class GanData:
    """The GAN's training images and where they came from."""

    images: np.ndarray  # uint8 [N, res, res]
    patches: Path
    pasted_pools: tuple[Path, ...]
    counts: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    pair_images: np.ndarray | None = None  # SemanticGAN: labelled real images uint8 [M, res, res]
    pair_masks: np.ndarray | None = None  # ... and their binary defect masks uint8 {0, 1} [M, res, res]
    rules: dict = field(default_factory=dict)  # how the labelled/unlabelled pools were chosen

    def loop_input(self) -> np.ndarray | dict[str, np.ndarray]:
        """What ``train_gan`` samples from: the images, or (labelled pairs present) all three arrays."""
        if self.pair_masks is None:
            return self.images
        return {"images": self.images, "pair_images": self.pair_images, "pair_masks": self.pair_masks}

    def describe(self) -> dict:
        """The run folder's record of the data (``data.json``)."""
        return {
            "patches": str(self.patches.resolve()),
            "pasted_pools": [str(p.resolve()) for p in self.pasted_pools],
            "split": TRAIN,
            "rule": "real train-split defective patches + pasted copies of train-group defects; no val/test group",
            "counts": dict(self.counts),
            "resolution": int(self.images.shape[-1]),
            "fingerprint": self.fingerprint,
            **({"labelled_pairs": int(len(self.pair_masks)), **self.rules} if self.pair_masks is not None else {}),
        }


def to_gray(image: np.ndarray) -> np.ndarray:
    """A uint8 patch as one gray channel (BGR/BGRA converted, 16-bit scaled)."""
    if image.dtype != np.uint8:
        image = (image.astype(np.float32) * (255.0 / max(float(np.iinfo(image.dtype).max), 1.0))).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return image


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` at ``size`` x ``size`` (area filter down, linear up)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrink = image.shape[0] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def select_records(patchset: PatchSet, pools: list[PatchSet]) -> tuple[list[tuple[PatchSet, PatchRecord]], dict]:
    """The rows the GAN may see (see the module docstring) and the counts of what was kept/dropped."""
    real = [r for r in patchset.records if r.origin == PatchOrigin.REAL.value]
    split_of_group = {r.group: r.split for r in real}
    train_groups = {g for g, s in split_of_group.items() if s == TRAIN}
    chosen = [(patchset, r) for r in real if r.split == TRAIN and r.has_defect]
    line = [(patchset, r) for r in labelled_line_records(patchset) if r.has_defect]
    counts = {"real_train_defective": len(chosen), "pasted": 0, "pasted_dropped_not_train_group": 0}
    counts["line_labelled_defective"] = len(line)
    chosen += line
    counts["train_groups"] = len({r.group for _, r in chosen})
    for source in [patchset, *pools]:
        for r in source.records:
            if r.origin != PatchOrigin.PASTED.value or not r.has_defect:
                continue
            if r.source_group in train_groups:
                chosen.append((source, r))
                counts["pasted"] += 1
            else:
                counts["pasted_dropped_not_train_group"] += 1
    counts["total"] = len(chosen)
    return chosen, counts


def load_gan_data(patches: Path, *, resolution: int, pasted: tuple[Path, ...] = ()) -> GanData:
    """Read the GAN's images from ``patches`` (and ``pasted`` pools) at ``resolution`` px."""
    patchset = load_patchset(patches)
    pools = [load_patchset(p) for p in pasted]
    chosen, counts = select_records(patchset, pools)
    if not chosen:
        raise ValueError(f"{patches}: no defective training-split patches to train a GAN on")
    images = np.stack([resize_square(to_gray(source.read_image(r)), resolution) for source, r in chosen])
    return GanData(
        images=images,
        patches=Path(patches),
        pasted_pools=tuple(Path(p) for p in pasted),
        counts=counts,
        fingerprint=data_fingerprint(patchset, {"": chosen}, [images]),
    )


def data_fingerprint(
    patchset: PatchSet, rows: dict[str, list[tuple[PatchSet, PatchRecord]]], arrays: list[np.ndarray]
) -> str:
    """sha256 over the dataset's fingerprint, every chosen row (``tag`` + pool/id) and the pixel arrays."""
    digest = hashlib.sha256()
    digest.update(str(patchset.meta.get("dataset", {}).get("fingerprint", "")).encode())
    for tag, chosen in rows.items():
        for source, r in chosen:
            digest.update(f"{tag}{source.root.name}/{r.id}\n".encode())
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()


RUN_DATA_NAME = "data.json"  # in a GAN run folder: which patches, pools and split the run trained on


def read_run_data(run_dir: Path) -> dict:
    """A run folder's ``data.json`` ({} for a folder without one, e.g. a run made elsewhere)."""
    path = Path(run_dir) / RUN_DATA_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
