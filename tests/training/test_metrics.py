"""Metric functions against hand-computed cases and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared.masks import MASK_DEFECT, MASK_IGNORE
from training.metrics import (
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
    per_class_segmentation,
    roc_auc,
    segmentation_metrics,
    tune_threshold,
)

D, IGN = MASK_DEFECT, MASK_IGNORE

# --------------------------------------------------------------------------- classification


def test_confusion_rates_and_zero_over_zero():
    confusion = Confusion(tp=2, fp=1, tn=6, fn=1)
    assert confusion.accuracy == pytest.approx(0.8)
    assert confusion.precision == pytest.approx(2 / 3)
    assert confusion.recall == pytest.approx(2 / 3)
    assert confusion.f1 == pytest.approx(2 / 3)
    never = Confusion(tp=0, fp=0, tn=5, fn=0)
    assert (never.precision, never.recall, never.f1, never.accuracy) == (0.0, 0.0, 0.0, 1.0)
    assert Confusion(0, 0, 0, 0).accuracy == 0.0


def test_binary_confusion_accepts_bool_and_float_labels():
    y_true = np.array([1.0, 1.0, 0.0, 0.0, 1.0], dtype=np.float32)
    y_pred = np.array([True, False, True, False, True])
    assert binary_confusion(y_true, y_pred) == Confusion(tp=2, fp=1, tn=1, fn=1)
    with pytest.raises(ValueError, match="0/1"):
        binary_confusion(np.array([0, 2]), np.array([True, False]))
    with pytest.raises(ValueError, match="values"):
        binary_confusion(np.array([0, 1]), np.array([True]))


def test_hand_computed_auroc_and_average_precision():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # Pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4.
    assert roc_auc(y, s) == pytest.approx(0.75)
    # Thresholds 0.8, 0.4, 0.35, 0.1: (R, P) = (.5, 1), (.5, .5), (1, 2/3), (1, .5) -> .5*1 + .5*2/3.
    assert average_precision(y, s) == pytest.approx(5 / 6)


def test_ties_count_half_and_form_one_threshold():
    y = np.array([1, 0, 1])
    s = np.array([0.5, 0.5, 0.9])
    # Pairs: (0.5 vs 0.5) = 0.5, (0.9 vs 0.5) = 1 -> 0.75.
    assert roc_auc(y, s) == pytest.approx(0.75)
    # Thresholds 0.9: (R, P) = (.5, 1); 0.5: (1, 2/3). Counting the tied positive first would give 1.0.
    assert average_precision(y, s) == pytest.approx(5 / 6)
    assert average_precision(y[::-1], s[::-1]) == pytest.approx(5 / 6)


def test_single_class_gives_nan_not_a_crash():
    s = np.array([0.2, 0.7, 0.9])
    assert math.isnan(roc_auc(np.zeros(3), s))
    assert math.isnan(roc_auc(np.ones(3), s))
    assert math.isnan(average_precision(np.zeros(3), s))
    assert average_precision(np.ones(3), s) == 1.0
    metrics = classification_metrics(np.zeros(3), s)
    assert math.isnan(metrics["auroc"]) and math.isnan(metrics["pr_auc"])
    assert metrics["f1"] == 0.0 and metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["f1_always_defective"] == 0.0


def test_classification_metrics_at_threshold():
    y = np.array([1, 1, 0, 0, 0, 1])
    s = np.array([0.9, 0.5, 0.5, 0.2, 0.1, 0.3])
    metrics = classification_metrics(y, s, threshold=0.5)  # score >= 0.5 is a defect
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert (metrics["positives"], metrics["negatives"], metrics["threshold"]) == (3, 3, 0.5)
    assert metrics["f1_always_defective"] == pytest.approx(2 / 3)
    # Pairs won: 0.9 beats 3, 0.5 beats 2 and ties 1, 0.3 beats 2 -> 7.5/9.
    assert metrics["auroc"] == pytest.approx(7.5 / 9)
    assert classification_metrics(y, s, threshold=0.51)["recall"] == pytest.approx(1 / 3)


def test_f1_always_defective():
    assert f1_always_defective(0.05) == pytest.approx(0.0952381, abs=1e-7)
    assert f1_always_defective(252 / 1922) == pytest.approx(0.232, abs=1e-3)
    assert f1_always_defective(0.0) == 0.0 and f1_always_defective(1.0) == 1.0
    y = np.array([1] + [0] * 19)
    assert binary_confusion(y, np.ones(20, bool)).f1 == pytest.approx(f1_always_defective(0.05))
    with pytest.raises(ValueError):
        f1_always_defective(1.5)


def test_tune_threshold_picks_the_f1_optimum():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # F1 at 0.8: 2/3, at 0.4: 1/2, at 0.35: 4/5, at 0.1: 2/3.
    threshold, f1 = tune_threshold(y, s)
    assert threshold == 0.35 and f1 == pytest.approx(0.8)
    assert classification_metrics(y, s, threshold)["f1"] == pytest.approx(f1)


def test_tune_threshold_prefers_the_higher_threshold_on_equal_f1():
    y = np.array([1, 0, 0, 1])
    s = np.array([0.9, 0.6, 0.4, 0.2])
    # F1 at 0.9: 2/3 (1 TP, 1 FN); at 0.2: 2/3 (2 TP, 2 FP).
    assert tune_threshold(y, s) == (0.9, pytest.approx(2 / 3))


def test_tune_threshold_uses_tied_scores_as_one_candidate():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.7, 0.7, 0.7, 0.1])
    assert tune_threshold(y, s) == (0.7, pytest.approx(0.8))


def test_per_class_recall():
    y_true = np.array([1, 1, 1, 0, 1, 0, 1])
    y_pred = np.array([True, False, True, True, True, False, False])
    labels = ["Crack", "Crack", "Fray", "Free", "Blowhole", "Crack", "Blowhole"]
    assert per_class_recall(y_true, y_pred, labels) == {"Blowhole": 0.5, "Crack": 0.5, "Fray": 1.0}
    assert per_class_recall(np.zeros(2), np.ones(2, bool), ["a", "b"]) == {}
    with pytest.raises(ValueError, match="sizes"):
        per_class_recall(y_true, y_pred, labels[:-1])


def test_empty_or_nan_scores_are_rejected():
    with pytest.raises(ValueError):
        roc_auc(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.array([0, 1]), np.array([0.1, np.nan]))


# --------------------------------------------------------------------------- segmentation


def _masks() -> tuple[np.ndarray, np.ndarray]:
    """Four 4x4 patches: two defective (IoU 1/3 and 1/2), one healthy with 5 predicted pixels, one clean."""
    target = np.zeros((4, 4, 4), np.uint8)
    predicted = np.zeros((4, 4, 4), bool)
    target[0, :2, :2] = D  # 4 defect pixels
    predicted[0, :2, 1:3] = True  # TP 2, FP 2, FN 2
    target[1, 3, 3] = D
    predicted[1, 3, 2:4] = True  # TP 1 (one shared pixel), FP 1, FN 0
    predicted[2, 0, :4] = True
    predicted[2, 1, 0] = True  # 5 predicted pixels on a healthy patch
    return target, predicted


def test_segmentation_hand_computed():
    target, predicted = _masks()
    assert defect_iou(target, predicted) == pytest.approx(3 / 8)  # (2+1) / (3 + 3 + 2)
    assert defect_iou_per_patch_mean(target, predicted) == pytest.approx((1 / 3 + 1 / 2) / 2)
    # Good pixels 12 + 15 + 16 + 16 = 59, predicted defect on them 2 + 1 + 5 = 8, defect predicted good 2.
    assert healthy_iou(target, predicted) == pytest.approx(51 / 61)
    assert mean_iou(target, predicted) == pytest.approx((3 / 8 + 51 / 61) / 2)


def test_one_shared_pixel_is_a_true_positive_and_k_decides_the_healthy_patch():
    target, predicted = _masks()
    assert patch_confusion(target, predicted) == Confusion(tp=2, fp=1, tn=1, fn=0)
    assert patch_confusion(target, predicted, min_fp_pixels=5) == Confusion(tp=2, fp=1, tn=1, fn=0)
    assert patch_confusion(target, predicted, min_fp_pixels=6) == Confusion(tp=2, fp=0, tn=2, fn=0)
    assert patch_confusion(target, predicted, min_fp_pixels=16) == Confusion(tp=2, fp=0, tn=2, fn=0)


def test_a_prediction_beside_the_defect_is_a_false_negative_not_a_false_positive():
    target = np.zeros((1, 4, 4), np.uint8)
    target[0, 0, 0] = D
    predicted = np.zeros((1, 4, 4), bool)
    predicted[0, 3, 3] = True
    assert patch_confusion(target, predicted) == Confusion(tp=0, fp=0, tn=0, fn=1)
    assert defect_iou(target, predicted) == 0.0


def test_segmentation_metrics_keys_and_values():
    target, predicted = _masks()
    metrics = segmentation_metrics(target, predicted.astype(np.float32) * 0.95)
    assert metrics["defect_iou"] == pytest.approx(3 / 8)
    assert metrics["defect_iou_patch_mean"] == pytest.approx(5 / 12)
    assert metrics["healthy_iou"] == pytest.approx(51 / 61)
    assert metrics["mean_iou"] == pytest.approx((3 / 8 + 51 / 61) / 2)
    assert (metrics["defect_patches"], metrics["healthy_patches"]) == (2, 2)
    assert metrics["patch_accuracy_k1"] == pytest.approx(3 / 4)
    assert metrics["patch_precision_k1"] == pytest.approx(2 / 3)
    assert metrics["patch_recall_k1"] == 1.0
    assert metrics["patch_f1_k1"] == pytest.approx(4 / 5)
    for name in ("accuracy", "precision", "recall", "f1"):
        assert metrics[f"patch_{name}_k16"] == 1.0


def test_segmentation_threshold_is_strict():
    target, predicted = _masks()
    at_threshold = segmentation_metrics(target, predicted.astype(np.float32) * 0.9, threshold=0.9)
    assert at_threshold["defect_iou"] == 0.0 and at_threshold["patch_recall_k1"] == 0.0


def test_ignore_pixels_are_excluded_from_every_count():
    target, predicted = _masks()
    padded_target = np.pad(target, ((0, 0), (0, 2), (0, 2)), constant_values=IGN)
    padded_predicted = np.pad(predicted, ((0, 0), (0, 2), (0, 2)))
    padded_predicted[:, 4:, :] = True  # predictions on ignore pixels, also on the clean patch
    reference = segmentation_metrics(target, predicted.astype(np.float32))
    assert segmentation_metrics(padded_target, padded_predicted.astype(np.float32)) == reference
    assert patch_confusion(padded_target, padded_predicted).tn == 1


def test_no_defect_anywhere():
    target = np.zeros((3, 4, 4), np.uint8)
    target[2, 0, :] = IGN
    predicted = np.zeros((3, 4, 4), bool)
    predicted[0, 0, :2] = True
    metrics = segmentation_metrics(target, predicted.astype(np.float32))
    assert math.isnan(metrics["defect_iou"]) and math.isnan(metrics["defect_iou_patch_mean"])
    assert metrics["healthy_iou"] == pytest.approx(42 / 44)  # 44 good pixels, 2 predicted defect
    assert math.isnan(metrics["mean_iou"])
    assert patch_confusion(target, predicted) == Confusion(tp=0, fp=1, tn=2, fn=0)
    assert metrics["patch_recall_k1"] == 0.0 and metrics["patch_accuracy_k1"] == pytest.approx(2 / 3)
    nothing = segmentation_metrics(target, np.zeros(target.shape, np.float32))
    assert nothing["healthy_iou"] == 1.0 and nothing["patch_accuracy_k1"] == 1.0


def test_perfect_and_all_wrong_predictions():
    target, _ = _masks()
    target[3, 0, :] = IGN
    perfect = target == D
    metrics = segmentation_metrics(target, perfect.astype(np.float32))
    assert all(value == 1.0 for key, value in metrics.items() if not key.endswith("_patches")), metrics
    wrong = segmentation_metrics(target, (target == 0).astype(np.float32))
    for key in ("defect_iou", "defect_iou_patch_mean", "healthy_iou", "mean_iou"):
        assert wrong[key] == 0.0
    for name in ("accuracy", "precision", "recall", "f1"):
        assert wrong[f"patch_{name}_k1"] == 0.0


def test_segmentation_input_checks():
    target, predicted = _masks()
    with pytest.raises(ValueError, match="shape"):
        defect_iou(target, predicted[:, :3])
    with pytest.raises(ValueError, match="bool"):
        defect_iou(target, predicted.astype(np.uint8))
    with pytest.raises(ValueError, match="target values"):
        defect_iou(target // 2, predicted)
    with pytest.raises(ValueError, match="min_fp_pixels"):
        patch_confusion(target, predicted, min_fp_pixels=0)


# --------------------------------------------------------------------------- properties

labelled_scores = st.lists(st.tuples(st.booleans(), st.integers(-6, 6)), min_size=1, max_size=25)


def _split(pairs: list[tuple[bool, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.float64)


def _brute_auroc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y], s[~y]
    if not pos.size or not neg.size:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (pos.size * neg.size)


def _brute_average_precision(y: np.ndarray, s: np.ndarray) -> float:
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(s.tolist()), reverse=True):
        confusion = binary_confusion(y, s >= threshold)
        total += (confusion.recall - previous_recall) * confusion.precision
        previous_recall = confusion.recall
    return total if y.any() else math.nan


@settings(max_examples=150, deadline=None)
@given(labelled_scores)
def test_auroc_and_ap_match_brute_force(pairs):
    y, s = _split(pairs)
    assert roc_auc(y, s) == pytest.approx(_brute_auroc(y, s), nan_ok=True)
    assert average_precision(y, s) == pytest.approx(_brute_average_precision(y, s), nan_ok=True)


@settings(max_examples=100, deadline=None)
@given(labelled_scores)
def test_auroc_is_rank_based(pairs):
    y, s = _split(pairs)
    increasing = s**3 + 2 * s  # strictly increasing, exact on these integers
    assert roc_auc(y, increasing) == pytest.approx(roc_auc(y, s), nan_ok=True)
    assert average_precision(y, increasing) == pytest.approx(average_precision(y, s), nan_ok=True)
    if y.any() and not y.all():
        assert roc_auc(y, s) + roc_auc(y, -s) == pytest.approx(1.0)  # ties count half both ways


@settings(max_examples=100, deadline=None)
@given(labelled_scores)
def test_tune_threshold_is_the_highest_best_candidate(pairs):
    y, s = _split(pairs)
    f1 = {float(t): binary_confusion(y, s >= t).f1 for t in np.unique(s)}
    best = max(f1.values())
    assert tune_threshold(y, s) == (max(t for t, v in f1.items() if v == best), pytest.approx(best))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.uint8, (3, 5, 5), elements=st.sampled_from([0, IGN, D])),
    hnp.arrays(bool, (3, 5, 5)),
    st.integers(1, 6),
)
def test_segmentation_matches_a_per_patch_reference(target, predicted, k):
    labelled = target != IGN
    truth, pred = target == D, predicted & labelled
    defective = truth.any(axis=(1, 2))
    tp = [(t & p).sum() for t, p in zip(truth, pred, strict=True)]
    union = [(t | p).sum() for t, p in zip(truth, pred, strict=True)]
    if defective.any():
        expected = sum(np.array(tp)[defective]) / sum(np.array(union)[defective])
        assert defect_iou(target, predicted) == pytest.approx(expected)
        per_patch = [a / b for a, b, d in zip(tp, union, defective, strict=True) if d]
        assert defect_iou_per_patch_mean(target, predicted) == pytest.approx(np.mean(per_patch))
    else:
        assert math.isnan(defect_iou(target, predicted))
    good, pred_good = labelled & ~truth, labelled & ~pred
    if (good | pred_good).any():
        expected_healthy = (good & pred_good).sum() / (good | pred_good).sum()
        assert healthy_iou(target, predicted) == pytest.approx(expected_healthy)
    outcomes = [
        ("tp" if (t & p).any() else "fn") if d else ("fp" if p.sum() >= k else "tn")
        for t, p, d in zip(truth, pred, defective, strict=True)
    ]
    confusion = patch_confusion(target, predicted, min_fp_pixels=k)
    assert confusion == Confusion(*(outcomes.count(name) for name in ("tp", "fp", "tn", "fn")))


def test_per_class_segmentation_keeps_a_missed_small_class_visible():
    target = np.zeros((3, 8, 8), np.uint8)
    target[0, :6, :6] = MASK_DEFECT  # a large blowhole, found
    target[1, 2, :] = MASK_DEFECT  # a 1 px crack, missed
    target[2, 0, 0] = MASK_IGNORE  # a healthy patch: not scored per class
    probabilities = np.zeros((3, 8, 8), np.float32)
    probabilities[0, :6, :6] = 0.9
    result = per_class_segmentation(target, probabilities, ["Blowhole", "Crack", "Free"], threshold=0.5)
    assert result["iou"] == {"Blowhole": 1.0, "Crack": 0.0}
    assert result["recall"] == {"Blowhole": 1.0, "Crack": 0.0}
    pooled = segmentation_metrics(target, probabilities, 0.5)["defect_iou"]
    assert pooled == pytest.approx(36 / 44)  # the pooled figure hides the crack
    with pytest.raises(ValueError, match="2 labels for 3 patches"):
        per_class_segmentation(target, probabilities, ["a", "b"], 0.5)
