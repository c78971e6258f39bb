"""Classification metrics (defect = positive class), as pure numpy functions.

Conventions (thesis §4.3, evaluation reference §4.2): a defect is predicted when
``score >= threshold``; *0/0 is 0.0* for precision, recall, F1 and accuracy, so that a model
that never predicts a defect scores 0 rather than an undefined value that would poison a mean
over seeds; AUROC with one class present is ``nan`` (nothing to score; averaging must skip it
visibly). Kept free of torch so the same code scores a run, a benchmark and a hand-computed test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "Confusion",
    "average_precision",
    "binary_confusion",
    "classification_metrics",
    "f1_always_defective",
    "per_class_recall",
    "roc_auc",
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
