"""Which patches of one frame are worth keeping for retraining (a pure function).

A patch is *uncertain* when the classifier's score lies in the band ``[low, high]``
(default 0.3-0.7), or when classifier and segmenter disagree (one says defect, the other
does not; see :class:`~edge.store.config.DisagreementRule`). At most ``cap`` patches of a
frame are kept, most informative first: patches with both reasons, then the one whose
score is closest to the band's centre, then the lower tile index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from edge.store.config import DisagreementRule


class Reason(str, Enum):
    """Why a patch was logged."""

    BAND = "band"
    DISAGREEMENT = "disagreement"
    BOTH = "band+disagreement"


@dataclass(frozen=True)
class Selected:
    """One patch chosen for logging: its tile index in the frame and why."""

    index: int
    reason: Reason


def select_patches(
    classifier_scores: Sequence[float],
    segmenter_defect_pixels: Sequence[int] | None,
    band_low: float,
    band_high: float,
    rule: DisagreementRule,
    cap: int,
) -> list[Selected]:
    """Patches of one frame to log, most informative first, at most ``cap``.

    Args:
        classifier_scores: defect probability per tile, in tile order.
        segmenter_defect_pixels: per tile, the segmenter's defect pixels (above its threshold);
            ``None`` when no segmenter runs (then only the band applies).
        band_low, band_high: the uncertainty band, inclusive at both ends.
        rule: the disagreement rule.
        cap: the most patches to return.
    """
    if segmenter_defect_pixels is not None and len(segmenter_defect_pixels) != len(classifier_scores):
        raise ValueError(
            f"{len(classifier_scores)} classifier scores but {len(segmenter_defect_pixels)} segmenter counts"
        )
    if cap <= 0:
        return []
    centre = (band_low + band_high) / 2.0
    candidates: list[tuple[int, float, int, Reason]] = []
    for index, raw in enumerate(classifier_scores):
        score = float(raw)
        in_band = band_low <= score <= band_high
        disagrees = False
        if rule.enabled and segmenter_defect_pixels is not None:
            classifier_defect = score >= rule.classifier_threshold
            segmenter_defect = int(segmenter_defect_pixels[index]) >= rule.min_defect_pixels
            disagrees = classifier_defect != segmenter_defect
        if in_band and disagrees:
            reason = Reason.BOTH
        elif in_band:
            reason = Reason.BAND
        elif disagrees:
            reason = Reason.DISAGREEMENT
        else:
            continue
        candidates.append((0 if reason is Reason.BOTH else 1, round(abs(score - centre), 9), index, reason))
    candidates.sort(key=lambda item: item[:3])
    return [Selected(index, reason) for _, _, index, reason in candidates[:cap]]
