"""Metrics for the downstream classifier and segmenter, as pure numpy functions.

Kept free of torch so that the same code scores a training run, a benchmark and a test with
hand-computed cases. Conventions, all following the thesis (§4.3) and the team's evaluation
reference (§4.2):

- *Defect is the positive class.* Classification predicts a defect when ``score >= threshold``;
  segmentation predicts a defect pixel when ``probability > threshold`` (the segmenter's rule).
- *0/0 is 0.0* for precision, recall, F1 and accuracy, so that a model that never predicts a defect
  scores 0 rather than an undefined value that would poison a mean over seeds. Quantities whose
  population is empty (AUROC with one class, defect IoU with no defective patch) are ``nan``
  instead: there is nothing to score, and averaging must skip them visibly.
- *Segmentation masks* hold 0 (good), 255 (defect) and 64 (ignore, padding past the image);
  ignore pixels are left out of every pixel count, predictions on them included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from shared.masks import MASK_DEFECT, MASK_GOOD, MASK_IGNORE

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


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class Confusion:
    """Binary confusion counts (defect = positive); derived rates define 0/0 as 0.0."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.total)

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0.0 when nothing is predicted positive."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 0.0 when there are no positives."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """2TP / (2TP + FP + FN), the harmonic mean of precision and recall; 0.0 when TP = FP = FN = 0."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


# --------------------------------------------------------------------------- input checks


def _binary(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as a 1-D bool array; accepts bool or numeric 0/1 (e.g. float32 labels)."""
    array = np.asarray(values)
    if array.dtype != bool:
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be bool or 0/1, got values {np.unique(array)[:5]}")
        array = array.astype(bool)
    return array.reshape(-1)


def _scores(scores: np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if array.size != size:
        raise ValueError(f"scores has {array.size} values, y_true has {size}")
    if np.isnan(array).any():
        raise ValueError("scores contain NaN")
    return array


def _labels_and_scores(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = _binary(y_true, "y_true")
    if labels.size == 0:
        raise ValueError("no samples to score")
    return labels, _scores(scores, labels.size)


def _curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with TP and FP counts when predicting ``score >= threshold``."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # The last index of each run of equal scores: equal scores are one threshold.
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    tps = np.cumsum(sorted_labels, dtype=np.int64)[last]
    fps = last + 1 - tps
    return sorted_scores[last], tps, fps


# --------------------------------------------------------------------------- classification


def binary_confusion(y_true: np.ndarray, y_pred: np.ndarray) -> Confusion:
    """Confusion counts of predicted against true labels (bool or 0/1, any shape, same size)."""
    truth, predicted = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    if truth.size != predicted.size:
        raise ValueError(f"y_true has {truth.size} values, y_pred has {predicted.size}")
    tp = int(np.count_nonzero(truth & predicted))
    fp = int(np.count_nonzero(~truth & predicted))
    fn = int(np.count_nonzero(truth & ~predicted))
    return Confusion(tp=tp, fp=fp, tn=truth.size - tp - fp - fn, fn=fn)


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, as the Mann-Whitney U statistic on ranks (ties count half).

    The probability that a random defect scores above a random good sample; needs no threshold,
    which is why it is reported next to F1. ``nan`` when ``y_true`` holds only one class.
    """
    labels, values = _labels_and_scores(y_true, scores)
    positives = int(np.count_nonzero(labels))
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = float(rankdata(values)[labels].sum())  # ties get their average rank
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """PR-AUC as step-wise average precision: Σ (R_n − R_{n−1}) · P_n over distinct thresholds.

    The definition of scikit-learn's ``average_precision_score`` (no interpolation; equal scores
    form one threshold). Unlike AUROC it reflects the defect share, so it shows how hard the rare
    class is. ``nan`` when ``y_true`` has no positives (recall is undefined).
    """
    labels, values = _labels_and_scores(y_true, scores)
    positives = int(np.count_nonzero(labels))
    if positives == 0:
        return float("nan")
    _, tps, fps = _curve(labels, values)
    precision = tps / (tps + fps)
    recall = tps / positives
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def f1_always_defective(positive_share: float) -> float:
    """F1 of the classifier that calls every sample a defect: 2π / (1 + π).

    Precision is π and recall 1, so this is the floor any reported F1 must clear; on a test set
    with a large defect share it is higher than some published baselines.
    """
    if not 0.0 <= positive_share <= 1.0:
        raise ValueError(f"positive_share must be in [0, 1], got {positive_share}")
    return 2.0 * positive_share / (1.0 + positive_share)


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Thresholded and threshold-free metrics of defect scores in one dict.

    Keys: ``accuracy, precision, recall, f1`` (defect predicted when ``score >= threshold``),
    ``auroc, pr_auc`` (``nan`` when undefined), ``positives, negatives`` (counts), ``threshold``,
    and ``f1_always_defective`` — the F1 floor for this set's defect share.
    """
    labels, values = _labels_and_scores(y_true, scores)
    confusion = binary_confusion(labels, values >= threshold)
    positives = int(np.count_nonzero(labels))
    return {
        "accuracy": confusion.accuracy,
        "precision": confusion.precision,
        "recall": confusion.recall,
        "f1": confusion.f1,
        "auroc": roc_auc(labels, values),
        "pr_auc": average_precision(labels, values),
        "positives": positives,
        "negatives": labels.size - positives,
        "threshold": float(threshold),
        "f1_always_defective": f1_always_defective(positives / labels.size),
    }


def tune_threshold(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The threshold that maximises F1 (predicting ``score >= threshold``) and that F1.

    Meant for validation data: the test set is then scored at this threshold, which separates a
    poorly calibrated model from one that cannot rank. Candidates are the distinct scores; among
    equal F1 values the higher threshold wins (fewer false alarms for the same F1). With no
    positives every F1 is 0 and the highest score is returned.
    """
    labels, values = _labels_and_scores(y_true, scores)
    positives = int(np.count_nonzero(labels))
    thresholds, tps, fps = _curve(labels, values)
    f1 = 2 * tps / (tps + fps + positives)  # 2TP / (2TP + FP + FN); the denominator is never 0
    best = int(np.argmax(f1))  # first maximum = highest threshold, as thresholds descend
    return float(thresholds[best]), float(f1[best])


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Recall among the positives of each label (e.g. Magnetic Tile's Blowhole, Crack, …).

    Shows whether a gain on large, easy defects (Uneven, Fray) hides a loss on small ones.
    Labels without positives are omitted; keys are sorted.
    """
    truth, predicted = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    names = np.asarray(labels, dtype=str).reshape(-1)
    if not truth.size == predicted.size == names.size:
        raise ValueError(f"sizes differ: y_true {truth.size}, y_pred {predicted.size}, labels {names.size}")
    classes, index = np.unique(names[truth], return_inverse=True)
    hits = np.bincount(index, weights=predicted[truth], minlength=classes.size)
    counts = np.bincount(index, minlength=classes.size)
    return {str(name): float(hit / count) for name, hit, count in zip(classes, hits, counts, strict=True)}


# --------------------------------------------------------------------------- segmentation


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
