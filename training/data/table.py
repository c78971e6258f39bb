"""CSV manifests as typed rows.

Manifests are plain CSV (one header, one row per record) so a person can open them in
a spreadsheet; rows are dataclasses whose field types drive parsing, and a bad value
is reported with the file, line and column.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

Row = TypeVar("Row")


class ManifestError(ValueError):
    """A manifest file is missing, malformed, or holds a value of the wrong type."""


def _parse(value: str, kind: Any) -> Any:
    if kind is bool:
        if value not in ("0", "1", "true", "false", "True", "False"):
            raise ValueError(f"expected 0/1 or true/false, got {value!r}")
        return value in ("1", "true", "True")
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    return value


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(round(value, 8))
    return str(value)


def write_rows(path: Path, rows: Sequence[Any], row_type: type) -> None:
    """Write dataclass rows as CSV through a temporary file and a rename."""
    names = [field.name for field in dataclasses.fields(row_type)]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_format(getattr(row, name)) for name in names])
    os.replace(tmp, path)


def read_rows(path: Path, row_type: type[Row]) -> list[Row]:
    """Read CSV rows into ``row_type``; errors name the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    hints = typing.get_type_hints(row_type)
    fields = [field.name for field in dataclasses.fields(row_type)]
    rows: list[Row] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in fields if name not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing columns {missing}; expected {fields}")
        for line, record in enumerate(reader, start=2):
            values = {}
            for name in fields:
                try:
                    values[name] = _parse(record[name], hints[name])
                except (TypeError, ValueError) as error:
                    raise ManifestError(f"{path}, line {line}, column {name!r}: {error}") from None
            rows.append(row_type(**values))
    return rows


def read_meta(meta_path: Path, schema_version: int, what: str, create_hint: str) -> dict:
    """A folder's JSON metadata, checked for existence, syntax and schema version."""
    meta_path = Path(meta_path)
    if not meta_path.is_file():
        raise ManifestError(f"{meta_path.parent}: not a {what} (no {meta_path.name}); {create_hint}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ManifestError(f"{meta_path}: invalid JSON ({error})") from None
    if meta.get("schema_version") != schema_version:
        raise ManifestError(
            f"{meta_path}: schema_version {meta.get('schema_version')!r} is not supported (expected {schema_version})"
        )
    return meta
