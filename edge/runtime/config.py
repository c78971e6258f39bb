"""``[bundles]``, ``[pipeline]`` and ``[roi]`` settings: which models run, how frames flow between threads,
and where a frame is inspected."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import ConfigBool, NonEmptyPath


class BundlesConfig(BaseModel):
    """The model bundles a station runs (exported by ``pump-train export``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    classifier: NonEmptyPath | None = Field(
        None, description="Classifier bundle folder (per-patch defect probability)."
    )
    segmenter: NonEmptyPath | None = Field(None, description="Segmenter bundle folder (per-patch defect mask).")
    follow_bundle_geometry: ConfigBool = Field(
        False,
        description="Use the geometry the bundles were trained with instead of refusing bundles whose geometry "
        "differs from [geometry].",
    )
    watch_dir: NonEmptyPath | None = Field(
        None,
        description="Folder watched for new bundle versions, each a complete bundle folder renamed into place "
        "(names starting with '.' are ignored); cmd/reload also resolves a bare version here. None: not watched.",
    )
    watch_interval_s: float = Field(2.0, ge=0.1, le=600, description="How often watch_dir is scanned (s).")


Backpressure = Literal["auto", "drop-oldest", "block"]


class PipelineConfig(BaseModel):
    """Queues, backpressure, cascade and the watchdog."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    queue_size: int = Field(2, ge=1, le=64, description="Frames waiting between the source and inference.")
    backpressure: Backpressure = Field(
        "auto",
        description="When the queue is full: drop-oldest (count it as skipped; a line never waits for the "
        "station), block (the source waits; nothing is lost). auto = drop-oldest for a camera (it cannot wait), "
        "block for sources whose inputs wait on disk (folders, watched or not; video files).",
    )
    cascade: ConfigBool = Field(
        True,
        description="Run the segmenter only on patches the classifier flags (postprocess.cascade_threshold). "
        "Default since measured on planted line frames (README): 11x less time per frame on a CPU, and a "
        "segmenter trained on defective patches judges every clean frame NG when it sees all 64 patches.",
    )
    log_uncertain: ConfigBool = Field(True, description="Save uncertain patches to the store (needs a classifier).")
    watchdog_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="A frame in inference for longer than this counts as a stuck worker."
    )
    max_restarts: int = Field(
        5, ge=0, le=1000, description="Worker restarts allowed within restart_window_s; then exit 1."
    )
    restart_window_s: float = Field(60.0, gt=0, le=86400, description="Window of the restart budget.")
    drain_timeout_s: float = Field(
        20.0, gt=0, le=3600, description="On SIGTERM/--once: how long to wait for queued frames and the outbox."
    )
    warmup: ConfigBool = Field(True, description="Run one batch through each backend before the first frame.")

    @model_validator(mode="after")
    def _budget(self) -> PipelineConfig:
        if self.max_restarts > 0 and self.restart_window_s < self.watchdog_timeout_s:
            raise ValueError("restart_window_s must be at least watchdog_timeout_s")
        return self


DEFAULT_DATA_DIR = Path("edge-data")


class RoiConfig(BaseModel):
    """A fixed ROI box in frame pixels, for parts that do not sit at the frame's centre."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    x: int = Field(ge=0, le=65535, description="Left edge of the ROI in frame px.")
    y: int = Field(ge=0, le=65535, description="Top edge of the ROI in frame px.")
    width: int = Field(gt=0, le=65535, description="ROI width in frame px (clipped to the frame).")
    height: int = Field(gt=0, le=65535, description="ROI height in frame px (clipped to the frame).")
