"""Uncertain-patch store (issue 4, §6): patches the models were unsure about, kept for retraining.

The runtime calls :meth:`UncertainStore.log` once per frame; the rules live in the pure
:func:`select_patches`; `pump-edge export-uncertain` calls :meth:`UncertainStore.export`, and
`pump-train ingest` reads the export (its format is a contract between the halves: :mod:`shared.uncertain_export`).

The names below load on first use (PEP 562): importing a light submodule such as
``edge.store.config`` runs this file, and must not pull in OpenCV, TensorRT or SQLAlchemy
(validating settings stays cheap, house style 10).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "edge.store.config": ("DisagreementRule", "EvictionPolicy", "StoreConfig"),
    "edge.store.select": ("Reason", "Selected", "select_patches"),
    "edge.store.store": ("StoreError", "StoreStats", "UncertainStore", "make_engine", "parse_since"),
    "edge.store.tables": ("UncertainPatchRow",),
    "shared.uncertain_export": ("ExportedPatch", "ExportManifest"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "DisagreementRule",
    "EvictionPolicy",
    "ExportManifest",
    "ExportedPatch",
    "Reason",
    "Selected",
    "StoreConfig",
    "StoreError",
    "StoreStats",
    "UncertainPatchRow",
    "UncertainStore",
    "make_engine",
    "parse_since",
    "select_patches",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
