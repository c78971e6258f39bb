"""The uncertain-patch export format (what `pump-train ingest` reads).

An export is a ``.tar.gz`` holding, in this order::

    manifest.json          ExportManifest: format, export time, store/station info, one entry per patch
    manifest.csv           the same per-patch fields as a table (for people and spreadsheets)
    patches/<name>.png     the crops as logged (tile_px side, 8-bit), sha256 in the manifest

Pure pydantic (no SQLAlchemy), so the training side can validate an export without a database.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EXPORT_FORMAT = "pumpinspect-uncertain-export"
EXPORT_SCHEMA_VERSION = 1
MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"
PATCH_FOLDER = "patches"


class ExportedPatch(BaseModel):
    """One patch of an export."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="Member path inside the archive, e.g. patches/00000042.png.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    store_id: str
    row_id: int
    frame_id: str
    station: str
    line: str
    captured_at: datetime
    logged_at: datetime
    tile_index: int
    tile_x: int
    tile_y: int
    tile_size: int = Field(gt=0)
    valid_fraction: float = Field(ge=0, le=1)
    image_px: int = Field(gt=0)
    channels: int = Field(ge=1)
    classifier_score: float
    segmenter_max_score: float | None = None
    segmenter_defect_pixels: int | None = None
    reason: str
    model_versions: dict[str, str] = Field(default_factory=dict)


class ExportManifest(BaseModel):
    """``manifest.json`` of an export."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["pumpinspect-uncertain-export"] = EXPORT_FORMAT
    schema_version: Literal[1] = EXPORT_SCHEMA_VERSION
    exported_at: datetime
    since: datetime | None = None
    store: dict = Field(default_factory=dict, description="store_id, database (password hidden), image_dir.")
    selection: dict = Field(default_factory=dict, description="The band, disagreement rule and cap in force.")
    stations: list[str] = Field(default_factory=list)
    lines: list[str] = Field(default_factory=list)
    count: int = Field(ge=0)
    patches: list[ExportedPatch]
    skipped: list[dict] = Field(default_factory=list, description="Rows not exported and why (file gone, bad sum).")
    producer: dict = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2) + "\n").encode("utf-8")

    def to_csv(self) -> bytes:
        names = list(ExportedPatch.model_fields)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(names)
        for patch in self.patches:
            row = patch.model_dump(mode="json")
            row["model_versions"] = json.dumps(row["model_versions"], sort_keys=True)
            writer.writerow(["" if row[name] is None else row[name] for name in names])
        return buffer.getvalue().encode("utf-8")
