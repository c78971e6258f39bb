"""Uncertain-patch store (issue 4, §6): patches the models were unsure about, kept for retraining.

The runtime calls :meth:`UncertainStore.log` once per frame; the rules live in the pure
:func:`select_patches`; `pump-edge export-uncertain` calls :meth:`UncertainStore.export`, and
`pump-train ingest` reads the export (its format is a contract between the halves: :mod:`shared.uncertain_export`).
"""

from edge.store.config import DisagreementRule, EvictionPolicy, StoreConfig
from edge.store.select import Reason, Selected, select_patches
from edge.store.store import StoreError, StoreStats, UncertainStore, make_engine, parse_since
from edge.store.tables import UncertainPatchRow
from shared.uncertain_export import ExportedPatch, ExportManifest

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
