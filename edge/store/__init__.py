"""Uncertain-patch store (issue 4, §6): patches the models were unsure about, kept for retraining.

The runtime calls :meth:`UncertainStore.log` once per frame; the rules live in the pure
:func:`select_patches`; `pump-edge export-uncertain` calls :meth:`UncertainStore.export`, and
`pump-train ingest` reads the export (its format is a contract between the halves: :mod:`shared.uncertain_export`).

The names below load on first use (PEP 562): importing a light submodule such as
``edge.store.config`` runs this file, and must not pull in OpenCV, TensorRT or SQLAlchemy
(validating settings stays cheap, house style 10).
"""

from __future__ import annotations

from shared.lazy_exports import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "edge.store.config": ("DisagreementRule", "EvictionPolicy", "StoreConfig"),
    "edge.store.select": ("Reason", "Selected", "select_patches"),
    "edge.store.store": ("StoreError", "StoreStats", "UncertainStore", "make_engine", "parse_since"),
    "edge.store.tables": ("UncertainPatchRow",),
    "shared.uncertain_export": ("ExportedPatch", "ExportManifest"),
}


__getattr__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
