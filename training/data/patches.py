"""Cut a dataset's images into 128 px patches (thesis §3.1.1) with group-safe splits.

Geometry comes from :mod:`shared.tiling` / :mod:`shared.patching`, the same functions
the edge runtime tiles frames with. Small images: the center crop keeps what the image
has; a tile that reaches past the ROI is filled by reflection and its mask marked
*ignore* there; tiles with less than ``min_valid_fraction`` real pixels are skipped and
counted in the report.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from enum import Enum
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from shared.config import ConfigBool, GeometryConfig, SeedInt
from shared.patching import extract_mask_patches, extract_patches
from shared.tiling import Roi, TileBox, crop_roi, grid_tiles, random_tiles
from training.data.dataset import Dataset, ImageRecord
from training.data.patchset import (
    PATCHES_NAME,
    PATCHSET_META_NAME,
    PATCHSET_SCHEMA_VERSION,
    PatchOrigin,
    PatchRecord,
    patch_statistics,
    write_patch_pixels,
)
from training.data.splits import TEST, assign_splits, group_labels
from training.data.table import write_rows
from training.outputs import atomic_output_dir, provenance, write_json_atomic


class PatchMode(str, Enum):
    RANDOM = "random"  # the thesis: N random tiles per image
    GRID = "grid"  # full coverage, the edge runtime's tiling


class PatchOptions(BaseModel):
    """How patches are sampled and split."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mode: PatchMode = Field(PatchMode.RANDOM, description="random tiles (thesis) or the edge's full-coverage grid.")
    patches_per_image: int = Field(64, gt=0, le=100_000, description="random mode: tiles drawn per image (thesis: 64).")
    min_valid_fraction: float = Field(
        0.25, gt=0, le=1, description="Skip tiles with a smaller share of real (unpadded) pixels."
    )
    test_fraction: float = Field(
        0.25, ge=0, lt=1, description="Share of groups per class for test when the source declares no split."
    )
    val_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of the non-test groups for validation (thesis: 0.2)."
    )
    use_declared_split: ConfigBool = Field(True, description="Keep a train/test split the source declared (MVTec).")
    split_seed: SeedInt | None = Field(None, description="Seed of the test split (default: the command's seed).")
    val_seed: SeedInt | None = Field(None, description="Seed of the validation split (default: the command's seed).")


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """Per-image generator: adding or removing images never changes another image's patches."""
    digest = hashlib.sha256(image_id.encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def image_roi(record: ImageRecord, geometry: GeometryConfig) -> Roi:
    """The ROI of an image: :func:`shared.tiling.crop_roi`, the edge's rule too."""
    return crop_roi(record.width, record.height, geometry.crop_px)


def tile_boxes(
    record: ImageRecord, geometry: GeometryConfig, options: PatchOptions, seed: int
) -> tuple[Roi, list[TileBox], int]:
    """ROI, kept tile boxes, and how many were skipped as mostly padding."""
    roi = image_roi(record, geometry)
    if options.mode is PatchMode.GRID:
        boxes = list(grid_tiles(roi, geometry.tile_px, geometry.min_overlap_px))
    else:
        drawn = random_tiles(roi, geometry.tile_px, options.patches_per_image, image_rng(seed, record.id))
        boxes = list(dict.fromkeys(drawn))  # small ROIs repeat positions; keep each once
    kept = [box for box in boxes if box.valid_fraction(roi) >= options.min_valid_fraction]
    return roi, kept, len(boxes) - len(kept)


def _splits(dataset: Dataset, options: PatchOptions, seed: int) -> tuple[dict[str, str], str]:
    groups = group_labels((record.group, record.label) for record in dataset.records)
    declared = {record.group for record in dataset.records if record.split == TEST}
    all_declared = all(record.split for record in dataset.records)
    split_seed = seed if options.split_seed is None else options.split_seed
    val_seed = seed if options.val_seed is None else options.val_seed
    if options.use_declared_split and all_declared and declared:
        return (
            assign_splits(groups, 0.0, options.val_fraction, split_seed, val_seed=val_seed, declared_test=declared),
            "test as declared by the source; validation drawn by group",
        )
    rule = (
        f"by group, stratified by class: test {options.test_fraction:g} (split_seed {split_seed}), "
        f"validation {options.val_fraction:g} of the rest (val_seed {val_seed})"
    )
    return assign_splits(groups, options.test_fraction, options.val_fraction, split_seed, val_seed=val_seed), rule


def make_patches(
    dataset: Dataset,
    out: Path,
    geometry: GeometryConfig,
    options: PatchOptions,
    *,
    seed: int,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write the patch set of ``dataset`` to ``out``; returns its summary (also in patchset.json)."""
    split_of_group, split_rule = _splits(dataset, options, seed)
    records: list[PatchRecord] = []
    skipped_tiles = 0
    images_without_patches: list[str] = []
    with atomic_output_dir(out, overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for image_record in tqdm(dataset.records, desc="patches", unit="img", disable=not progress):
            roi, boxes, skipped = tile_boxes(image_record, geometry, options, seed)
            skipped_tiles += skipped
            if not boxes:
                images_without_patches.append(image_record.id)
                continue
            image, mask = dataset.read_image(image_record), dataset.read_mask(image_record)
            images = extract_patches(image, boxes, roi, geometry.patch_px)
            masks = extract_mask_patches(mask, boxes, roi, geometry.patch_px)
            prefix = "g" if options.mode is PatchMode.GRID else "r"
            for index, (box, patch, patch_mask) in enumerate(zip(boxes, images, masks, strict=True)):
                patch_id = f"{image_record.id}-{prefix}{index:03d}"
                image_rel, mask_rel = write_patch_pixels(tmp, patch_id, patch, patch_mask)
                has_defect, fraction, mean = patch_statistics(patch_mask, patch)
                records.append(
                    PatchRecord(
                        id=patch_id,
                        image=image_rel,
                        mask=mask_rel,
                        source_image=image_record.id,
                        group=image_record.group,
                        label=image_record.label,
                        x=box.x,
                        y=box.y,
                        crop_px=box.size,
                        patch_px=geometry.patch_px,
                        has_defect=has_defect,
                        defect_fraction=fraction,
                        valid_fraction=box.valid_fraction(roi),
                        mean_intensity=mean,
                        split=split_of_group[image_record.group],
                        origin=PatchOrigin.REAL.value,
                    )
                )
        if not records:
            raise ValueError(f"{dataset.root}: no patches could be cut (every tile was mostly padding)")
        summary = summarize(records)
        summary.update(skipped_tiles=skipped_tiles, images_without_patches=images_without_patches)
        meta = {
            "schema_version": PATCHSET_SCHEMA_VERSION,
            "origin": PatchOrigin.REAL.value,
            "dataset": {
                "path": str(Path(dataset.root).resolve()),
                "fingerprint": dataset.fingerprint,
                "kind": dataset.meta.get("kind"),
                "fixed_structure": dataset.fixed_structure,
            },
            "geometry": geometry.model_dump(),
            "options": options.model_dump(mode="json"),
            "split_rule": split_rule,
            "summary": summary,
            "provenance": provenance(
                "patches",
                {"geometry": geometry.model_dump(), "patches": options.model_dump(mode="json")},
                seed,
                inputs={"dataset": dataset.fingerprint},
            ),
        }
        write_rows(tmp / PATCHES_NAME, records, PatchRecord)
        write_json_atomic(tmp / PATCHSET_META_NAME, meta)
    return summary


def summarize(records: list[PatchRecord]) -> dict:
    """Counts per split, defect share, and defect-pixel share inside defective patches."""
    per_split: dict[str, dict] = {}
    for split in sorted({record.split for record in records}):
        rows = [record for record in records if record.split == split]
        defective = [record for record in rows if record.has_defect]
        per_split[split] = {
            "patches": len(rows),
            "defective": len(defective),
            "defective_share": round(len(defective) / len(rows), 4),
            "groups": len({record.group for record in rows}),
            "mean_defect_fraction_in_defective": round(
                float(np.mean([record.defect_fraction for record in defective])), 4
            )
            if defective
            else 0.0,
        }
    return {
        "patches": len(records),
        "defective": sum(record.has_defect for record in records),
        "per_split": per_split,
        "per_label_defective": dict(Counter(record.label for record in records if record.has_defect)),
        "padded_patches": sum(record.valid_fraction < 1.0 for record in records),
    }
