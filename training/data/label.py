"""`pump-train label`: a person's verdicts turn ingested line patches into training rows.

The contract is a CSV (a review page may write it later)::

    id,label,mask
    line-3f1c9a2b7d4e5f60,defect,masks/frame-17-tile-4.png
    line-0a9b8c7d6e5f4a3b,good,

- ``id``: a patch id of the patch set whose ``origin`` is ``line`` (from ``pump-train ingest``);
- ``label``: ``good``, ``defect``, or a defect class the patch set already knows (e.g. ``Crack``);
- ``mask`` (optional): a PNG path, relative to the CSV's folder or absolute, grayscale, square,
  at the patch size or at the logged crop's size (resized with nearest neighbour):
  0 good, 64 ignore, 255 defect (any value >= 128 counts as defect). Without a mask a ``good``
  patch is good everywhere, and a ``defect`` patch keeps an all-ignore mask (the classifier
  learns its label; the segmenter, which excludes ignore pixels, learns nothing from it).

A labelled line row keeps ``origin = line`` (where its pixels came from) and moves to the
``train`` split: the test split stays the fixed benchmark that compares model versions, and
validation stays the dataset's, so a retrain is judged on the same patches as its parent.
:func:`training.data.library.split_records` adds these rows to training.

Every row is checked before anything is written; the errors name the CSV and the row number
(1 = the first data row after the header). A row may relabel an already labelled line patch
(the last CSV wins). The patch set is rewritten atomically, in place or as ``--out``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from shared.masks import MASK_DEFECT, MASK_GOOD, MASK_IGNORE
from training.data.ingest import LINE_META_NAME, IngestError, LinePatchRecord, link_tree
from training.data.patchset import (
    PATCHES_NAME,
    PATCHSET_META_NAME,
    PatchOrigin,
    PatchRecord,
    load_patchset,
    patch_statistics,
)
from training.data.splits import TRAIN
from training.data.table import read_rows, write_rows
from training.outputs import OutputExistsError, atomic_output_dir, provenance, sha256_file, write_json_atomic

LABELLED_LINE_SPLIT = TRAIN
GOOD, DEFECT = "good", "defect"
_DEFECT_MIN = 128  # a mask value at or above this is a defect pixel


class LabelError(IngestError):
    """A label CSV that cannot be applied; the message names the CSV, the row and the field."""


@dataclasses.dataclass(frozen=True)
class LabelRow:
    """One checked CSV row, ready to apply."""

    row: int
    id: str
    label: str
    mask: np.ndarray  # patch_px x patch_px, values MASK_GOOD / MASK_IGNORE / MASK_DEFECT
    mask_file: str


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelError(f"{path}: label CSV not found") from None
    except UnicodeDecodeError as error:
        raise LabelError(f"{path}: not UTF-8 text ({error.reason})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in ("id", "label") if c not in columns]
    if missing:
        raise LabelError(f"{path}: header {columns} lacks {missing}; expected columns id,label[,mask]")
    unknown = sorted(set(columns) - {"id", "label", "mask"})
    if unknown:
        raise LabelError(f"{path}: unknown columns {unknown}; expected id,label[,mask]")
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise LabelError(f"{path}: no data rows after the header")
    return rows


def _read_mask(csv_path: Path, row: int, name: str, *, patch_px: int, tile_px: int | None) -> np.ndarray:
    """The row's mask PNG at ``patch_px``, in the patch set's values; errors name the row."""
    path = Path(name) if Path(name).is_absolute() else csv_path.parent / name
    where = f"{csv_path}: row {row}: mask {name!r}"
    if not path.is_file():
        raise LabelError(f"{where}: file not found ({path})")
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise LabelError(f"{where}: not a readable PNG")
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise LabelError(f"{where}: expected an 8-bit single-channel PNG, got shape {mask.shape} {mask.dtype}")
    sizes = {patch_px} | ({tile_px} if tile_px else set())
    if mask.shape[0] != mask.shape[1] or mask.shape[0] not in sizes:
        expected = " or ".join(str(size) for size in sorted(sizes))
        raise LabelError(
            f"{where}: {mask.shape[1]}x{mask.shape[0]} px; expected a square mask of {expected} px "
            "(the patch, or the crop logged on the line)"
        )
    values = set(np.unique(mask).tolist())
    odd = sorted(v for v in values if v not in (MASK_GOOD, MASK_IGNORE) and v < _DEFECT_MIN)
    if odd:
        raise LabelError(
            f"{where}: values {odd[:5]}; expected 0 (good), {MASK_IGNORE} (ignore) or >= {_DEFECT_MIN} (defect)"
        )
    out = np.where(mask >= _DEFECT_MIN, MASK_DEFECT, mask).astype(np.uint8)
    if out.shape[0] != patch_px:
        out = cv2.resize(out, (patch_px, patch_px), interpolation=cv2.INTER_NEAREST)
    return out


def check_labels(csv_path: Path, patches_dir: Path) -> list[LabelRow]:
    """Every row of ``csv_path`` checked against the patch set; the first problem raises :class:`LabelError`."""
    csv_path, patches_dir = Path(csv_path), Path(patches_dir)
    patchset = load_patchset(patches_dir)
    records = patchset.by_id()
    tile_px = {row.id: row.tile_px for row in _line_meta(patches_dir)}
    patch_px = int(patchset.meta.get("geometry", {}).get("patch_px") or patchset.records[0].patch_px)
    classes = {r.label for r in patchset.records if r.origin == PatchOrigin.REAL.value and r.has_defect}
    allowed = {GOOD, DEFECT} | classes
    seen: dict[str, int] = {}
    checked = []
    for number, raw in enumerate(_read_csv(csv_path), start=1):
        patch_id, label, mask_name = raw.get("id", ""), raw.get("label", ""), raw.get("mask", "")
        where = f"{csv_path}: row {number}"
        if not patch_id:
            raise LabelError(f"{where}: empty id")
        if patch_id in seen:
            raise LabelError(f"{where}: id {patch_id!r} repeats row {seen[patch_id]}")
        seen[patch_id] = number
        record = records.get(patch_id)
        if record is None:
            raise LabelError(f"{where}: unknown id {patch_id!r}: not a patch of {patches_dir}")
        if record.origin != PatchOrigin.LINE.value:
            raise LabelError(
                f"{where}: id {patch_id!r} has origin {record.origin!r}; only origin=line patches "
                "(from `pump-train ingest`) are labelled here"
            )
        if label not in allowed:
            raise LabelError(f"{where}: label {label!r}; expected good, defect or one of {sorted(classes)}")
        if mask_name:
            mask = _read_mask(csv_path, number, mask_name, patch_px=patch_px, tile_px=tile_px.get(patch_id))
        else:
            fill = MASK_GOOD if label == GOOD else MASK_IGNORE
            mask = np.full((patch_px, patch_px), fill, np.uint8)
        has_defect = bool((mask == MASK_DEFECT).any())
        if label == GOOD and has_defect:
            raise LabelError(f"{where}: label good but mask {mask_name!r} has defect pixels")
        if label != GOOD and mask_name and not has_defect:
            raise LabelError(f"{where}: label {label!r} but mask {mask_name!r} has no defect pixel (>= {_DEFECT_MIN})")
        checked.append(LabelRow(row=number, id=patch_id, label=label, mask=mask, mask_file=mask_name))
    return checked


def _line_meta(patches_dir: Path) -> list[LinePatchRecord]:
    path = patches_dir / LINE_META_NAME
    return read_rows(path, LinePatchRecord) if path.is_file() else []


def labelled_record(record: PatchRecord, row: LabelRow, image: np.ndarray) -> PatchRecord:
    """The line row as a labelled training row (pixels unchanged, mask and statistics from the label)."""
    _, fraction, mean = patch_statistics(row.mask, image)
    return dataclasses.replace(
        record,
        label=row.label,
        has_defect=row.label != GOOD,  # a defect label without a mask is still a defect patch
        defect_fraction=fraction,
        mean_intensity=mean,
        split=LABELLED_LINE_SPLIT,
    )


def apply_labels(
    csv_path: Path, patches_dir: Path, *, out: Path | None = None, overwrite: bool = False, dry_run: bool = False
) -> dict:
    """Check ``csv_path`` and write the labelled patch set (in place, or as ``out``); returns the report."""
    csv_path, patches_dir = Path(csv_path), Path(patches_dir)
    rows = check_labels(csv_path, patches_dir)
    patchset = load_patchset(patches_dir)
    in_place = out is None or Path(out).resolve() == patches_dir.resolve()
    target = patches_dir if in_place else Path(out)
    if not in_place and target.exists() and not overwrite and not dry_run:
        raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it")
    by_id = {row.id: row for row in rows}
    relabelled = sum(patchset.by_id()[row.id].split == LABELLED_LINE_SPLIT for row in rows)
    report = {
        "csv": str(csv_path),
        "labelled": len(rows),
        "good": sum(row.label == GOOD for row in rows),
        "defect": sum(row.label != GOOD for row in rows),
        "with_mask": sum(bool(row.mask_file) for row in rows),
        "relabelled": relabelled,
        "unlabelled_left": sum(
            r.origin == PatchOrigin.LINE.value and r.split != LABELLED_LINE_SPLIT and r.id not in by_id
            for r in patchset.records
        ),
        "out": str(target),
        "written": False,
    }
    if dry_run:
        return report
    meta = dict(patchset.meta)
    line_meta = dict(meta.get("line", {}))
    line_meta["labels"] = [
        *line_meta.get("labels", []),
        {
            "csv": csv_path.name,
            "csv_sha256": sha256_file(csv_path),
            "labelled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **{k: report[k] for k in ("labelled", "good", "defect", "with_mask", "relabelled")},
            "split": LABELLED_LINE_SPLIT,
            "provenance": provenance("label", {}, None, inputs={"csv": csv_path.name}),
        },
    ]
    meta["line"] = line_meta
    records = []
    with atomic_output_dir(target, overwrite=True if in_place else overwrite) as tmp:
        link_tree(patches_dir, tmp, {PATCHES_NAME, PATCHSET_META_NAME})
        for record in patchset.records:
            row = by_id.get(record.id)
            if row is None:
                records.append(record)
                continue
            mask_path = tmp / record.mask
            mask_path.unlink(missing_ok=True)  # a hard link to the old mask: never write through it
            if not cv2.imwrite(str(mask_path), row.mask, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise OSError(f"could not write {mask_path}")
            records.append(labelled_record(record, row, patchset.read_image(record)))
        write_rows(tmp / PATCHES_NAME, records, PatchRecord)
        write_json_atomic(tmp / PATCHSET_META_NAME, meta)
    report["written"] = True
    return report
