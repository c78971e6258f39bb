"""Segmentation metrics (defect/healthy/mean IoU, patch-level confusion), as pure numpy functions.

Masks hold 0 (good), 255 (defect) and 64 (ignore, padding past the image); ignore pixels are
left out of every pixel count, predictions on them included. A defect pixel is predicted when
``probability > threshold`` (the segmenter's rule). Defect IoU with no defective patch is
``nan`` (nothing to score); patch-level rates define 0/0 as 0.0, as the classification metrics do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.masks import MASK_DEFECT, MASK_GOOD, MASK_IGNORE
from training.metrics.classification import Confusion

__all__ = [
    "defect_iou",
    "defect_iou_per_patch_mean",
    "healthy_iou",
    "mean_iou",
    "patch_confusion",
    "per_class_segmentation",
    "segmentation_metrics",
]


@dataclass(frozen=True)
class _PixelCounts:
    """Per-patch pixel counts over labelled (non-ignore) pixels, each an int64 array of length N."""

    defect: np.ndarray  # target defect pixels
    good: np.ndarray  # target good pixels
    tp: np.ndarray  # predicted defect on target defect
    fp: np.ndarray  # predicted defect on target good
    fn: np.ndarray  # predicted good on target defect

    @property
    def defective(self) -> np.ndarray:
        return self.defect > 0


def _pixel_counts(target: np.ndarray, predicted: np.ndarray) -> _PixelCounts:
    target, predicted = np.asarray(target), np.asarray(predicted)
    if target.shape != predicted.shape:
        raise ValueError(f"target {target.shape} and predicted {predicted.shape} differ in shape")
    if target.ndim < 2:
        raise ValueError(f"expected patches (N, H, W), got shape {target.shape}")
    if predicted.dtype != bool:
        raise ValueError(f"predicted must be bool, got {predicted.dtype}")
    if not np.isin(target, (MASK_GOOD, MASK_DEFECT, MASK_IGNORE)).all():
        raise ValueError(f"target values must be {MASK_GOOD}, {MASK_DEFECT} or {MASK_IGNORE}")
    patches = target.shape[0]
    target, predicted = target.reshape(patches, -1), predicted.reshape(patches, -1)
    truth = target == MASK_DEFECT
    good = target == MASK_GOOD
    return _PixelCounts(
        defect=truth.sum(axis=1, dtype=np.int64),
        good=good.sum(axis=1, dtype=np.int64),
        tp=(truth & predicted).sum(axis=1, dtype=np.int64),
        fp=(good & predicted).sum(axis=1, dtype=np.int64),
        fn=(truth & ~predicted).sum(axis=1, dtype=np.int64),
    )


def _defect_iou(counts: _PixelCounts) -> float:
    keep = counts.defective
    if not keep.any():
        return float("nan")
    tp, fp, fn = (int(values[keep].sum()) for values in (counts.tp, counts.fp, counts.fn))
    return tp / (tp + fp + fn)


def _defect_iou_per_patch_mean(counts: _PixelCounts) -> float:
    keep = counts.defective
    if not keep.any():
        return float("nan")
    tp, fp, fn = counts.tp[keep], counts.fp[keep], counts.fn[keep]
    return float(np.mean(tp / (tp + fp + fn)))  # each denominator >= the patch's defect pixels > 0


def _healthy_iou(counts: _PixelCounts) -> float:
    # Background class: its TP are good pixels predicted good, its FP are defect pixels predicted
    # good (the defect class's FN), its FN are good pixels predicted defect (the defect class's FP).
    good, fp, fn = int(counts.good.sum()), int(counts.fp.sum()), int(counts.fn.sum())
    denominator = good + fn  # = TP_h + FP_h + FN_h = (good - fp) + fn + fp
    return (good - fp) / denominator if denominator else float("nan")


def _patch_confusion(counts: _PixelCounts, min_fp_pixels: int) -> Confusion:
    if min_fp_pixels < 1:
        raise ValueError(f"min_fp_pixels must be >= 1, got {min_fp_pixels}")
    defective = counts.defective
    hit = counts.tp > 0
    alarm = counts.fp >= min_fp_pixels  # a healthy patch has no TP, so FP are all its predicted pixels
    tp = int(np.count_nonzero(defective & hit))
    fp = int(np.count_nonzero(~defective & alarm))
    fn = int(np.count_nonzero(defective)) - tp
    return Confusion(tp=tp, fp=fp, tn=int(np.count_nonzero(~defective)) - fp, fn=fn)


def defect_iou(target: np.ndarray, predicted: np.ndarray) -> float:
    """Defect IoU, ΣTP / (ΣTP + ΣFP + ΣFN) pooled over the patches whose target has a defect pixel.

    Healthy patches are left out (thesis §4.3.4) so that a model that predicts nothing on the many
    healthy patches is not rewarded; pooling (micro average) weights large defects more, see
    :func:`defect_iou_per_patch_mean`. ``nan`` when no patch has a defect.
    """
    return _defect_iou(_pixel_counts(target, predicted))


def defect_iou_per_patch_mean(target: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over defective patches of each patch's defect IoU (macro average).

    Gives a small blowhole the same weight as a large Uneven area, which the pooled
    :func:`defect_iou` does not. ``nan`` when no patch has a defect.
    """
    return _defect_iou_per_patch_mean(_pixel_counts(target, predicted))


def healthy_iou(target: np.ndarray, predicted: np.ndarray) -> float:
    """IoU of the background (good) class, pooled over all patches, healthy ones included.

    Measures false alarms on good surface. ``nan`` only in the degenerate case of no good pixel in
    the target and no defect pixel predicted good.
    """
    return _healthy_iou(_pixel_counts(target, predicted))


def mean_iou(target: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of :func:`defect_iou` and :func:`healthy_iou` (``nan`` if either is ``nan``)."""
    counts = _pixel_counts(target, predicted)
    return (_defect_iou(counts) + _healthy_iou(counts)) / 2


def patch_confusion(target: np.ndarray, predicted: np.ndarray, min_fp_pixels: int = 1) -> Confusion:
    """Patch-level confusion from pixel predictions (thesis §4.3.4, made exact).

    A patch whose target has a defect pixel is positive: TP if at least one predicted defect pixel
    lies on a target defect pixel, otherwise FN (a prediction elsewhere in a defective patch does
    not make it FP). A patch without target defect is negative: FP if it has at least
    ``min_fp_pixels`` predicted defect pixels, otherwise TN. The thesis' "predicted defects that do
    not overlap → false positive" is read as the healthy-patch case. Predictions on ignore pixels
    count for neither; ``min_fp_pixels`` > 1 tolerates specks of noise.
    """
    return _patch_confusion(_pixel_counts(target, predicted), min_fp_pixels)


def segmentation_metrics(
    target: np.ndarray,
    probabilities: np.ndarray,
    threshold: float = 0.9,
    min_fp_pixels: Sequence[int] = (1, 16),
) -> dict[str, float]:
    """All segmentation metrics for defect probabilities (N, H, W), defect where ``p > threshold``.

    Keys: ``defect_iou, defect_iou_patch_mean, healthy_iou, mean_iou``, the patch counts
    ``defect_patches, healthy_patches``, and for each ``k`` in ``min_fp_pixels``:
    ``patch_accuracy_k{k}, patch_precision_k{k}, patch_recall_k{k}, patch_f1_k{k}``.
    """
    predicted = np.asarray(probabilities) > threshold
    counts = _pixel_counts(target, predicted)
    defect, healthy = _defect_iou(counts), _healthy_iou(counts)
    defect_patches = int(np.count_nonzero(counts.defective))
    result: dict[str, float] = {
        "defect_iou": defect,
        "defect_iou_patch_mean": _defect_iou_per_patch_mean(counts),
        "healthy_iou": healthy,
        "mean_iou": (defect + healthy) / 2,
        "defect_patches": defect_patches,
        "healthy_patches": counts.defect.size - defect_patches,
    }
    for k in min_fp_pixels:
        confusion = _patch_confusion(counts, int(k))
        result[f"patch_accuracy_k{k}"] = confusion.accuracy
        result[f"patch_precision_k{k}"] = confusion.precision
        result[f"patch_recall_k{k}"] = confusion.recall
        result[f"patch_f1_k{k}"] = confusion.f1
    return result


def per_class_segmentation(
    target: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], threshold: float
) -> dict[str, dict[str, float]]:
    """Pooled defect IoU and pixel recall per patch label, over the defective patches of each label.

    On Magnetic Tile a few large blowholes and uneven areas dominate a pooled IoU; per label, a
    model that misses the 1-2 px cracks cannot hide behind them. Returns ``{"iou": {label: v},
    "recall": {label: v}}`` (labels with no defective patch are left out).
    """
    counts = _pixel_counts(target, np.asarray(probabilities) > threshold)
    labels = np.asarray(labels)
    if len(labels) != len(counts.defect):
        raise ValueError(f"{len(labels)} labels for {len(counts.defect)} patches")
    iou, recall = {}, {}
    for label in sorted(set(labels[counts.defective].tolist())):
        keep = counts.defective & (labels == label)
        tp, fp, fn = (int(values[keep].sum()) for values in (counts.tp, counts.fp, counts.fn))
        iou[label] = tp / (tp + fp + fn)
        recall[label] = tp / (tp + fn)
    return {"iou": iou, "recall": recall}
