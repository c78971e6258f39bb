"""One frame's model outputs -> defect regions, patch scores and the OK/NG verdict (pure).

The call sequence the runtime follows per frame::

    layout, batch = tiler.tile(frame.image)
    class_logits = classifier.infer(batch)                         # (N, 1), optional
    scores = sigmoid(class_logits[:, 0])
    chosen = select_for_segmenter(scores, layout.count, thresholds.cascade)
    seg_logits = segmenter.infer(batch[chosen])                    # (k, 1, P, P), optional
    analysis = analyze_frame(layout, thresholds, config, class_logits, seg_logits, chosen)
    picture = render_defect_map(frame.image, analysis, thresholds, config)  # published if the policy wants it
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.postprocess.components import DefectRegion, find_regions
from edge.postprocess.config import PostprocessConfig, VerdictRule
from edge.postprocess.scores import Thresholds, sigmoid
from edge.postprocess.stitch import StitchedMap, stitch_defects
from edge.tiling import TileLayout
from shared.messages import Defect, PatchSummary, Verdict


@dataclass(frozen=True, eq=False)
class FrameAnalysis:
    """Everything postprocessing concluded about one frame."""

    verdict: Verdict
    reasons: tuple[str, ...]  # why NG: "defect regions", "classifier" (empty when OK)
    layout: TileLayout
    defects: tuple[DefectRegion, ...]  # highest max_score first, at most max_defects
    defects_omitted: int  # regions beyond max_defects
    small_regions: int  # regions below min_defect_area_px (noise)
    patch_scores: np.ndarray | None  # (N,) classifier probabilities; None without a classifier
    flagged_patches: np.ndarray  # indices with score >= decision threshold
    segmented_patches: np.ndarray  # indices the segmenter looked at
    stitched: StitchedMap | None  # defect probabilities where any pixel passed (None: nowhere)

    def patch_summary(self) -> PatchSummary:
        scores = self.patch_scores
        return PatchSummary(
            count=self.layout.count,
            max_score=float(scores.max()) if scores is not None and len(scores) else None,
            flagged=len(self.flagged_patches),
        )

    def defect_messages(self) -> list[Defect]:
        return [region.to_message() for region in self.defects]

    @property
    def worst_score(self) -> float:
        """Highest defect probability of any region or patch (0 when nothing was scored)."""
        candidates = [region.max_score for region in self.defects]
        if self.patch_scores is not None and len(self.patch_scores):
            candidates.append(float(self.patch_scores.max()))
        return max(candidates, default=0.0)


def decide(rule: VerdictRule, classifier_ng: bool | None, segmenter_ng: bool | None) -> bool:
    """Apply the verdict rule to the evidence of the models that ran (None: model absent)."""
    present = [ng for ng in (classifier_ng, segmenter_ng) if ng is not None]
    if not present:
        return False
    if rule == "either":
        return any(present)
    if rule == "both":
        return all(present)
    preferred = segmenter_ng if rule == "segmenter" else classifier_ng
    return preferred if preferred is not None else present[0]


def analyze_frame(
    layout: TileLayout,
    thresholds: Thresholds,
    config: PostprocessConfig,
    classifier_logits: np.ndarray | None = None,
    segmenter_logits: np.ndarray | None = None,
    segmented: np.ndarray | None = None,
) -> FrameAnalysis:
    """Judge one frame from raw model outputs.

    Args:
        layout: the frame's tiles (``FrameTiler.tile``).
        thresholds: thresholds in force (``Thresholds.from_bundles``).
        config: verdict rule and filters.
        classifier_logits: (N, 1) or (N,) for all N patches, or None without a classifier.
        segmenter_logits: (k, 1, P, P) for the patches in ``segmented``, or None without a segmenter.
        segmented: indices of the patches ``segmenter_logits`` belong to (None: all N).
    """
    count = layout.count
    scores, flagged = None, np.zeros(0, dtype=np.int64)
    classifier_ng = None
    if classifier_logits is not None:
        if thresholds.decision is None:
            raise ValueError("classifier outputs given but no decision threshold (no classifier bundle?)")
        scores = sigmoid(np.asarray(classifier_logits).reshape(-1))
        if len(scores) != count:
            raise ValueError(f"{len(scores)} classifier outputs for {count} patches")
        flagged = np.flatnonzero(scores >= thresholds.decision).astype(np.int64)
        classifier_ng = len(flagged) > 0

    chosen = np.arange(count, dtype=np.int64) if segmented is None else np.asarray(segmented, dtype=np.int64)
    stitched, regions, small = None, [], 0
    segmenter_ng = None
    if segmenter_logits is not None:
        if thresholds.pixel is None:
            raise ValueError("segmenter outputs given but no pixel threshold (no segmenter bundle?)")
        if len(segmenter_logits) != len(chosen):
            raise ValueError(f"{len(segmenter_logits)} segmenter outputs for {len(chosen)} selected patches")
        probabilities = sigmoid(segmenter_logits)
        stitched = stitch_defects(layout, probabilities, chosen, thresholds.pixel)
        if stitched is not None:
            regions, small = find_regions(stitched, thresholds.pixel, config.min_defect_area_px)
        segmenter_ng = len(regions) > 0
    else:
        chosen = np.zeros(0, dtype=np.int64)

    ng = decide(config.verdict_rule, classifier_ng, segmenter_ng)
    reasons = tuple(
        reason for reason, fired in (("defect regions", segmenter_ng), ("classifier", classifier_ng)) if fired and ng
    )
    return FrameAnalysis(
        verdict=Verdict.NG if ng else Verdict.OK,
        reasons=reasons,
        layout=layout,
        defects=tuple(regions[: config.max_defects]),
        defects_omitted=max(0, len(regions) - config.max_defects),
        small_regions=small,
        patch_scores=scores,
        flagged_patches=flagged,
        segmented_patches=chosen,
        stitched=stitched,
    )
