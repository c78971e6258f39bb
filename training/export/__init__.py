"""Model export: training checkpoints -> verified ONNX bundles for the edge (see :mod:`shared.bundle`)."""

from training.export.onnx_export import ExportError, ExportReport, ParityCheck, export_bundle

__all__ = ["ExportError", "ExportReport", "ParityCheck", "export_bundle"]
