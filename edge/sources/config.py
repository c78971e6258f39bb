"""``[source]`` settings: where frames come from and how they become model pixels."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.config import ConfigBool
from shared.imagefiles import DEFAULT_MAX_PIXELS
from shared.pixels import ColorPolicy, DepthPolicy

# The keys of ``edge.sources.registry.SOURCE_KINDS``, as data: validating a spec must not import
# every source and OpenCV (a test keeps the two equal).
SOURCE_KIND_NAMES: tuple[str, ...] = ("folder", "video", "camera", "synthetic")


class SourceConfig(BaseModel):
    """One frame source, chosen by ``spec`` (``KIND:TARGET``), and its options."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    spec: str = Field(
        "camera:0",
        description="KIND:TARGET - folder:DIR (image files, sorted), video:FILE, camera:INDEX or camera:URL "
        "(RTSP/HTTP/file, reconnected when it drops), synthetic:WIDTHxHEIGHT (generated test frames).",
    )
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="Source name in frame ids and events (default: the kind)."
    )
    watch: ConfigBool = Field(
        False,
        description="folder: keep watching for new files instead of stopping after one pass. A watched folder is "
        "a queue of files: under pipeline.backpressure = auto it blocks while the station is busy, never drops.",
    )
    poll_s: float = Field(0.25, gt=0, le=3600, description="folder watch: seconds between directory scans.")
    settle_s: float = Field(
        0.5,
        ge=0,
        le=3600,
        description="folder watch: a file is read only once its size and mtime stayed unchanged this long "
        "(partially written files are skipped until complete).",
    )
    color: ColorPolicy = Field(
        ColorPolicy.GRAY, description="gray: convert colour to luma (gray bundles); keep: BGR (bgr bundles)."
    )
    depth: DepthPolicy = Field(
        DepthPolicy.AUTO,
        description="How 16-bit frames become 8-bit (shared.pixels): scale16 (v/257), scale12 (12-bit data in "
        "16-bit files), minmax, or auto: the header's significant bits (PNG sBIT, TIFF MaxSampleValue) or values "
        "above 4095 decide; a 16-bit frame whose values all fit in 12 bits with no such header is refused (a "
        "frame-error naming this setting) rather than read 16x too dark or too bright.",
    )
    max_frame_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        le=1 << 31,
        description="Refuse image files whose header declares more pixels (width x height), before decoding: a "
        "74-byte PNG can declare 100000 x 100000. Default 32 MP = 4.5x the line's 3200 x 2224 frames; the worst "
        "valid file at the limit (16-bit RGBA) decodes to 256 MB, within the station's 1 GB. Video and camera "
        "sources check their declared frame size against it too.",
    )
    follow_external_symlinks: ConfigBool = Field(
        False,
        description="folder: read symlinks whose target lies outside the folder (default: refused with a "
        "frame-error; links inside the folder are read).",
    )
    remember_inspected: ConfigBool = Field(
        True,
        description="folder: record inspected files (name, size, mtime) in <data_dir>/sources/<name>.sqlite3 once "
        "their result is in the outbox, so a restart does not inspect them again; a changed file is read again.",
    )
    expected_width_px: int | None = Field(
        None, gt=0, le=65535, description="Refuse frames of another width (None: any)."
    )
    expected_height_px: int | None = Field(
        None, gt=0, le=65535, description="Refuse frames of another height (None: any)."
    )
    max_frames: int | None = Field(None, ge=1, description="Stop after this many frames (None: until the input ends).")
    reconnect_initial_s: float = Field(0.5, gt=0, le=3600, description="camera: first wait before reconnecting.")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="camera: longest wait between reconnect attempts.")
    reconnect_factor: float = Field(
        2.0, ge=1.0, le=10.0, description="camera: the wait grows by this factor per failure."
    )
    max_reconnects: int | None = Field(
        None, ge=0, le=1_000_000, description="camera: give up after this many failed attempts in a row (None: never)."
    )
    open_timeout_s: float = Field(10.0, gt=0, le=600, description="camera URL: how long opening the stream may take.")
    read_timeout_s: float = Field(
        5.0, gt=0, le=600, description="camera URL: a read waiting longer counts as a dropout."
    )

    @field_validator("spec")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        kind, sep, target = value.partition(":")
        if not sep or not target:
            raise ValueError(f"must be KIND:TARGET with KIND one of {sorted(SOURCE_KIND_NAMES)}, got {value!r}")
        if kind not in SOURCE_KIND_NAMES:
            raise ValueError(f"unknown source kind {kind!r}; choose one of {sorted(SOURCE_KIND_NAMES)}")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> SourceConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"reconnect_max_s ({self.reconnect_max_s}) must be >= reconnect_initial_s ({self.reconnect_initial_s})"
            )
        return self

    @property
    def kind(self) -> str:
        return self.spec.partition(":")[0]

    @property
    def target(self) -> str:
        return self.spec.partition(":")[2]
