"""The uncertain-patch store: PNGs on disk, one SQLAlchemy row each, a quota, exports.

Write order (nothing half-written):

1. each selected crop is encoded to PNG in memory and its sha256 taken;
2. the quota is planned: rows to evict (by the eviction policy) so the new ones fit;
3. each PNG is written to a hidden ``.tmp`` name, fsynced, and renamed into place;
4. one transaction deletes the evicted rows and inserts the new ones; only then
5. the evicted rows' PNGs are deleted.

A crash between 3 and 4 leaves PNGs without rows (and maybe ``.tmp`` files); the next
:meth:`UncertainStore.open` with ``recover=True`` removes them. Rows and quotas belong to
one *store* (an image folder with its ``store.json`` id), so several stations can share one
PostgreSQL database and each only ever evicts and exports its own files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import Engine, case, create_engine, event, func, update
from sqlalchemy import select as sql_select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from edge.store.config import EvictionPolicy, StoreConfig
from edge.store.export import TEMP_SUFFIX, write_archive
from edge.store.select import Selected, select_patches
from edge.store.tables import STORE_SCHEMA_VERSION, Base, UncertainPatchRow

STORE_META_NAME = "store.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ID_CHUNK = 500  # ids per IN (...) clause (SQLite's variable limit)


class StoreError(RuntimeError):
    """The store could not be opened, written or exported; the message names the file or database."""


@dataclass
class StoreStats:
    """Counters since the store was opened (for the runtime's stats messages)."""

    frames: int = 0
    selected: int = 0  # patches that met a rule, before the per-frame cap
    logged: int = 0
    dropped_cap: int = 0
    dropped_quota: int = 0  # new patches that did not fit (exported-only policy, or larger than the quota)
    evicted: int = 0
    recovered_temp_files: int = 0
    recovered_orphan_files: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class _Prepared:
    selected: Selected
    png: bytes
    sha256: str
    image_px: int
    channels: int


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError(f"{what} {value.isoformat()} has no timezone; pass an aware datetime (UTC)")
    return value.astimezone(timezone.utc)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since`` values: an ISO date/time (UTC when it names no zone) or an age like ``36h``, ``7d``, ``90m``."""
    text = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([mhdw])", text)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return (now or utc_now()) - timedelta(**{unit: float(match.group(1))})
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected an ISO date/time (2024-05-01, 2024-05-01T08:00) or an age (7d, 36h, 90m)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _box(box: Any) -> tuple[int, int, int]:
    if all(hasattr(box, name) for name in ("x", "y", "size")):
        return int(box.x), int(box.y), int(box.size)
    x, y, size = box
    return int(x), int(y), int(size)


def _encode(crop: np.ndarray, index: int, compression: int) -> tuple[bytes, int, int]:
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8:
        raise ValueError(f"crop of tile {index}: expected a uint8 numpy array, got {getattr(crop, 'dtype', crop)!r}")
    if crop.ndim not in (2, 3) or (crop.ndim == 3 and crop.shape[2] not in (1, 3, 4)):
        raise ValueError(f"crop of tile {index}: expected HxW or HxWxC (C in 1, 3, 4), got shape {crop.shape}")
    if crop.shape[0] != crop.shape[1] or crop.shape[0] == 0:
        raise ValueError(f"crop of tile {index}: expected a square tile, got shape {crop.shape}")
    ok, buffer = cv2.imencode(".png", crop, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise StoreError(f"crop of tile {index}: PNG encoding failed")
    return buffer.tobytes(), int(crop.shape[0]), 1 if crop.ndim == 2 else int(crop.shape[2])


def _sqlite_pragmas(busy_timeout_ms: int):  # noqa: ANN202 - an event listener
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cursor.close()

    return on_connect


def make_engine(url: str, busy_timeout_ms: int = 5000) -> Engine:
    """An engine for ``url``; SQLite gets WAL, synchronous=NORMAL and a busy timeout on every connection."""
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError) as error:
        raise StoreError(f"store database {url!r}: {error}") from None
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
    return engine


def _write_atomic(path: Path, data: bytes, fsync: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_store_meta(image_dir: Path) -> dict:
    meta_path = image_dir / STORE_META_NAME
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise StoreError(f"{meta_path}: invalid JSON ({error}); expected the store's id file") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("store_id"), str):
            raise StoreError(f"{meta_path}: no 'store_id'; expected the store's id file")
        return meta
    meta = {"store_id": str(uuid.uuid4()), "created_at": utc_now().isoformat(), "schema_version": STORE_SCHEMA_VERSION}
    _write_atomic(meta_path, (json.dumps(meta, indent=2) + "\n").encode("utf-8"), fsync=True)
    return meta


class UncertainStore:
    """Logs uncertain patches of a station, keeps them within quota, exports them.

    Open with :meth:`open`; safe to call from several threads of one process (one lock).
    """

    def __init__(self, config: StoreConfig, engine: Engine, image_dir: Path, store_id: str) -> None:
        self.config = config
        self.engine = engine
        self.image_dir = Path(image_dir)
        self.store_id = store_id
        self.stats = StoreStats()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls, config: StoreConfig, data_dir: Path, recover: bool = True, recover_min_age_s: float = 60.0
    ) -> UncertainStore:
        """Open (or create) the store: tables, image folder, store id.

        ``recover`` removes leftovers of a crash in the image folder: ``.tmp`` files and PNGs
        without a row, when older than ``recover_min_age_s`` (so a second process opening the
        store, e.g. an export, never removes a file the runtime is about to commit). Then the
        quota is enforced (it may have been lowered).
        """
        image_dir = config.resolved_image_dir(data_dir)
        try:
            image_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"{image_dir}: cannot create the store's image folder ({error})") from None
        meta = _read_store_meta(image_dir)
        url = config.resolved_database_url(data_dir)
        engine = make_engine(url, config.sqlite_busy_timeout_ms)
        try:
            Base.metadata.create_all(engine)
        except SQLAlchemyError as error:
            engine.dispose()
            raise StoreError(f"store database {engine.url.render_as_string(hide_password=True)}: {error}") from None
        store = cls(config, engine, image_dir, meta["store_id"])
        if recover:
            store.recover(recover_min_age_s)
        store.enforce_quota()
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> UncertainStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def database(self) -> str:
        """The database URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def path_of(self, row: UncertainPatchRow) -> Path:
        return self.image_dir / row.file_path

    def _files(self) -> Iterator[Path]:
        for folder, _, names in os.walk(self.image_dir):
            for name in names:
                yield Path(folder) / name

    def recover(self, min_age_s: float = 60.0) -> tuple[int, int]:
        """Remove crash leftovers older than ``min_age_s``: ``.tmp`` files and PNGs without a row."""
        with self._lock:
            with Session(self.engine) as session:
                known = set(
                    session.scalars(
                        sql_select(UncertainPatchRow.file_path).where(UncertainPatchRow.store_id == self.store_id)
                    )
                )
            cutoff = time.time() - min_age_s
            temp = orphans = 0
            for path in self._files():
                try:
                    old = path.stat().st_mtime <= cutoff
                except FileNotFoundError:
                    continue
                if not old:
                    continue
                if path.name.endswith(TEMP_SUFFIX):
                    path.unlink(missing_ok=True)
                    temp += 1
                elif path.suffix == ".png" and path.relative_to(self.image_dir).as_posix() not in known:
                    path.unlink(missing_ok=True)
                    orphans += 1
            self.stats.recovered_temp_files += temp
            self.stats.recovered_orphan_files += orphans
            return temp, orphans

    # ------------------------------------------------------------------ selecting and logging
    def select(
        self, classifier_scores: Sequence[float], segmenter_defect_pixels: Sequence[int] | None = None
    ) -> list[Selected]:
        """The patches of one frame this store's rules pick (see :func:`edge.store.select.select_patches`)."""
        return select_patches(
            classifier_scores,
            segmenter_defect_pixels,
            self.config.band_low,
            self.config.band_high,
            self.config.disagreement,
            self.config.per_frame_cap,
        )

    def log(
        self,
        *,
        frame_id: str,
        captured_at: datetime,
        station: str,
        line: str,
        crops: Sequence[np.ndarray],
        boxes: Sequence[Any],
        classifier_scores: Sequence[float],
        segmenter_max_scores: Sequence[float] | None = None,
        segmenter_defect_pixels: Sequence[int] | None = None,
        model_versions: Mapping[str, str] | None = None,
        valid_fractions: Sequence[float] | None = None,
    ) -> int:
        """Log the uncertain patches of one frame; returns how many were stored.

        All per-tile sequences are in the frame's tile order. ``crops`` are the tiles as cut
        from the frame (``tile_px`` side, uint8, before resizing); only the selected entries are
        read, so a lazy sequence that cuts on ``__getitem__`` saves cutting every tile.
        ``boxes`` are :class:`shared.tiling.TileBox` or ``(x, y, size)`` in frame pixels.
        """
        if not self.config.enabled:
            return 0
        captured_at = _aware(captured_at, "captured_at")
        count = len(classifier_scores)
        for name, values in (
            ("boxes", boxes),
            ("crops", crops),
            ("segmenter_max_scores", segmenter_max_scores),
            ("segmenter_defect_pixels", segmenter_defect_pixels),
            ("valid_fractions", valid_fractions),
        ):
            if values is not None and len(values) != count:
                raise ValueError(f"{name}: {len(values)} entries for {count} classifier scores")
        everything = select_patches(
            classifier_scores,
            segmenter_defect_pixels,
            self.config.band_low,
            self.config.band_high,
            self.config.disagreement,
            count,
        )
        chosen = everything[: self.config.per_frame_cap]
        prepared = []
        for selected in chosen:
            png, image_px, channels = _encode(crops[selected.index], selected.index, self.config.png_compression)
            prepared.append(_Prepared(selected, png, hashlib.sha256(png).hexdigest(), image_px, channels))
        versions = {str(key): str(value) for key, value in (model_versions or {}).items()}
        with self._lock:
            self.stats.frames += 1
            self.stats.selected += len(everything)
            self.stats.dropped_cap += len(everything) - len(chosen)
            if not prepared:
                return 0
            logged_at = utc_now()
            folder = self.image_dir / captured_at.strftime("%Y-%m-%d")
            written: list[Path] = []
            try:
                with Session(self.engine) as session:
                    evict, keep = self._plan(session, [len(item.png) for item in prepared])
                    self.stats.dropped_quota += len(prepared) - keep
                    rows = []
                    if keep:
                        folder.mkdir(parents=True, exist_ok=True)
                    for item in prepared[:keep]:
                        index = item.selected.index
                        x, y, size = _box(boxes[index])
                        name = (
                            f"{_UNSAFE.sub('_', station)[:40]}_{_UNSAFE.sub('_', frame_id)[:80]}"
                            f"_{index:03d}_{uuid.uuid4().hex[:10]}.png"
                        )
                        path = folder / name
                        _write_atomic(path, item.png, self.config.fsync)
                        written.append(path)
                        rows.append(
                            UncertainPatchRow(
                                store_id=self.store_id,
                                frame_id=str(frame_id),
                                station=str(station),
                                line=str(line),
                                captured_at=captured_at,
                                logged_at=logged_at,
                                tile_index=index,
                                tile_x=x,
                                tile_y=y,
                                tile_size=size,
                                valid_fraction=1.0 if valid_fractions is None else float(valid_fractions[index]),
                                image_px=item.image_px,
                                channels=item.channels,
                                classifier_score=float(classifier_scores[index]),
                                segmenter_max_score=None
                                if segmenter_max_scores is None
                                else float(segmenter_max_scores[index]),
                                segmenter_defect_pixels=None
                                if segmenter_defect_pixels is None
                                else int(segmenter_defect_pixels[index]),
                                reason=item.selected.reason.value,
                                model_versions=versions,
                                file_path=path.relative_to(self.image_dir).as_posix(),
                                sha256=item.sha256,
                                size_bytes=len(item.png),
                            )
                        )
                    evicted_paths = [self.path_of(row) for row in evict]
                    for row in evict:
                        session.delete(row)
                    session.add_all(rows)
                    session.commit()
            except (SQLAlchemyError, OSError) as error:
                for path in written:
                    path.unlink(missing_ok=True)
                raise StoreError(
                    f"store {self.image_dir} / {self.database}: logging frame {frame_id!r} failed ({error})"
                ) from error
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                raise
            for path in evicted_paths:
                path.unlink(missing_ok=True)
            self.stats.evicted += len(evicted_paths)
            self.stats.logged += len(rows)
            return len(rows)

    # ------------------------------------------------------------------ quota
    def _eviction_query(self):  # noqa: ANN202 - a SQLAlchemy Select
        query = sql_select(UncertainPatchRow).where(UncertainPatchRow.store_id == self.store_id)
        policy = self.config.eviction
        if policy is EvictionPolicy.EXPORTED_THEN_OLDEST:
            unexported_last = case((UncertainPatchRow.exported_at.is_(None), 1), else_=0)
            return query.order_by(unexported_last, UncertainPatchRow.captured_at, UncertainPatchRow.id)
        if policy is EvictionPolicy.EXPORTED_ONLY:
            query = query.where(UncertainPatchRow.exported_at.is_not(None))
        return query.order_by(UncertainPatchRow.captured_at, UncertainPatchRow.id)

    def _totals(self, session: Session) -> tuple[int, int]:
        rows, used = session.execute(
            sql_select(
                func.count(UncertainPatchRow.id), func.coalesce(func.sum(UncertainPatchRow.size_bytes), 0)
            ).where(UncertainPatchRow.store_id == self.store_id)
        ).one()
        return int(rows), int(used)

    def _plan(self, session: Session, new_sizes: list[int]) -> tuple[list[UncertainPatchRow], int]:
        """Rows to evict and how many of the new patches (in order) fit after that."""
        max_rows, max_bytes = self.config.max_rows, self.config.max_disk_bytes
        rows, used = self._totals(session)
        keep = len(new_sizes)
        while keep and (keep > max_rows or sum(new_sizes[:keep]) > max_bytes):
            keep -= 1
        evict: list[UncertainPatchRow] = []
        freed_rows = freed_bytes = 0

        def over() -> bool:
            return rows - freed_rows + keep > max_rows or used - freed_bytes + sum(new_sizes[:keep]) > max_bytes

        query = self._eviction_query()
        offset = 0
        while over():
            batch = session.scalars(query.offset(offset).limit(256)).all()
            offset += len(batch)
            if not batch:
                if keep == 0:
                    break  # nothing left to evict (exported-only with no exported rows)
                keep -= 1
                continue
            for row in batch:
                if not over():
                    break
                evict.append(row)
                freed_rows += 1
                freed_bytes += row.size_bytes
        return evict, keep

    def enforce_quota(self) -> int:
        """Evict until the store is within its quotas (after a lowered quota); returns rows evicted."""
        with self._lock, Session(self.engine) as session:
            evict, _ = self._plan(session, [])
            if not evict:
                return 0
            paths = [self.path_of(row) for row in evict]
            for row in evict:
                session.delete(row)
            session.commit()
        for path in paths:
            path.unlink(missing_ok=True)
        self.stats.evicted += len(paths)
        return len(paths)

    # ------------------------------------------------------------------ queries
    def count(self, exported: bool | None = None, station: str | None = None) -> int:
        """Stored patches of this store (optionally only exported / unexported, one station)."""
        query = sql_select(func.count(UncertainPatchRow.id)).where(UncertainPatchRow.store_id == self.store_id)
        if exported is not None:
            column = UncertainPatchRow.exported_at
            query = query.where(column.is_not(None) if exported else column.is_(None))
        if station is not None:
            query = query.where(UncertainPatchRow.station == station)
        with Session(self.engine) as session:
            return int(session.scalar(query) or 0)

    def disk_usage_bytes(self) -> int:
        """Bytes of the stored PNGs (from the rows; leftover temp files do not count)."""
        with Session(self.engine) as session:
            return self._totals(session)[1]

    def patches(self, since: datetime | None = None, only_new: bool = False) -> list[UncertainPatchRow]:
        """This store's rows, oldest first (detached: safe to read after the call)."""
        query = sql_select(UncertainPatchRow).where(UncertainPatchRow.store_id == self.store_id)
        if since is not None:
            query = query.where(UncertainPatchRow.captured_at >= _aware(since, "since"))
        if only_new:
            query = query.where(UncertainPatchRow.exported_at.is_(None))
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query.order_by(UncertainPatchRow.captured_at, UncertainPatchRow.id)))

    # ------------------------------------------------------------------ export
    def export(self, out: Path, since: datetime | None = None, only_new: bool = False, overwrite: bool = False) -> int:
        """Write the stored patches (captured at or after ``since``) as a tar.gz; returns how many.

        The archive is written to a temporary name and renamed into place; only then are the
        exported rows marked (``exported_at``). Rows whose PNG vanished (evicted meanwhile) or no
        longer matches its sha256 are left out and listed under ``skipped`` in the manifest.
        """
        out = Path(out)
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
        if since is not None:
            since = _aware(since, "since")
        rows = self.patches(since, only_new)
        exported_at = utc_now()
        exported = write_archive(self, out, rows, since, only_new, exported_at)
        self._mark_exported([patch.row_id for patch in exported], exported_at)
        return len(exported)

    def _mark_exported(self, ids: list[int], when: datetime) -> None:
        with self._lock, Session(self.engine) as session:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                session.execute(
                    update(UncertainPatchRow).where(UncertainPatchRow.id.in_(chunk)).values(exported_at=when)
                )
            session.commit()
