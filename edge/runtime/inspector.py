"""One frame through the models: tile -> classifier -> (cascade) segmenter -> defects -> verdict.

Synchronous and thread-confined (one inspector per inference worker), so the station's
worker, ``pump-edge bench`` and the tests run exactly the same code. Each stage's time is
recorded, which is what the bench reports per stage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.backends import InferenceBackend
from edge.postprocess import FrameAnalysis, PostprocessConfig, Thresholds, analyze_frame, select_for_segmenter
from edge.postprocess.scores import sigmoid
from edge.sources.base import Frame
from edge.tiling import FrameTiler, TileLayout
from shared.bundle import LoadedBundle
from shared.patching import cut_tile

STAGES = ("tile", "classify", "segment", "postprocess")


@dataclass(frozen=True, eq=False)
class Inspection:
    """What one frame produced, plus what the uncertain-patch store needs."""

    frame: Frame
    analysis: FrameAnalysis
    segmenter_max_scores: np.ndarray | None  # (N,) per patch; 0 where the segmenter did not look
    segmenter_defect_pixels: np.ndarray | None  # (N,) pixels above the pixel threshold, per patch
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    @property
    def layout(self) -> TileLayout:
        return self.analysis.layout


class TileCrops(Sequence):
    """The frame's tiles at full resolution (before resizing), cut only when read.

    The store saves the 256 px crop of the few patches it logs; cutting all 64 would be waste.
    """

    def __init__(self, image: np.ndarray, layout: TileLayout) -> None:
        self._image, self._layout = image, layout

    def __len__(self) -> int:
        return self._layout.count

    def __getitem__(self, index):  # noqa: ANN001 - Sequence protocol
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return cut_tile(self._image, self._layout.boxes[index], self._layout.roi)


class Inspector:
    """Runs the loaded models on frames; at least one of classifier/segmenter is required."""

    def __init__(
        self,
        tiler: FrameTiler,
        thresholds: Thresholds,
        postprocess: PostprocessConfig,
        classifier: InferenceBackend | None,
        segmenter: InferenceBackend | None,
        cascade: bool = False,
    ) -> None:
        if classifier is None and segmenter is None:
            raise ValueError("nothing to run: configure bundles.classifier and/or bundles.segmenter")
        self.tiler, self.thresholds, self.postprocess = tiler, thresholds, postprocess
        self.classifier, self.segmenter = classifier, segmenter
        self.cascade = cascade and classifier is not None and segmenter is not None

    def inspect(self, frame: Frame) -> Inspection:
        seconds = dict.fromkeys(STAGES, 0.0)
        started = time.perf_counter()
        layout, batch = self.tiler.tile(frame.image)
        now = time.perf_counter()
        seconds["tile"], started = now - started, now

        class_logits = None
        if self.classifier is not None:
            class_logits = self.classifier.infer(batch)
            now = time.perf_counter()
            seconds["classify"], started = now - started, now

        seg_logits, chosen = None, None
        if self.segmenter is not None:
            scores = sigmoid(class_logits[:, 0]) if class_logits is not None else None
            chosen = (
                select_for_segmenter(scores, layout.count, self.thresholds.cascade)
                if self.cascade
                else np.arange(layout.count, dtype=np.int64)
            )
            seg_logits = self.segmenter.infer(batch[chosen]) if len(chosen) else np.zeros((0, *batch.shape[1:]))
            now = time.perf_counter()
            seconds["segment"], started = now - started, now

        analysis = analyze_frame(layout, self.thresholds, self.postprocess, class_logits, seg_logits, chosen)
        seg_max, seg_pixels = self._segmenter_patch_stats(layout.count, seg_logits, chosen)
        seconds["postprocess"] = time.perf_counter() - started
        return Inspection(frame, analysis, seg_max, seg_pixels, seconds)

    def _segmenter_patch_stats(
        self, count: int, seg_logits: np.ndarray | None, chosen: np.ndarray | None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-patch max probability and defect-pixel count (the store's disagreement rule needs them)."""
        if seg_logits is None or chosen is None:
            return None, None
        max_scores = np.zeros(count, dtype=np.float32)
        pixels = np.zeros(count, dtype=np.int64)
        if len(chosen):
            probabilities = sigmoid(seg_logits.reshape(len(chosen), -1))
            max_scores[chosen] = probabilities.max(axis=1)
            pixels[chosen] = (probabilities > self.thresholds.pixel).sum(axis=1)
        return max_scores, pixels

    def close(self) -> None:
        for backend in (self.classifier, self.segmenter):
            if backend is not None:
                backend.close()


def open_inspector(
    tiler: FrameTiler,
    thresholds: Thresholds,
    postprocess: PostprocessConfig,
    bundles: dict[str, LoadedBundle],
    make_backend,  # noqa: ANN001 - (task, LoadedBundle) -> InferenceBackend
    cascade: bool = False,
    warmup: bool = True,
) -> Inspector:
    """Create, probe and warm up the backends for the loaded bundles (a TensorRT engine may build here).

    Raises BackendError when a model fails the load-time probe (non-finite or absurd outputs).
    """
    backends: dict[str, InferenceBackend] = {}
    try:
        for task, bundle in bundles.items():
            backends[task] = make_backend(task, bundle)
            backends[task].probe()  # always: a model that outputs NaN must not reach the line
            if warmup:
                backends[task].warmup()
    except BaseException:
        for backend in backends.values():
            backend.close()
        raise
    return Inspector(tiler, thresholds, postprocess, backends.get("classifier"), backends.get("segmenter"), cascade)
