"""Model outputs -> defects and verdict: cascade, stitching, components, verdict rule, defect map."""

from edge.postprocess.analysis import FrameAnalysis, analyze_frame, decide
from edge.postprocess.cascade import select_for_segmenter
from edge.postprocess.components import DefectRegion, find_regions
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.defect_map import defect_mask, render_defect_map
from edge.postprocess.scores import Thresholds, sigmoid
from edge.postprocess.stitch import StitchedMap, stitch_defects

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
