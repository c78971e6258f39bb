"""Importers by source layout. Register a new layout by adding its ``SPEC`` here."""

from __future__ import annotations

from training.data.importers import folder, magnetic_tile, mvtec, synth
from training.data.importers.base import ImporterSpec, ImportOptions, ImportProblemsError, run_import

IMPORTERS: dict[str, ImporterSpec] = {
    spec.key: spec for spec in (synth.SPEC, magnetic_tile.SPEC, mvtec.SPEC, folder.SPEC)
}


def get_importer(kind: str) -> ImporterSpec:
    """The importer for ``kind``; unknown kinds list the valid ones."""
    try:
        return IMPORTERS[kind]
    except KeyError:
        raise ValueError(f"unknown import kind {kind!r}; choose one of {sorted(IMPORTERS)}") from None


__all__ = ["IMPORTERS", "ImportOptions", "ImportProblemsError", "ImporterSpec", "get_importer", "run_import"]
