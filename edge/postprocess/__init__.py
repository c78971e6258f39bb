"""Model outputs -> defects and verdict: cascade, stitching, components, verdict rule, defect map.

The names below load on first use (PEP 562): importing a light submodule such as
``edge.postprocess.config`` runs this file, and must not pull in OpenCV, TensorRT or SQLAlchemy
(validating settings stays cheap, house style 10).
"""

from __future__ import annotations

from shared.lazy_exports import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "edge.postprocess.analysis": ("FrameAnalysis", "analyze_frame", "decide"),
    "edge.postprocess.cascade": ("select_for_segmenter",),
    "edge.postprocess.components": ("DefectRegion", "find_regions"),
    "edge.postprocess.config": ("PostprocessConfig",),
    "edge.postprocess.defect_map": ("defect_mask", "render_defect_map"),
    "edge.postprocess.scores": ("Thresholds", "sigmoid"),
    "edge.postprocess.stitch": ("StitchedMap", "stitch_defects"),
}


__getattr__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
