"""Logits to probabilities, and the thresholds in force (bundle values unless overridden).

Thresholds are model artefacts: they come from the bundle that was tuned with them, and a
configured override is explicit. The comparison rules are training's: a patch is flagged
when ``score >= decision``; a pixel is defect when ``probability > pixel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.postprocess.config import PostprocessConfig
from shared.bundle import BundleManifest


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """float32 probabilities; saturates instead of overflowing for large logits."""
    values = np.asarray(logits, dtype=np.float32)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-values))).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Thresholds:
    """The thresholds one frame is judged with (None: that model is not loaded)."""

    decision: float | None  # classifier: patch flagged when probability >= decision
    pixel: float | None  # segmenter: pixel is defect when probability > pixel
    cascade: float | None  # classifier probability from which the segmenter looks at a patch

    @classmethod
    def from_bundles(
        cls,
        classifier: BundleManifest | None,
        segmenter: BundleManifest | None,
        config: PostprocessConfig | None = None,
    ) -> Thresholds:
        config = config or PostprocessConfig()
        decision = None
        if classifier is not None:
            decision = config.decision_threshold
            decision = classifier.thresholds["decision"] if decision is None else decision
        pixel = None
        if segmenter is not None:
            pixel = segmenter.thresholds["pixel"] if config.pixel_threshold is None else config.pixel_threshold
        cascade = config.cascade_threshold if config.cascade_threshold is not None else decision
        return cls(decision=decision, pixel=pixel, cascade=cascade if classifier is not None else None)
