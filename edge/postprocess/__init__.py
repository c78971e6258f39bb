"""Model outputs -> defects and verdict: cascade, stitching, components, verdict rule, defect map.

The names below load on first use (PEP 562): importing a light submodule such as
``edge.postprocess.config`` runs this file, and must not pull in OpenCV, TensorRT or SQLAlchemy
(validating settings stays cheap, house style 10).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "edge.postprocess.analysis": ("FrameAnalysis", "analyze_frame", "decide"),
    "edge.postprocess.cascade": ("select_for_segmenter",),
    "edge.postprocess.components": ("DefectRegion", "find_regions"),
    "edge.postprocess.config": ("PostprocessConfig",),
    "edge.postprocess.defect_map": ("defect_mask", "render_defect_map"),
    "edge.postprocess.scores": ("Thresholds", "sigmoid"),
    "edge.postprocess.stitch": ("StitchedMap", "stitch_defects"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "DefectRegion",
    "FrameAnalysis",
    "PostprocessConfig",
    "StitchedMap",
    "Thresholds",
    "analyze_frame",
    "decide",
    "defect_mask",
    "find_regions",
    "render_defect_map",
    "select_for_segmenter",
    "sigmoid",
    "stitch_defects",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
