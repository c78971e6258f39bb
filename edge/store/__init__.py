"""Uncertain-patch store (issue 4, §6): patches the models were unsure about, kept for retraining.

The runtime calls :meth:`UncertainStore.log` once per frame; the rules live in the pure
:func:`select_patches`; `pump-edge export-uncertain` calls :meth:`UncertainStore.export`, and
`pump-train ingest` reads the export (:mod:`edge.store.manifest`).
"""

from edge.store.config import DisagreementRule, EvictionPolicy, StoreConfig
from edge.store.manifest import ExportedPatch, ExportManifest
from edge.store.models import UncertainPatch
from edge.store.select import Reason, Selected, select_patches
from edge.store.store import StoreError, StoreStats, UncertainStore, make_engine, parse_since

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
    "UncertainPatch",
    "UncertainStore",
    "make_engine",
    "parse_since",
    "select_patches",
]
