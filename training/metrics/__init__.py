"""Metrics of the downstream models (pure numpy): :mod:`.classification` and :mod:`.segmentation`.

The GAN families add ``generative`` (FID/KID) beside them.
"""

from training.metrics.classification import (
    Confusion,
    average_precision,
    binary_confusion,
    classification_metrics,
    f1_always_defective,
    per_class_recall,
    roc_auc,
    tune_threshold,
)
from training.metrics.segmentation import (
    defect_iou,
    defect_iou_per_patch_mean,
    healthy_iou,
    mean_iou,
    patch_confusion,
    per_class_segmentation,
    segmentation_metrics,
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
    "per_class_segmentation",
    "roc_auc",
    "segmentation_metrics",
    "tune_threshold",
]
