"""Which patches the segmenter looks at: the classifier's suspects (all patches without a classifier)."""

from __future__ import annotations

import numpy as np


def select_for_segmenter(patch_scores: np.ndarray | None, count: int, threshold: float | None) -> np.ndarray:
    """Indices (ascending, int64) of the patches to segment.

    ``patch_scores`` are classifier probabilities (N,) or None when no classifier runs;
    then, or with ``threshold`` None, every one of the ``count`` patches is segmented.
    """
    if patch_scores is None or threshold is None:
        return np.arange(count, dtype=np.int64)
    scores = np.asarray(patch_scores).reshape(-1)
    if len(scores) != count:
        raise ValueError(f"{len(scores)} classifier scores for {count} patches")
    return np.flatnonzero(scores >= threshold).astype(np.int64)
