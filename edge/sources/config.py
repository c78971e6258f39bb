"""``[source]`` settings: where frames come from and how they become model pixels."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.pixels import ColorPolicy, DepthPolicy


class SourceConfig(BaseModel):
    """One frame source, chosen by ``spec`` (``KIND:TARGET``), and its options."""

    model_config = ConfigDict(extra="forbid")

    spec: str = Field(
        "camera:0",
        description="KIND:TARGET - folder:DIR (image files, sorted), video:FILE, camera:INDEX or camera:URL "
        "(RTSP/HTTP/file, reconnected when it drops), synthetic:WIDTHxHEIGHT (generated test frames).",
    )
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="Source name in frame ids and events (default: the kind)."
    )
    watch: bool = Field(False, description="folder: keep watching for new files instead of stopping after one pass.")
    poll_s: float = Field(0.25, gt=0, description="folder watch: seconds between directory scans.")
    settle_s: float = Field(
        0.5,
        ge=0,
        description="folder watch: a file is read only once its size and mtime stayed unchanged this long "
        "(partially written files are skipped until complete).",
    )
    color: ColorPolicy = Field(
        ColorPolicy.GRAY, description="gray: convert colour to luma (gray bundles); keep: BGR (bgr bundles)."
    )
    depth: DepthPolicy = Field(DepthPolicy.SCALE16, description="How 16-bit frames become 8-bit (shared.pixels).")
    expected_width_px: int | None = Field(None, gt=0, description="Refuse frames of another width (None: any).")
    expected_height_px: int | None = Field(None, gt=0, description="Refuse frames of another height (None: any).")
    max_frames: int | None = Field(None, ge=1, description="Stop after this many frames (None: until the input ends).")
    reconnect_initial_s: float = Field(0.5, gt=0, description="camera: first wait before reconnecting.")
    reconnect_max_s: float = Field(30.0, gt=0, description="camera: longest wait between reconnect attempts.")
    reconnect_factor: float = Field(2.0, ge=1.0, description="camera: the wait grows by this factor per failure.")
    max_reconnects: int | None = Field(
        None, ge=0, description="camera: give up after this many failed attempts in a row (None: never)."
    )
    open_timeout_s: float = Field(10.0, gt=0, description="camera URL: how long opening the stream may take.")
    read_timeout_s: float = Field(5.0, gt=0, description="camera URL: a read waiting longer counts as a dropout.")

    @field_validator("spec")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        from edge.sources.registry import SOURCE_KINDS  # lazy: the registry imports this module

        kind, sep, target = value.partition(":")
        if not sep or not target:
            raise ValueError(f"must be KIND:TARGET with KIND one of {sorted(SOURCE_KINDS)}, got {value!r}")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"unknown source kind {kind!r}; choose one of {sorted(SOURCE_KINDS)}")
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
