"""`pump-train ingest`: uncertain patches from the line become an unlabelled pool in a patch set.

Reads an export of the edge's uncertain-patch store (:mod:`shared.uncertain_export`: a tar.gz
with ``manifest.json`` and the crops as PNG), checks every crop against its sha256, resizes
the ``tile_px`` crops to the patch set's ``patch_px`` with area interpolation (as
:func:`shared.patching.resize_image_tile` does for every patch), and adds them as rows of
``origin=line``. Crops already in the patch set (same sha256) are skipped and reported.

How an unlabelled line patch is represented, so training never mistakes it for a good patch:

- ``origin = "line"``, ``label = "unlabelled"``, ``split = "pool"`` (never train/val/test);
- the mask is all :data:`~shared.masks.MASK_IGNORE` (no pixel carries a label), so
  ``has_defect = 0`` and ``defect_fraction = 0`` say "no labelled defect pixel", not "good";
  a segmentation loss that excludes ignore pixels learns nothing from it;
- ``group`` and ``source_image`` are ``line:<station>:<frame_id>``, never a dataset group or
  image id, so no split rule or pasting step can confuse them with real images;
- experiment splits take only ``origin = real`` rows
  (:func:`training.data.library.split_records`), and pools must hold a single origin.

Per-patch edge metadata (scores, reason, model versions, station, capture time, sha256)
lives beside the rows in ``line_patches.csv``; ``patchset.json`` gains a ``line`` section
listing every ingest. The result is written atomically: a new patch set (``out``) or the
patch set replaced in place once the new one is complete (existing PNGs are hard-linked,
not copied, where the file system allows).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from shared.masks import MASK_IGNORE
from shared.patching import resize_image_tile
from shared.pixels import to_channels
from shared.uncertain_export import EXPORT_FORMAT, MANIFEST_CSV, MANIFEST_JSON, PATCH_FOLDER, ExportManifest
from training.data.imageio import BadImageError, read_source_image
from training.data.patchset import (
    PATCHES_NAME,
    PATCHSET_META_NAME,
    PatchOrigin,
    PatchRecord,
    PatchSet,
    load_patchset,
    patch_statistics,
    write_patch_pixels,
)
from training.data.table import ManifestError, read_rows, write_rows
from training.outputs import OutputExistsError, atomic_output_dir, provenance, sha256_file, write_json_atomic

LINE_LABEL = "unlabelled"
LINE_SPLIT = "pool"
LINE_META_NAME = "line_patches.csv"
MB = 1_000_000
_MEMBER = re.compile(rf"^{PATCH_FOLDER}/[A-Za-z0-9._-]+\.png$")
_SYNTHETIC_ORIGINS = {o.value for o in PatchOrigin} - {PatchOrigin.REAL.value, PatchOrigin.LINE.value}


class IngestError(ManifestError):
    """An export or a patch set that cannot be ingested; the message names the file and what was expected."""


@dataclass(frozen=True)
class LinePatchRecord:
    """Edge metadata of one ingested line patch (``line_patches.csv``, keyed by patch ``id``)."""

    id: str
    sha256: str  # of the PNG as logged on the edge (the duplicate key)
    export: str  # file name of the export it came from
    store_id: str
    row_id: int
    station: str
    line: str
    frame_id: str
    captured_at: str
    tile_index: int
    tile_px: int  # side of the logged crop before resizing
    classifier_score: float
    segmenter_max_score: str  # "" when no segmenter ran
    segmenter_defect_pixels: str
    reason: str
    model_versions: str  # JSON object
    ingested_at: str


@dataclass(frozen=True)
class IngestLimits:
    """Size bounds checked on each member's tar header, before a byte of it is written.

    An export is untrusted input (it crossed from a line PC): without bounds a small archive could
    unpack gigabytes. Crops are listed in ``manifest.json`` with their sizes, which must match.
    """

    member_bytes: int = 16 * MB  # one crop: a 256 px 8-bit PNG is < 100 kB
    total_bytes: int = 8192 * MB  # 4x the edge store's default disk quota (2048 MB)
    manifest_bytes: int = 256 * MB  # manifest.json / manifest.csv: ~1 kB per row, 100,000 rows by default

    def __post_init__(self) -> None:
        for name in ("member_bytes", "total_bytes", "manifest_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ingest limit {name} must be positive, got {getattr(self, name)}")


def _parse_manifest(export: Path, data: bytes) -> ExportManifest:
    """The export's ``manifest.json``, validated; errors name the export and the field."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IngestError(f"{export}: {MANIFEST_JSON} is not valid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise IngestError(f"{export}: {MANIFEST_JSON} has format {got!r}; expected {EXPORT_FORMAT!r}")
    try:
        manifest = ExportManifest.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()[:5]
        )
        raise IngestError(f"{export}: {MANIFEST_JSON} does not match the export schema ({problems})") from None
    if manifest.count != len(manifest.patches):
        raise IngestError(
            f"{export}: {MANIFEST_JSON} says count={manifest.count} but lists {len(manifest.patches)} patches"
        )
    return manifest


def _check_member(export: Path, member: tarfile.TarInfo, limits: IngestLimits) -> None:
    """Refuse a member by its header alone: a name or type that could escape, or too large."""
    name = member.name
    if name not in (MANIFEST_JSON, MANIFEST_CSV) and not _MEMBER.match(name):
        raise IngestError(
            f"{export}: unexpected member {name!r}; expected {MANIFEST_JSON}, {MANIFEST_CSV} "
            f"and {PATCH_FOLDER}/<name>.png only"
        )
    if not member.isfile():
        raise IngestError(f"{export}: member {name!r} is not a regular file")
    is_manifest = name in (MANIFEST_JSON, MANIFEST_CSV)
    limit, setting = (
        (limits.manifest_bytes, "the manifest limit") if is_manifest else (limits.member_bytes, "--max-member-mb")
    )
    if member.size > limit:
        raise IngestError(f"{export}: member {name!r} is {member.size:,} bytes, over {setting} ({limit:,} bytes)")


def _plan_extraction(export: Path, tar: tarfile.TarFile, limits: IngestLimits) -> ExportManifest | None:
    """Pass 1, headers only: every member allowed, within the limits and listed in the manifest at its size.

    The manifest is written last by the edge (it is complete only then), so it is read here, in
    memory and bounded, before anything is unpacked.
    """
    members: dict[str, tarfile.TarInfo] = {}
    total = 0
    for member in tar:
        _check_member(export, member, limits)
        if member.name in members:
            raise IngestError(f"{export}: member {member.name!r} appears twice")
        members[member.name] = member
        total += member.size
        if total > limits.total_bytes:
            raise IngestError(f"{export}: members add up to more than --max-total-mb ({limits.total_bytes:,} bytes)")
    if MANIFEST_JSON not in members:
        return None
    with tar.extractfile(members[MANIFEST_JSON]) as handle:
        manifest = _parse_manifest(export, handle.read())
    listed = {patch.file: patch.size_bytes for patch in manifest.patches}
    for name, member in members.items():
        if name in (MANIFEST_JSON, MANIFEST_CSV):
            continue
        if name not in listed:
            raise IngestError(f"{export}: member {name!r} is not listed in {MANIFEST_JSON} (refused, not unpacked)")
        if member.size != listed[name]:
            raise IngestError(
                f"{export}: member {name!r} is {member.size:,} bytes but {MANIFEST_JSON} lists {listed[name]:,}"
            )
    return manifest


def _extract(export: Path, work: Path, limits: IngestLimits) -> ExportManifest | None:
    """Copy the export's members into ``work`` once all passed :func:`_plan_extraction`; its manifest or None."""
    try:
        with tarfile.open(export, "r:gz") as tar:
            manifest = _plan_extraction(export, tar, limits)
            if manifest is None:
                return None
            for member in tar.getmembers():  # pass 2: only what pass 1 accepted
                target = work / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as handle:
                    shutil.copyfileobj(source, handle)
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError) and not export.exists():
            raise FileNotFoundError(f"{export}: export not found") from None
        raise IngestError(
            f"{export}: not a readable tar.gz ({error}); expected an export from `pump-edge export-uncertain`"
        ) from None
    return manifest


def read_export(export: Path, work: Path, limits: IngestLimits | None = None) -> ExportManifest:
    """Unpack ``export`` into ``work`` (within ``limits``) and return its manifest once every crop matches."""
    export = Path(export)
    if not export.is_file():
        raise FileNotFoundError(f"{export}: export not found")
    manifest = _extract(export, work, limits or IngestLimits())
    if manifest is None:
        raise IngestError(
            f"{export}: no {MANIFEST_JSON} in the archive; expected an export from `pump-edge export-uncertain`"
        )
    for patch in manifest.patches:
        path = work / patch.file
        if not _MEMBER.match(patch.file) or not path.is_file():
            raise IngestError(f"{export}: {patch.file} is listed in {MANIFEST_JSON} but missing from the archive")
        digest = sha256_file(path)
        if digest != patch.sha256:
            raise IngestError(
                f"{export}: {patch.file}: sha256 {digest} does not match {patch.sha256} in {MANIFEST_JSON}"
            )
    return manifest


def _patchset_channels(patchset: PatchSet) -> int:
    image = patchset.read_image(patchset.records[0])
    return 1 if image.ndim == 2 else int(image.shape[2])


def _to_channels(image: np.ndarray, channels: int) -> tuple[np.ndarray, bool]:
    """The crop in the patch set's channels by the edge's rule (``shared.pixels``); True if converted."""
    have = 1 if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1) else int(image.shape[2])
    try:
        return to_channels(image, channels), have != channels
    except ValueError:
        raise IngestError(f"cannot convert a {have}-channel crop to the patch set's {channels} channels") from None


def _read_line_rows(root: Path) -> list[LinePatchRecord]:
    path = root / LINE_META_NAME
    return read_rows(path, LinePatchRecord) if path.is_file() else []


def link_tree(source: Path, target: Path, skip: set[str]) -> None:
    """Hard-link (or copy) every file of ``source`` into ``target``, except the root names in ``skip``."""
    for folder, dirs, names in os.walk(source):
        relative = Path(folder).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in names:
            if relative == Path(".") and name in skip:
                continue
            src, dst = Path(folder) / name, target / relative / name
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        dirs.sort()


def ingest_export(
    export: Path,
    patches_dir: Path,
    *,
    out: Path | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    limits: IngestLimits | None = None,
) -> dict:
    """Add the crops of an uncertain-patch export to a patch set as ``origin=line`` rows.

    Args:
        export: ``.tar.gz`` from ``pump-edge export-uncertain``.
        patches_dir: the patch set to add to.
        out: write the result as a new patch set here; ``None`` updates ``patches_dir`` in place
            (atomically: the new folder replaces the old one only once complete).
        overwrite: replace an existing ``out``.
        dry_run: verify the export and report what would be added; write nothing.
        limits: size bounds on the archive's members (default :class:`IngestLimits`).

    Returns the report: patches in the export, added, duplicates (already in the patch set or
    repeated in the export), colour conversions, output folder.
    """
    export, patches_dir = Path(export), Path(patches_dir)
    patchset = load_patchset(patches_dir)
    if not patchset.records:
        raise IngestError(f"{patches_dir / PATCHES_NAME}: the patch set has no rows to add line patches to")
    origins = {record.origin for record in patchset.records}
    if origins <= _SYNTHETIC_ORIGINS:
        raise IngestError(
            f"{patches_dir}: a synthetic pool (origins {sorted(origins)}); a pool must hold one origin, "
            "so ingest line patches into a real patch set (from `pump-train patches`)"
        )
    patch_px = int(patchset.meta.get("geometry", {}).get("patch_px") or patchset.records[0].patch_px)
    channels = _patchset_channels(patchset)
    in_place = out is None or Path(out).resolve() == patches_dir.resolve()
    target = patches_dir if in_place else Path(out)
    if not in_place and target.exists() and not overwrite and not dry_run:
        raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it")
    line_rows = _read_line_rows(patches_dir)
    known = {row.sha256: row.id for row in line_rows}
    ids = {record.id for record in patchset.records}
    ingested_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ingest-", dir=target.parent) as work_name:
        work = Path(work_name)
        manifest = read_export(export, work, limits)
        new_records: list[PatchRecord] = []
        new_line_rows: list[LinePatchRecord] = []
        pixels: list[tuple[str, np.ndarray]] = []
        duplicates: list[dict] = []
        converted = 0
        for patch in manifest.patches:
            if patch.sha256 in known:
                duplicates.append(
                    {"file": patch.file, "sha256": patch.sha256, "frame_id": patch.frame_id, "as": known[patch.sha256]}
                )
                continue
            try:
                crop = read_source_image(work / patch.file)
            except BadImageError as error:
                raise IngestError(f"{export}: {patch.file}: {error.reason}") from None
            if crop.dtype != np.uint8:
                raise IngestError(f"{export}: {patch.file}: expected an 8-bit crop, got {crop.dtype}")
            crop, changed = _to_channels(crop, channels)
            converted += changed
            image = resize_image_tile(crop, patch_px)
            patch_id = f"line-{patch.sha256[:16]}"
            if patch_id in ids:
                patch_id = f"line-{patch.sha256}"
            ids.add(patch_id)
            known[patch.sha256] = patch_id
            mask = np.full((patch_px, patch_px), MASK_IGNORE, np.uint8)
            _, fraction, mean = patch_statistics(mask, image)
            where = f"line:{patch.station}:{patch.frame_id}"
            new_records.append(
                PatchRecord(
                    id=patch_id,
                    image=f"images/{patch_id}.png",
                    mask=f"masks/{patch_id}.png",
                    source_image=where,
                    group=where,
                    label=LINE_LABEL,
                    x=patch.tile_x,
                    y=patch.tile_y,
                    crop_px=patch.tile_size,
                    patch_px=patch_px,
                    has_defect=False,
                    defect_fraction=fraction,
                    valid_fraction=patch.valid_fraction,
                    mean_intensity=mean,
                    split=LINE_SPLIT,
                    origin=PatchOrigin.LINE.value,
                )
            )
            new_line_rows.append(
                LinePatchRecord(
                    id=patch_id,
                    sha256=patch.sha256,
                    export=export.name,
                    store_id=patch.store_id,
                    row_id=patch.row_id,
                    station=patch.station,
                    line=patch.line,
                    frame_id=patch.frame_id,
                    captured_at=patch.captured_at.isoformat(),
                    tile_index=patch.tile_index,
                    tile_px=patch.image_px,
                    classifier_score=patch.classifier_score,
                    segmenter_max_score="" if patch.segmenter_max_score is None else repr(patch.segmenter_max_score),
                    segmenter_defect_pixels=""
                    if patch.segmenter_defect_pixels is None
                    else str(patch.segmenter_defect_pixels),
                    reason=patch.reason,
                    model_versions=json.dumps(patch.model_versions, sort_keys=True),
                    ingested_at=ingested_at,
                )
            )
            pixels.append((patch_id, image))
        report = {
            "export": str(export),
            "exported_at": manifest.exported_at.isoformat(),
            "stations": manifest.stations,
            "in_export": len(manifest.patches),
            "added": len(new_records),
            "duplicates": len(duplicates),
            "duplicate_patches": duplicates,
            "skipped_on_edge": len(manifest.skipped),
            "converted_channels": converted,
            "patch_px": patch_px,
            "out": str(target),
            "written": False,
        }
        if dry_run or (in_place and not new_records):
            return report
        all_line_rows = line_rows + new_line_rows
        meta = dict(patchset.meta)
        line_meta = dict(meta.get("line", {}))
        ingests = list(line_meta.get("ingests", []))
        ingests.append(
            {
                "export": export.name,
                "export_sha256": sha256_file(export),
                "exported_at": manifest.exported_at.isoformat(),
                "store": manifest.store,
                "selection": manifest.selection,
                "in_export": len(manifest.patches),
                "added": len(new_records),
                "duplicates": len(duplicates),
                "provenance": provenance(
                    "ingest", {"patch_px": patch_px, "channels": channels}, None, inputs={"export": export.name}
                ),
            }
        )
        line_meta.update(
            patches=len(all_line_rows),
            label=LINE_LABEL,
            split=LINE_SPLIT,
            mask=f"all {MASK_IGNORE} (ignore): unlabelled, never a good patch",
            stations=sorted({row.station for row in all_line_rows}),
            ingests=ingests,
        )
        if not in_place:
            line_meta.setdefault("base", {"path": str(patches_dir.resolve())})
        meta["line"] = line_meta
        with atomic_output_dir(target, overwrite=True if in_place else overwrite) as tmp:
            link_tree(patches_dir, tmp, {PATCHES_NAME, PATCHSET_META_NAME, LINE_META_NAME})
            (tmp / "images").mkdir(exist_ok=True)
            (tmp / "masks").mkdir(exist_ok=True)
            mask = np.full((patch_px, patch_px), MASK_IGNORE, np.uint8)
            for patch_id, image in pixels:
                write_patch_pixels(tmp, patch_id, image, mask)
            write_rows(tmp / PATCHES_NAME, [*patchset.records, *new_records], PatchRecord)
            write_rows(tmp / LINE_META_NAME, all_line_rows, LinePatchRecord)
            write_json_atomic(tmp / PATCHSET_META_NAME, meta)
        report["written"] = True
        return report


def line_records(patchset: PatchSet) -> list[PatchRecord]:
    """The unlabelled line pool of a patch set (for GAN retraining)."""
    return [record for record in patchset.records if record.origin == PatchOrigin.LINE.value]


__all__ = [
    "LINE_LABEL",
    "LINE_META_NAME",
    "LINE_SPLIT",
    "IngestError",
    "LinePatchRecord",
    "ingest_export",
    "line_records",
    "link_tree",
    "read_export",
]
