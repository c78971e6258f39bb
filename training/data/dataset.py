"""The one on-disk format for full images and their defect masks.

A dataset folder::

    DATASET/
      dataset.json        what it is: kind, source, options used, classes, fingerprint, provenance
      manifest.csv        one ImageRecord per image
      import_report.json  every decision the importer took (skipped files, mask clean-up, groups)
      images/<id>.png     8-bit, gray (or BGR when imported with --color keep)
      masks/<id>.png      8-bit, 0 = good, 255 = defect (binary; see shared.masks)

Images of one physical part share a ``group`` so splits never separate them.
``split`` is the split the source declared (``train``/``test``) or empty.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.data.table import ManifestError, read_meta, read_rows

DATASET_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.csv"
META_NAME = "dataset.json"
REPORT_NAME = "import_report.json"


@dataclass(frozen=True)
class ImageRecord:
    """One full image of a dataset and its mask."""

    id: str
    image: str  # path relative to the dataset folder
    mask: str
    width: int
    height: int
    channels: int
    split: str  # declared by the source: "train", "test" or "" (none)
    group: str  # physical part / tile region; splits keep a group together
    label: str  # image class ("Crack", "good", ...) used to stratify splits
    source: str  # original file, relative to the import source
    image_sha256: str
    mask_sha256: str
    defect_pixels: int


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset folder: its metadata and image records."""

    root: Path
    meta: dict
    records: tuple[ImageRecord, ...]

    @property
    def fingerprint(self) -> str:
        """Content hash over ids and file checksums (stable across copies of the folder)."""
        return str(self.meta["fingerprint"])

    @property
    def fixed_structure(self) -> bool:
        """Whether every image shows the same part in the same place (enables location-true pasting)."""
        return bool(self.meta.get("fixed_structure", False))

    def read_image(self, record: ImageRecord) -> np.ndarray:
        """The stored 8-bit image (gray (H, W) or BGR (H, W, 3))."""
        path = self.root / record.image
        flag = cv2.IMREAD_GRAYSCALE if record.channels == 1 else cv2.IMREAD_COLOR
        image = cv2.imread(str(path), flag)
        if image is None:
            raise ManifestError(f"{path}: image listed in {MANIFEST_NAME} cannot be read")
        return image

    def read_mask(self, record: ImageRecord) -> np.ndarray:
        """The stored binary mask (H, W) uint8 with values 0/255."""
        path = self.root / record.mask
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ManifestError(f"{path}: mask listed in {MANIFEST_NAME} cannot be read")
        return mask


def dataset_fingerprint(records: list[ImageRecord] | tuple[ImageRecord, ...]) -> str:
    """sha256 over sorted (id, image sha, mask sha): identifies the data, not the folder."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.id):
        digest.update(f"{record.id}\0{record.image_sha256}\0{record.mask_sha256}\n".encode())
    return digest.hexdigest()


def load_dataset(root: Path) -> Dataset:
    """Open a dataset folder; errors name the file and what was expected."""
    root = Path(root)
    meta = read_meta(root / META_NAME, DATASET_SCHEMA_VERSION, "dataset folder", "create one with `pump-train import`")
    records = tuple(read_rows(root / MANIFEST_NAME, ImageRecord))
    if not records:
        raise ManifestError(f"{root / MANIFEST_NAME}: the dataset has no images")
    return Dataset(root=root, meta=meta, records=records)
