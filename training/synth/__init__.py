"""Synthetic pump-part frames with defect masks: the embedded default dataset.

Stands in for the private thesis data (3200x2224 grey frames of one machined part) so the
whole pipeline can be built and tested without it.
"""

from training.synth.config import DEFECT_KINDS, DefectKindWeights, SynthConfig
from training.synth.defects import DefectRecord
from training.synth.render import Lighting, Pose, SynthFrame, render_frame
from training.synth.stats import PatchStatistics, random_patch_statistics
from training.synth.writer import SynthSummary, write_synth_set

__all__ = [
    "DEFECT_KINDS",
    "DefectKindWeights",
    "DefectRecord",
    "Lighting",
    "PatchStatistics",
    "Pose",
    "SynthConfig",
    "SynthFrame",
    "SynthSummary",
    "random_patch_statistics",
    "render_frame",
    "write_synth_set",
]
