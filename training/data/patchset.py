"""The on-disk format of a patch set (what every model trains on).

A patch set folder::

    PATCHES/
      patchset.json     geometry, mode, seeds, split rule, parent dataset/patch set, counts, provenance
      patches.csv       one PatchRecord per patch
      images/<id>.png   patch_px x patch_px, 8-bit
      masks/<id>.png    0 good, 255 defect, 64 ignore (padding past the image)

``origin`` says where a patch came from: ``real`` (cut from a dataset image), ``pasted``
(defect-pasted augmentation), ``gan``, ``semgan``, ``masked`` (generated), ``line``. Synthetic rows are for
training only; ``source_patch``/``source_group`` name the real defect a pasted patch
carries, so a re-drawn validation split can drop pasted rows that would leak it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from shared.masks import MASK_IGNORE, defect_fraction, defect_pixels
from training.data.table import ManifestError, read_meta, read_rows

PATCHSET_SCHEMA_VERSION = 1
PATCHES_NAME = "patches.csv"
PATCHSET_META_NAME = "patchset.json"


class PatchOrigin(str, Enum):
    """Where a patch's pixels came from."""

    REAL = "real"
    PASTED = "pasted"
    GAN = "gan"
    SEMGAN = "semgan"
    MASKED = "masked"
    LINE = "line"


@dataclass(frozen=True)
class PatchRecord:
    """One patch and what is known about it."""

    id: str
    image: str  # path relative to the patch set folder
    mask: str
    source_image: str  # dataset image id the pixels were cut from (for pasted: the destination)
    group: str
    label: str
    x: int  # tile origin in the source image's frame pixels
    y: int
    crop_px: int  # tile side in frame pixels before resizing
    patch_px: int
    has_defect: bool
    defect_fraction: float  # defect pixels / labelled pixels of the patch mask
    valid_fraction: float  # share of the tile inside the ROI (1.0 = no padding)
    mean_intensity: float
    split: str
    origin: str
    source_patch: str = ""  # pasted: the real defect patch whose defect was copied
    source_group: str = ""
    dest_patch: str = ""  # pasted: the good patch (or image@x,y) it was pasted onto


@dataclass(frozen=True)
class PatchSet:
    """A loaded patch set folder."""

    root: Path
    meta: dict
    records: tuple[PatchRecord, ...]

    def read_image(self, record: PatchRecord) -> np.ndarray:
        path = self.root / record.image
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ManifestError(f"{path}: patch image listed in {PATCHES_NAME} cannot be read")
        return image

    def read_mask(self, record: PatchRecord) -> np.ndarray:
        path = self.root / record.mask
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ManifestError(f"{path}: patch mask listed in {PATCHES_NAME} cannot be read")
        return mask

    def by_id(self) -> dict[str, PatchRecord]:
        return {record.id: record for record in self.records}


def load_patchset(root: Path) -> PatchSet:
    """Open a patch set folder; errors name the file and what was expected."""
    root = Path(root)
    meta = read_meta(
        root / PATCHSET_META_NAME, PATCHSET_SCHEMA_VERSION, "patch set", "create one with `pump-train patches`"
    )
    return PatchSet(root=root, meta=meta, records=tuple(read_rows(root / PATCHES_NAME, PatchRecord)))


def write_patch_pixels(folder: Path, patch_id: str, image: np.ndarray, mask: np.ndarray) -> tuple[str, str]:
    """Write a patch's image and mask PNGs under ``folder``; returns their relative paths."""
    image_rel, mask_rel = f"images/{patch_id}.png", f"masks/{patch_id}.png"
    if not cv2.imwrite(str(folder / image_rel), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {folder / image_rel}")
    if not cv2.imwrite(str(folder / mask_rel), mask, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {folder / mask_rel}")
    return image_rel, mask_rel


def patch_statistics(mask: np.ndarray, image: np.ndarray) -> tuple[bool, float, float]:
    """(has_defect, defect_fraction, mean_intensity over labelled pixels) of one patch."""
    labelled = mask != MASK_IGNORE
    gray = image if image.ndim == 2 else image.mean(axis=2)
    mean = float(gray[labelled].mean()) if labelled.any() else float(gray.mean())
    return defect_pixels(mask) > 0, defect_fraction(mask), mean
