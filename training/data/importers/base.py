"""What every importer shares: the scan result, the options, and the one import loop.

An importer only knows its source layout: it *scans* a folder into :class:`SourceItem`
values (ids, files, declared split, group, label). :func:`run_import` does the rest the
same way for every kind: strict reading, pixel conversion, mask clean-up, checksums,
the manifest and a report of every decision, all written atomically.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from shared.config import ConfigBool
from shared.imagefiles import DEFAULT_MAX_PIXELS
from shared.masks import MASK_DEFECT
from shared.pixels import ColorPolicy, DepthPolicy, normalize_pixels, to_gray, to_uint8
from training.data.dataset import (
    DATASET_SCHEMA_VERSION,
    MANIFEST_NAME,
    META_NAME,
    REPORT_NAME,
    ImageRecord,
    dataset_fingerprint,
)
from training.data.imageio import BadImageError, encode_png, read_source_file
from training.data.table import write_rows
from training.outputs import atomic_output_dir, provenance, write_json_atomic


class ImportOptions(BaseModel):
    """How source pixels and masks are turned into the dataset format."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    color: ColorPolicy = Field(ColorPolicy.GRAY, description="Color inputs: convert to gray or keep BGR.")
    depth: DepthPolicy = Field(
        DepthPolicy.AUTO,
        description="How 16-bit inputs become 8-bit (shared.pixels): scale16, scale12, minmax, or auto (as the edge "
        "does): the header's significant bits or values above 4095 decide; a 16-bit image whose values all fit in "
        "12 bits with no header saying so is a bad input (choose scale12 or scale16).",
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        le=1 << 31,
        description="Refuse image files whose header declares more pixels (width x height) before decoding them "
        "(a bad input; --skip-bad skips it): decompression bombs. Default 32 MP, as the edge's "
        "source.max_frame_pixels; raise it for larger source images.",
    )
    mask_threshold: int = Field(
        127, ge=0, le=254, description="Mask pixels above this grey level are defect (binarisation)."
    )
    skip_bad: ConfigBool = Field(
        False, description="Skip unreadable/mismatched files and report them instead of failing."
    )
    group_regex: str | None = Field(
        None,
        description="folder importer: regex whose first group, matched on the file stem, names the image's group.",
    )


@dataclass(frozen=True)
class SourceItem:
    """One image found in a source folder, before it is read."""

    id: str
    image_path: Path
    mask_path: Path | None  # None: no mask file by the source's convention (defect-free)
    split: str = ""
    group: str = ""  # empty: the image is its own group
    label: str = ""  # empty: derived from the mask ("defect" / "good")


@dataclass
class Scan:
    """What an importer found: importable items and problems it saw without reading pixels."""

    items: list[SourceItem] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ImporterSpec:
    """A registered importer: its key, how it scans, and what it knows about its data."""

    key: str
    description: str
    scan: Callable[[Path, ImportOptions], Scan]
    fixed_structure: bool  # every image shows the same part at the same place
    good_labels: tuple[str, ...] = ("good",)


class ImportProblemsError(ValueError):
    """Bad source files; the message lists every one of them."""

    def __init__(self, problems: list[tuple[Path, str]]) -> None:
        lines = "\n".join(f"  {path}: {reason}" for path, reason in problems)
        super().__init__(
            f"{len(problems)} bad input file(s); nothing was written (use --skip-bad to import the rest):\n{lines}"
        )
        self.problems = problems


@dataclass
class _Tally:
    color_inputs: int = 0
    sixteen_bit_inputs: int = 0
    ambiguous_pixels: Counter = field(default_factory=Counter)
    nonzero_mask_pixels: Counter = field(default_factory=Counter)
    empty_defect_masks: list[str] = field(default_factory=list)


def _binarize(mask: np.ndarray, options: ImportOptions) -> tuple[np.ndarray, int, int]:
    """Gray 8-bit mask -> 0/255; also returns its ambiguous (not 0, not 255) and non-zero pixel counts."""
    if mask.dtype == np.uint16:
        mask = to_uint8(mask, DepthPolicy.SCALE16)
    mask = to_gray(mask)
    ambiguous = int(np.count_nonzero((mask > 0) & (mask < 255)))
    nonzero = int(np.count_nonzero(mask))
    binary = np.where(mask > options.mask_threshold, MASK_DEFECT, 0).astype(np.uint8)
    return binary, ambiguous, nonzero


def _normalized(raw: np.ndarray, significant_bits: int | None, path: Path, options: ImportOptions) -> np.ndarray:
    try:
        return normalize_pixels(raw, options.color, options.depth, significant_bits)
    except ValueError as error:
        raise BadImageError(path, f"unsupported pixels: {error} (import.depth = {options.depth.value})") from None


def _read_item(item: SourceItem, options: ImportOptions, tally: _Tally) -> tuple[np.ndarray, np.ndarray]:
    raw, header = read_source_file(item.image_path, options.max_image_pixels)
    if raw.ndim == 3 and raw.shape[2] >= 3:
        tally.color_inputs += 1
    if raw.dtype == np.uint16:
        tally.sixteen_bit_inputs += 1
    height, width = raw.shape[:2]
    if item.mask_path is None:
        return _normalized(raw, header.significant_bits, item.image_path, options), np.zeros((height, width), np.uint8)
    if not item.mask_path.is_file():
        raise BadImageError(item.image_path, f"missing mask (expected {item.mask_path})")
    raw_mask, _mask_header = read_source_file(item.mask_path, options.max_image_pixels)
    if raw_mask.shape[:2] != (height, width):
        raise BadImageError(
            item.mask_path,
            f"mask is {raw_mask.shape[1]}x{raw_mask.shape[0]} but its image is {width}x{height}",
        )
    mask, ambiguous, nonzero = _binarize(raw_mask, options)
    tally.ambiguous_pixels[item.label] += ambiguous
    tally.nonzero_mask_pixels[item.label] += nonzero
    return _normalized(raw, header.significant_bits, item.image_path, options), mask


def run_import(
    spec: ImporterSpec,
    src: Path,
    out: Path,
    options: ImportOptions,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Import ``src`` as a dataset at ``out``; returns the import report (also written to disk)."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found")
    scan = spec.scan(src, options)
    if not scan.items and not scan.problems:
        raise ImportProblemsError([(src, f"empty folder: no images found for importer {spec.key!r}")])
    duplicates = [key for key, count in Counter(item.id for item in scan.items).items() if count > 1]
    if duplicates:
        raise ImportProblemsError([(src, f"duplicate image ids: {sorted(duplicates)[:10]}")])

    problems = list(scan.problems)
    records: list[ImageRecord] = []
    tally = _Tally()
    with atomic_output_dir(out, overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for item in tqdm(scan.items, desc=f"import {spec.key}", unit="img", disable=not progress):
            try:
                image, mask = _read_item(item, options, tally)
            except BadImageError as error:
                problems.append((error.path, error.reason))
                continue
            defect_px = int(np.count_nonzero(mask))
            label = item.label or ("defect" if defect_px else "good")
            if defect_px == 0 and label not in spec.good_labels:
                tally.empty_defect_masks.append(item.id)
            image_bytes, image_sha = encode_png(image)
            mask_bytes, mask_sha = encode_png(mask, compression=9)
            (tmp / "images" / f"{item.id}.png").write_bytes(image_bytes)
            (tmp / "masks" / f"{item.id}.png").write_bytes(mask_bytes)
            records.append(
                ImageRecord(
                    id=item.id,
                    image=f"images/{item.id}.png",
                    mask=f"masks/{item.id}.png",
                    width=image.shape[1],
                    height=image.shape[0],
                    channels=1 if image.ndim == 2 else image.shape[2],
                    split=item.split,
                    group=item.group or item.id,
                    label=label,
                    source=str(item.image_path.relative_to(src)),
                    image_sha256=image_sha,
                    mask_sha256=mask_sha,
                    defect_pixels=defect_px,
                )
            )
        if problems and not options.skip_bad:
            raise ImportProblemsError(problems)
        if not records:
            raise ImportProblemsError(problems or [(src, "no image could be imported")])
        report = _report(spec, src, options=options, scan=scan, records=records, problems=problems, tally=tally)
        meta = {
            "schema_version": DATASET_SCHEMA_VERSION,
            "kind": spec.key,
            "source": str(src.resolve()),
            "fixed_structure": spec.fixed_structure,
            "good_labels": list(spec.good_labels),
            "classes": sorted({record.label for record in records}),
            "images": len(records),
            "fingerprint": dataset_fingerprint(records),
            "options": options.model_dump(mode="json"),
            "provenance": provenance(f"import {spec.key}", options.model_dump(mode="json"), seed=None),
        }
        write_rows(tmp / MANIFEST_NAME, records, ImageRecord)
        write_json_atomic(tmp / REPORT_NAME, report)
        write_json_atomic(tmp / META_NAME, meta)
    return report


def _report(spec, src, *, options, scan, records, problems, tally) -> dict:
    per_label: dict[str, dict] = defaultdict(lambda: {"images": 0, "with_defect": 0, "groups": set()})
    for record in records:
        entry = per_label[record.label]
        entry["images"] += 1
        entry["with_defect"] += int(record.defect_pixels > 0)
        entry["groups"].add(record.group)
    return {
        "kind": spec.key,
        "source": str(src),
        "imported": len(records),
        "skipped": [{"file": str(path), "reason": reason} for path, reason in problems],
        "groups": len({record.group for record in records}),
        "per_label": {label: {**entry, "groups": len(entry["groups"])} for label, entry in sorted(per_label.items())},
        "decisions": {
            "color": {"policy": options.color.value, "color_inputs": tally.color_inputs},
            "depth": {"policy": options.depth.value, "sixteen_bit_inputs": tally.sixteen_bit_inputs},
            "mask_binarisation": {
                "rule": f"defect where mask > {options.mask_threshold}",
                "ambiguous_pixels_per_label": dict(tally.ambiguous_pixels),
                "ambiguous_share_of_nonzero_per_label": {
                    label: round(tally.ambiguous_pixels[label] / count, 4)
                    for label, count in tally.nonzero_mask_pixels.items()
                    if count
                },
            },
            "empty_masks_in_defect_classes": {
                "action": "imported as defect-free (mask all 0), label kept",
                "ids": sorted(tally.empty_defect_masks),
            },
            **scan.notes,
        },
    }
