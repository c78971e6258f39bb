"""The uncertain-patch export archive: PNGs + manifest (JSON and CSV) in a tar.gz, written atomically.

Rows whose PNG vanished (evicted meanwhile) or no longer matches its sha256 are left out and
listed under ``skipped`` in the manifest.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from datetime import datetime
from importlib import metadata
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from edge.store.tables import STORE_SCHEMA_VERSION, UncertainPatchRow
from shared.uncertain_export import MANIFEST_CSV, MANIFEST_JSON, PATCH_FOLDER, ExportedPatch, ExportManifest

if TYPE_CHECKING:
    from edge.store.store import UncertainStore

TEMP_SUFFIX = ".tmp"  # unfinished files; the store's recovery removes leftovers


def write_archive(
    store: UncertainStore,
    out: Path,
    rows: list[UncertainPatchRow],
    since: datetime | None,
    only_new: bool,
    exported_at: datetime,
) -> list[ExportedPatch]:
    """Write ``rows`` of ``store`` into the tar.gz ``out`` (temp name, fsync, rename); returns what went in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}{TEMP_SUFFIX}")
    exported: list[ExportedPatch] = []
    skipped: list[dict] = []
    try:
        with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for row in rows:
                member = f"{PATCH_FOLDER}/{row.id:08d}.png"
                try:
                    data = store.path_of(row).read_bytes()
                except FileNotFoundError:
                    skipped.append({"row_id": row.id, "file": row.file_path, "reason": "file gone (evicted?)"})
                    continue
                digest = hashlib.sha256(data).hexdigest()
                if digest != row.sha256:
                    skipped.append(
                        {
                            "row_id": row.id,
                            "file": row.file_path,
                            "reason": f"sha256 {digest} does not match the row's {row.sha256}",
                        }
                    )
                    continue
                _add_bytes(tar, member, data, row.logged_at)
                exported.append(_exported_patch(row, member))
            manifest = ExportManifest(
                exported_at=exported_at,
                since=since,
                store={
                    "store_id": store.store_id,
                    "database": store.database,
                    "image_dir": str(store.image_dir.resolve()),
                    "schema_version": STORE_SCHEMA_VERSION,
                },
                selection={
                    "band_low": store.config.band_low,
                    "band_high": store.config.band_high,
                    "disagreement": store.config.disagreement.model_dump(),
                    "per_frame_cap": store.config.per_frame_cap,
                    "only_new": only_new,
                },
                stations=sorted({patch.station for patch in exported}),
                lines=sorted({patch.line for patch in exported}),
                count=len(exported),
                patches=exported,
                skipped=skipped,
                producer=_producer(),
            )
            _add_bytes(tar, MANIFEST_JSON, manifest.to_json(), exported_at)
            _add_bytes(tar, MANIFEST_CSV, manifest.to_csv(), exported_at)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return exported


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, when: datetime) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(when.timestamp())
    info.mode = 0o644
    tar.addfile(info, BytesIO(data))


def _exported_patch(row: UncertainPatchRow, member: str) -> ExportedPatch:
    return ExportedPatch(
        file=member,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        store_id=row.store_id,
        row_id=row.id,
        frame_id=row.frame_id,
        station=row.station,
        line=row.line,
        captured_at=row.captured_at,
        logged_at=row.logged_at,
        tile_index=row.tile_index,
        tile_x=row.tile_x,
        tile_y=row.tile_y,
        tile_size=row.tile_size,
        valid_fraction=row.valid_fraction,
        image_px=row.image_px,
        channels=row.channels,
        classifier_score=row.classifier_score,
        segmenter_max_score=row.segmenter_max_score,
        segmenter_defect_pixels=row.segmenter_defect_pixels,
        reason=row.reason,
        model_versions=dict(row.model_versions or {}),
    )


def _producer() -> dict:
    try:
        version = metadata.version("pumpinspect")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "unknown"
    return {"package": "pumpinspect", "version": version, "command": "export-uncertain"}
