"""Settings of the uncertain-patch store (``[store]`` in the station's TOML, ``PUMP_STORE__*``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import ConfigBool, NonEmptyPath

DEFAULT_SUBDIR = "uncertain"
DEFAULT_DB_NAME = "uncertain.db"
DEFAULT_IMAGE_SUBDIR = "images"


class EvictionPolicy(str, Enum):
    """Which stored patches make room when a quota is reached."""

    EXPORTED_THEN_OLDEST = "exported-then-oldest"  # exported rows (oldest first), then unexported (oldest first)
    EXPORTED_ONLY = "exported-only"  # only exported rows; when none are left new patches are dropped (counted)
    OLDEST = "oldest"  # oldest first, exported or not


class DisagreementRule(BaseModel):
    """When classifier and segmenter disagree about a patch.

    The classifier calls a patch defective when its score is at least ``classifier_threshold``;
    the segmenter does when at least ``min_defect_pixels`` of its pixels are above the
    segmenter's own threshold (the pipeline counts them with the bundle's threshold and
    passes the count). A patch where exactly one of them says defect is a disagreement.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: ConfigBool = Field(True, description="Log patches where classifier and segmenter disagree.")
    classifier_threshold: float = Field(
        0.5, ge=0, le=1, description="Classifier score at or above which the classifier calls a patch defective."
    )
    min_defect_pixels: int = Field(
        16,
        ge=1,
        le=4_194_304,
        description="Segmenter defect pixels (patch px) at or above which the segmenter calls it defective.",
    )


class StoreConfig(BaseModel):
    """Which patches are logged, where, and how much disk they may take."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: ConfigBool = Field(True, description="Log uncertain patches at all.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db); "
        f"default: sqlite file <data_dir>/{DEFAULT_SUBDIR}/{DEFAULT_DB_NAME} (WAL mode).",
    )
    image_dir: NonEmptyPath | None = Field(
        None, description=f"Folder for the patch PNGs; default <data_dir>/{DEFAULT_SUBDIR}/{DEFAULT_IMAGE_SUBDIR}."
    )
    band_low: float = Field(0.3, ge=0, le=1, description="Classifier scores in [band_low, band_high] are uncertain.")
    band_high: float = Field(0.7, ge=0, le=1, description="Upper end of the uncertainty band (inclusive).")
    disagreement: DisagreementRule = Field(default_factory=DisagreementRule, description="Disagreement rule.")
    per_frame_cap: int = Field(
        8, ge=0, le=4096, description="Most patches logged per frame (the most uncertain first); 0 logs nothing."
    )
    max_rows: int = Field(
        100_000, gt=0, le=100_000_000, description="Most stored patches; the eviction policy makes room."
    )
    max_disk_mb: float = Field(
        2048.0, gt=0, le=10_000_000, description="Most disk taken by stored PNGs, in MB (10^6 bytes)."
    )
    eviction: EvictionPolicy = Field(EvictionPolicy.EXPORTED_THEN_OLDEST, description="What makes room at a quota.")
    png_compression: int = Field(3, ge=0, le=9, description="PNG compression level (0 fastest, 9 smallest).")
    fsync: ConfigBool = Field(True, description="fsync each PNG before it is renamed into place (survives power loss).")
    sqlite_busy_timeout_ms: int = Field(
        5000, ge=0, le=600_000, description="SQLite: how long a writer waits for a lock."
    )

    @model_validator(mode="after")
    def _band_ordered(self) -> StoreConfig:
        if self.band_low >= self.band_high:
            raise ValueError(f"band_low ({self.band_low}) must be smaller than band_high ({self.band_high})")
        return self

    @property
    def max_disk_bytes(self) -> int:
        return int(self.max_disk_mb * 1_000_000)

    def resolved_database_url(self, data_dir: Path) -> str:
        """The database URL, defaulting to a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(Path(data_dir) / DEFAULT_SUBDIR / DEFAULT_DB_NAME).resolve()}"

    def resolved_image_dir(self, data_dir: Path) -> Path:
        """The PNG folder, defaulting to a folder under ``data_dir``."""
        if self.image_dir is not None:
            return Path(self.image_dir)
        return Path(data_dir) / DEFAULT_SUBDIR / DEFAULT_IMAGE_SUBDIR
