"""SQLAlchemy 2.0 typed tables of the uncertain-patch store.

Only portable column types and queries (SQLite and PostgreSQL). Times are stored as
naive UTC and read back as timezone-aware UTC on every backend.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STORE_SCHEMA_VERSION = 1


class UtcDateTime(TypeDecorator):
    """A datetime stored as naive UTC, returned as aware UTC (same on SQLite and PostgreSQL)."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware time (UTC)")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""

    pass


class UncertainPatchRow(Base):
    """One logged patch: where it came from, what the models said, and its PNG."""

    __tablename__ = "uncertain_patch"
    __table_args__ = (
        Index("ix_uncertain_patch_store_captured", "store_id", "captured_at"),
        Index("ix_uncertain_patch_store_exported", "store_id", "exported_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(36))  # the image folder the PNG lives in (see store.json)
    frame_id: Mapped[str] = mapped_column(String(200), index=True)
    station: Mapped[str] = mapped_column(String(100))
    line: Mapped[str] = mapped_column(String(100))
    captured_at: Mapped[datetime] = mapped_column(UtcDateTime())
    logged_at: Mapped[datetime] = mapped_column(UtcDateTime())
    tile_index: Mapped[int] = mapped_column(Integer)
    tile_x: Mapped[int] = mapped_column(Integer)  # tile box in frame pixels
    tile_y: Mapped[int] = mapped_column(Integer)
    tile_size: Mapped[int] = mapped_column(Integer)
    valid_fraction: Mapped[float] = mapped_column(Float, default=1.0)  # share of the tile inside the ROI
    image_px: Mapped[int] = mapped_column(Integer)  # side of the stored crop
    channels: Mapped[int] = mapped_column(Integer)
    classifier_score: Mapped[float] = mapped_column(Float)
    segmenter_max_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    segmenter_defect_pixels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(32))  # edge.store.select.Reason
    model_versions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    file_path: Mapped[str] = mapped_column(String(500))  # relative to the store's image folder
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    exported_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    def __repr__(self) -> str:
        return (
            f"UncertainPatchRow(id={self.id}, frame_id={self.frame_id!r}, station={self.station!r}, "
            f"tile={self.tile_index}, reason={self.reason!r}, exported_at={self.exported_at})"
        )
