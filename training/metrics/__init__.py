"""Metrics of the downstream classifier and segmenter (pure numpy; see :mod:`.functional`)."""

from training.metrics.functional import (
    Confusion,
    average_precision,
    binary_confusion,
    classification_metrics,
    defect_iou,
    defect_iou_per_patch_mean,
    f1_always_defective,
    healthy_iou,
    mean_iou,
    patch_confusion,
    per_class_recall,
    roc_auc,
    segmentation_metrics,
    tune_threshold,
)

__all__ = [
    "Confusion",
    "average_precision",
    "binary_confusion",
    "classification_metrics",
    "defect_iou",
    "defect_iou_per_patch_mean",
    "f1_always_defective",
    "healthy_iou",
    "mean_iou",
    "patch_confusion",
    "per_class_recall",
    "roc_auc",
    "segmentation_metrics",
    "tune_threshold",
]
