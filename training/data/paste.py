"""Defect-pasted augmentation (thesis §3.2.1): more defect patches for GAN training.

For every real defect patch outside the test split, its defect region is pasted onto
``per_defect`` good patches from *other* groups whose brightness is close.

- ``fixed`` location (datasets of one part in a fixed pose, e.g. the pump line): the
  destination is cut fresh from another image near the source's tile position: within
  ``location_tolerance_px`` the shift that best aligns the destination with the source
  (normalised cross-correlation) is taken, and a destination whose best alignment is
  below ``min_alignment`` is refused, so the defect lands on the same part component
  even when parts sit a few pixels differently in each frame.
- ``free`` location (no fixed structure, e.g. Magnetic Tile): the location constraint
  cannot hold; the destination is any good real patch of another group with close
  brightness, and the defect keeps its position inside the patch.
- ``auto`` picks ``fixed`` when the dataset says it has a fixed structure.

Pasted rows are training-only. They carry ``source_patch``/``source_group`` so that an
experiment which re-draws validation can drop those whose source or destination group
landed in validation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from shared.config import GeometryConfig
from shared.masks import MASK_DEFECT, MASK_IGNORE
from shared.patching import cut_mask_tile, cut_tile, resize_image_tile, resize_mask_tile
from shared.tiling import Roi, TileBox
from training.data.blend import BlendMode, paste_defect, paste_region
from training.data.dataset import Dataset, load_dataset
from training.data.patches import image_roi
from training.data.patchset import (
    PATCHES_NAME,
    PATCHSET_META_NAME,
    PATCHSET_SCHEMA_VERSION,
    PatchOrigin,
    PatchRecord,
    PatchSet,
    patch_statistics,
    write_patch_pixels,
)
from training.data.splits import TEST, TRAIN
from training.data.table import write_rows
from training.outputs import atomic_output_dir, provenance, write_json_atomic


class PasteLocation(str, Enum):
    AUTO = "auto"
    FIXED = "fixed"
    FREE = "free"


class PasteOptions(BaseModel):
    """How defects are pasted."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    per_defect: int = Field(
        4, gt=0, le=1000, description="Pasted patches made from each real defect patch (thesis: ~4)."
    )
    location: PasteLocation = Field(PasteLocation.AUTO, description="fixed, free, or auto (from the dataset).")
    location_tolerance_px: int = Field(
        24, ge=0, le=4096, description="fixed: largest shift searched to align the destination tile, in frame pixels."
    )
    min_alignment: float = Field(
        0.5, ge=-1, le=1, description="fixed: least normalised cross-correlation of destination and source."
    )
    brightness_tolerance: float = Field(
        10.0,
        gt=0,
        le=255,
        description="Largest difference of patch mean intensity (grey levels) source vs destination.",
    )
    dilate_px: int = Field(3, ge=0, le=256, description="Growth of the defect mask before copying, in patch pixels.")
    feather_px: float = Field(1.5, ge=0, le=256, description="alpha blend: Gaussian sigma of the border feathering.")
    blend: BlendMode = Field(BlendMode.ALPHA, description="alpha (feathered) or seamless (cv2.seamlessClone).")
    candidates_per_defect: int = Field(
        60, gt=0, le=100_000, description="Destinations tried per defect before giving up on it."
    )


@dataclass
class _Result:
    records: list[PatchRecord] = field(default_factory=list)
    tried: int = 0
    rejected_brightness: int = 0
    rejected_not_good: int = 0
    rejected_alignment: int = 0


def _pasted_record(
    source: PatchRecord,
    k: int,
    image_rel: str,
    mask_rel: str,
    *,
    image: np.ndarray,
    mask: np.ndarray,
    dest_image: str,
    dest_group: str,
    box: TileBox,
    valid: float,
    dest_id: str,
) -> PatchRecord:
    has_defect, fraction, mean = patch_statistics(mask, image)
    return PatchRecord(
        id=f"{source.id}-p{k}",
        image=image_rel,
        mask=mask_rel,
        source_image=dest_image,
        group=dest_group,
        label=source.label,
        x=box.x,
        y=box.y,
        crop_px=box.size,
        patch_px=source.patch_px,
        has_defect=has_defect,
        defect_fraction=fraction,
        valid_fraction=valid,
        mean_intensity=mean,
        split=TRAIN,
        origin=PatchOrigin.PASTED.value,
        source_patch=source.id,
        source_group=source.group,
        dest_patch=dest_id,
    )


def _acceptable(dest_mask: np.ndarray, region: np.ndarray) -> bool:
    """A destination must be good, and its padding must not lie under the pasted region."""
    return not (dest_mask == MASK_DEFECT).any() and not (dest_mask[region] == MASK_IGNORE).any()


def _aligned_box(
    source: PatchRecord, source_patch: np.ndarray, image: np.ndarray, *, roi: Roi, tolerance: int
) -> tuple[TileBox, float]:
    """The tile within ``tolerance`` of the source's position that best matches it, and the match score."""
    size = source.crop_px
    if roi.width < size or roi.height < size:
        return TileBox(source.x, source.y, size), 1.0
    x0 = min(max(source.x - tolerance, roi.x), roi.x + roi.width - size)
    y0 = min(max(source.y - tolerance, roi.y), roi.y + roi.height - size)
    x1 = max(min(source.x + tolerance, roi.x + roi.width - size), x0)
    y1 = max(min(source.y + tolerance, roi.y + roi.height - size), y0)
    scale = source.patch_px / size
    window = image[y0 : y1 + size, x0 : x1 + size]
    window = cv2.resize(
        window, (round(window.shape[1] * scale), round(window.shape[0] * scale)), interpolation=cv2.INTER_AREA
    )
    scores = cv2.matchTemplate(window.astype(np.float32), source_patch.astype(np.float32), cv2.TM_CCOEFF_NORMED)
    _, best, _, (best_x, best_y) = cv2.minMaxLoc(scores)
    x = min(x0 + round(best_x / scale), x1)
    y = min(y0 + round(best_y / scale), y1)
    return TileBox(x, y, size), float(best)


def _paste_fixed(
    patchset: PatchSet,
    dataset: Dataset,
    *,
    sources: list[PatchRecord],
    options: PasteOptions,
    geometry: GeometryConfig,
    rng: np.random.Generator,
    tmp: Path,
    progress: bool,
) -> _Result:
    """Destinations cut from other images at the source's location; each image is read once per round."""
    result = _Result()
    split_of_image = {record.source_image: record.split for record in patchset.records}
    images = {record.id: record for record in dataset.records if split_of_image.get(record.id, TEST) != TEST}
    candidates = {
        source.id: [images[i].id for i in rng.permutation(sorted(images)) if images[i].group != source.group][
            : options.candidates_per_defect
        ]
        for source in sources
    }
    accepted: dict[str, int] = defaultdict(int)
    pixels = {source.id: (patchset.read_image(source), patchset.read_mask(source)) for source in sources}
    bar = tqdm(total=len(sources) * options.per_defect, desc="paste (fixed)", unit="patch", disable=not progress)
    while True:
        wanted: dict[str, list[PatchRecord]] = defaultdict(list)
        for source in sources:
            need = options.per_defect - accepted[source.id]
            for _ in range(min(need, len(candidates[source.id]))):
                wanted[candidates[source.id].pop(0)].append(source)
        if not wanted:
            break
        for image_id in sorted(wanted):
            record = images[image_id]
            roi = image_roi(record, geometry)
            image, mask = dataset.read_image(record), dataset.read_mask(record)
            for source in wanted[image_id]:
                if accepted[source.id] >= options.per_defect:
                    continue
                result.tried += 1
                src_image, src_mask = pixels[source.id]
                box, alignment = _aligned_box(
                    source, src_image, image, roi=roi, tolerance=options.location_tolerance_px
                )
                if alignment < options.min_alignment:
                    result.rejected_alignment += 1
                    continue
                dest = resize_image_tile(cut_tile(image, box, roi), source.patch_px)
                dest_mask = resize_mask_tile(cut_mask_tile(mask, box, roi), source.patch_px)
                if not _acceptable(dest_mask, paste_region(src_mask, options.dilate_px)):
                    result.rejected_not_good += 1
                    continue
                if abs(float(dest.mean()) - source.mean_intensity) > options.brightness_tolerance:
                    result.rejected_brightness += 1
                    continue
                pasted, pasted_mask = paste_defect(
                    src_image,
                    src_mask,
                    dest,
                    dest_mask,
                    dilate_px=options.dilate_px,
                    feather_px=options.feather_px,
                    mode=options.blend,
                )
                k = accepted[source.id]
                patch_id = f"{source.id}-p{k}"
                image_rel, mask_rel = write_patch_pixels(tmp, patch_id, pasted, pasted_mask)
                result.records.append(
                    _pasted_record(
                        source,
                        k,
                        image_rel,
                        mask_rel,
                        image=pasted,
                        mask=pasted_mask,
                        dest_image=record.id,
                        dest_group=record.group,
                        box=box,
                        valid=box.valid_fraction(roi),
                        dest_id=f"{record.id}@{box.x},{box.y}",
                    )
                )
                accepted[source.id] += 1
                bar.update(1)
    bar.close()
    return result


def _paste_free(
    patchset: PatchSet,
    sources: list[PatchRecord],
    *,
    options: PasteOptions,
    rng: np.random.Generator,
    tmp: Path,
    progress: bool,
) -> _Result:
    """Destinations are good real patches of other groups with close brightness, anywhere."""
    result = _Result()
    goods = [r for r in patchset.records if not r.has_defect and r.split != TEST and r.origin == PatchOrigin.REAL]
    means = np.array([r.mean_intensity for r in goods])
    for source in tqdm(sources, desc="paste (free)", unit="defect", disable=not progress):
        src_image, src_mask = patchset.read_image(source), patchset.read_mask(source)
        region = paste_region(src_mask, options.dilate_px)
        close = np.flatnonzero(np.abs(means - source.mean_intensity) <= options.brightness_tolerance)
        result.rejected_brightness += len(goods) - len(close)
        close = [i for i in rng.permutation(close) if goods[i].group != source.group]
        accepted = 0
        for index in close[: options.candidates_per_defect]:
            if accepted >= options.per_defect:
                break
            dest_record = goods[index]
            result.tried += 1
            dest_mask = patchset.read_mask(dest_record)
            if not _acceptable(dest_mask, region):
                result.rejected_not_good += 1
                continue
            pasted, pasted_mask = paste_defect(
                src_image,
                src_mask,
                patchset.read_image(dest_record),
                dest_mask,
                dilate_px=options.dilate_px,
                feather_px=options.feather_px,
                mode=options.blend,
            )
            image_rel, mask_rel = write_patch_pixels(tmp, f"{source.id}-p{accepted}", pasted, pasted_mask)
            box = TileBox(dest_record.x, dest_record.y, dest_record.crop_px)
            result.records.append(
                _pasted_record(
                    source,
                    accepted,
                    image_rel,
                    mask_rel,
                    image=pasted,
                    mask=pasted_mask,
                    dest_image=dest_record.source_image,
                    dest_group=dest_record.group,
                    box=box,
                    valid=dest_record.valid_fraction,
                    dest_id=dest_record.id,
                )
            )
            accepted += 1
    return result


def resolve_location(options: PasteOptions, patchset: PatchSet) -> PasteLocation:
    if options.location is not PasteLocation.AUTO:
        return options.location
    fixed = bool(patchset.meta.get("dataset", {}).get("fixed_structure"))
    return PasteLocation.FIXED if fixed else PasteLocation.FREE


def make_pasted(
    patchset: PatchSet, out: Path, options: PasteOptions, seed: int, *, overwrite: bool = False, progress: bool = True
) -> dict:
    """Write a patch set of pasted defect patches to ``out``; returns its summary."""
    sources = [r for r in patchset.records if r.has_defect and r.split != TEST and r.origin == PatchOrigin.REAL]
    if not sources:
        raise ValueError(f"{patchset.root}: no real defect patches outside the test split to paste from")
    location = resolve_location(options, patchset)
    rng = np.random.default_rng(seed)
    with atomic_output_dir(out, overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        if location is PasteLocation.FIXED:
            dataset = load_dataset(Path(patchset.meta["dataset"]["path"]))
            if dataset.fingerprint != patchset.meta["dataset"]["fingerprint"]:
                raise ValueError(f"{dataset.root}: dataset changed since {patchset.root} was cut (fingerprint differs)")
            geometry = GeometryConfig(**patchset.meta["geometry"])
            result = _paste_fixed(
                patchset,
                dataset,
                sources=sources,
                options=options,
                geometry=geometry,
                rng=rng,
                tmp=tmp,
                progress=progress,
            )
        else:
            result = _paste_free(patchset, sources, options=options, rng=rng, tmp=tmp, progress=progress)
        if not result.records:
            raise ValueError(
                f"no destination passed the rules (tried {result.tried}; brightness rejected "
                f"{result.rejected_brightness}); raise --brightness-tolerance or --candidates-per-defect"
            )
        made: dict[str, int] = defaultdict(int)
        for record in result.records:
            made[record.source_patch] += 1
        source_mean = {source.id: source.mean_intensity for source in sources}
        summary = {
            "location": location.value,
            "sources": len(sources),
            "pasted": len(result.records),
            "sources_short_of_target": sum(made[s.id] < options.per_defect for s in sources),
            "destinations_tried": result.tried,
            "rejected_brightness": result.rejected_brightness,
            "rejected_not_good": result.rejected_not_good,
            "rejected_alignment": result.rejected_alignment,
            "mean_abs_brightness_difference": round(
                float(np.mean([abs(r.mean_intensity - source_mean[r.source_patch]) for r in result.records])), 3
            ),
        }
        meta = {
            "schema_version": PATCHSET_SCHEMA_VERSION,
            "origin": PatchOrigin.PASTED.value,
            "parent": {
                "path": str(patchset.root.resolve()),
                "fingerprint": patchset.meta.get("provenance", {}).get("inputs", {}).get("dataset"),
            },
            "dataset": patchset.meta.get("dataset"),
            "geometry": patchset.meta.get("geometry"),
            "options": options.model_dump(mode="json"),
            "split_rule": "training only; sources and destinations from the parent's non-test groups",
            "summary": summary,
            "provenance": provenance(
                "paste", options.model_dump(mode="json"), seed, inputs={"patches": str(patchset.root.resolve())}
            ),
        }
        write_rows(tmp / PATCHES_NAME, result.records, PatchRecord)
        write_json_atomic(tmp / PATCHSET_META_NAME, meta)
    return summary
