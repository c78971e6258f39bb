"""Uncertain-patch store: selection rule, logging, quota with eviction, export, crash leftovers.

The store tests run on both backends: a SQLite file and a real PostgreSQL (the ``postgres_url``
fixture of tests/edge/conftest.py starts a throwaway server; each test gets its own schema).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tarfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, make_url

from edge.config import EdgeSettings
from edge.store import (
    DisagreementRule,
    EvictionPolicy,
    ExportManifest,
    Reason,
    StoreConfig,
    UncertainStore,
    parse_since,
    select_patches,
)
from shared.config import ConfigError, load_settings
from shared.tiling import TileBox

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
RULE = DisagreementRule(classifier_threshold=0.5, min_defect_pixels=16)


# ---------------------------------------------------------------- selection (pure)
def test_band_is_inclusive_and_ordered_by_closeness_to_the_centre():
    scores = [0.1, 0.3, 0.5, 0.7, 0.71, 0.29, 0.45, 0.9]
    chosen = select_patches(scores, None, 0.3, 0.7, RULE, cap=10)
    assert [s.index for s in chosen] == [2, 6, 1, 3]  # 0.5, 0.45, then 0.3 / 0.7 (tie -> lower index)
    assert {s.reason for s in chosen} == {Reason.BAND}


def test_disagreement_both_ways_and_both_reasons_rank_first():
    scores = [0.95, 0.05, 0.6, 0.05, 0.95]
    pixels = [0, 40, 0, 3, 500]  # 0: cls yes / seg no; 1: cls no / seg yes; 2: band + disagree; 3, 4: agree
    chosen = select_patches(scores, pixels, 0.3, 0.7, RULE, cap=10)
    assert [(s.index, s.reason) for s in chosen] == [
        (2, Reason.BOTH),
        (0, Reason.DISAGREEMENT),
        (1, Reason.DISAGREEMENT),
    ]
    off = DisagreementRule(enabled=False)
    assert [s.index for s in select_patches(scores, pixels, 0.3, 0.7, off, cap=10)] == [2]


def test_cap_keeps_the_most_uncertain_and_zero_logs_nothing():
    scores = [0.31, 0.5, 0.69, 0.52, 0.4]
    assert [s.index for s in select_patches(scores, None, 0.3, 0.7, RULE, cap=2)] == [1, 3]
    assert select_patches(scores, None, 0.3, 0.7, RULE, cap=0) == []
    with pytest.raises(ValueError, match="segmenter counts"):
        select_patches(scores, [1, 2], 0.3, 0.7, RULE, cap=2)


def test_config_validates_the_band_and_joins_edge_settings(monkeypatch):
    with pytest.raises(ValidationError, match="band_low"):
        StoreConfig(band_low=0.7, band_high=0.3)
    with pytest.raises(ValidationError):
        StoreConfig(unknown=1)
    monkeypatch.setenv("PUMP_STORE__BAND_LOW", "0.2")
    monkeypatch.setenv("PUMP_STORE__EVICTION", "oldest")
    settings = load_settings(EdgeSettings)
    assert settings.store.band_low == 0.2 and settings.store.eviction is EvictionPolicy.OLDEST
    monkeypatch.setenv("PUMP_STORE__BAND_HIGH", "0.1")
    with pytest.raises(ConfigError, match="band_low"):
        load_settings(EdgeSettings)


def test_parse_since():
    now = datetime(2024, 5, 10, tzinfo=timezone.utc)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert parse_since("2024-05-01T08:00+02:00").utcoffset() == timedelta(hours=2)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday")


# ---------------------------------------------------------------- store on SQLite and PostgreSQL
@pytest.fixture
def postgres_schema_url(postgres_url: str):
    """The session's PostgreSQL database with a fresh schema first on the search path (dropped afterwards)."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (each store's default SQLite file) or a PostgreSQL URL shared by every store of the test."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def open_store(database_url: str | None):
    """Opens stores under a folder on the test's backend; closes them at the end."""
    stores: list[UncertainStore] = []

    def open_(folder: Path, **config) -> UncertainStore:
        if database_url is not None:
            config.setdefault("database_url", database_url)
        store = _open(folder, **config)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


def _crops(n: int, seed: int = 0, px: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(px, px), dtype=np.uint8) for _ in range(n)]


def _boxes(n: int) -> list[TileBox]:
    return [TileBox(x=100 + 50 * i, y=200, size=64) for i in range(n)]


def _open(tmp_path: Path, **config) -> UncertainStore:
    config.setdefault("fsync", False)
    return UncertainStore.open(StoreConfig(**config), tmp_path / "data")


def _log(
    store: UncertainStore, frame: str, when: datetime, scores, seed: int = 0, station: str = "st1", **kwargs
) -> int:
    n = len(scores)
    return store.log(
        frame_id=frame,
        captured_at=when,
        station=station,
        line="lineA",
        crops=_crops(n, seed),
        boxes=_boxes(n),
        classifier_scores=scores,
        segmenter_max_scores=[0.2] * n,
        segmenter_defect_pixels=[0] * n,
        model_versions={"classifier": "cls@1.0.0", "segmenter": "seg@1.0.0"},
        **kwargs,
    )


def test_log_writes_png_and_row_with_checksum(tmp_path, open_store):
    store = open_store(tmp_path)
    crops = _crops(4)
    n = store.log(
        frame_id="frame-1",
        captured_at=T0,
        station="st1",
        line="lineA",
        crops=crops,
        boxes=_boxes(4),
        classifier_scores=[0.1, 0.5, 0.6, 0.9],
        segmenter_max_scores=[0.1, 0.95, 0.2, 0.99],
        segmenter_defect_pixels=[0, 30, 0, 200],
        model_versions={"classifier": "cls@1.0.0"},
    )
    assert n == 2 and store.count() == 2 and store.stats.logged == 2
    rows = store.patches()
    by_tile = {row.tile_index: row for row in rows}
    assert set(by_tile) == {1, 2}
    row = by_tile[1]
    assert row.reason == "band" and by_tile[2].reason == "band+disagreement"  # 0.6 says defect, seg 0 px
    assert (row.tile_x, row.tile_y, row.tile_size) == (150, 200, 64)
    assert row.segmenter_defect_pixels == 30 and row.segmenter_max_score == pytest.approx(0.95)
    assert row.model_versions == {"classifier": "cls@1.0.0"}
    assert row.captured_at == T0 and row.exported_at is None
    path = store.path_of(row)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == row.sha256 and len(data) == row.size_bytes
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), crops[1])
    assert store.disk_usage_bytes() == sum(r.size_bytes for r in rows)


def test_sqlite_store_is_a_wal_file_on_disk(tmp_path):
    store = _open(tmp_path)
    assert _log(store, "f", T0, [0.4, 0.6]) == 2
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    store.close()
    database = tmp_path / "data" / "uncertain" / "uncertain.db"
    with sqlite3.connect(database) as raw:  # a real file on disk
        assert raw.execute("select count(*) from uncertain_patch").fetchone() == (2,)


def test_bad_input_is_refused_before_anything_is_written(tmp_path, open_store):
    store = open_store(tmp_path)
    with pytest.raises(ValueError, match="timezone"):
        _log(store, "f", datetime(2024, 5, 1), [0.5])
    with pytest.raises(ValueError, match="boxes: 1 entries for 2"):
        store.log(
            frame_id="f",
            captured_at=T0,
            station="st1",
            line="lineA",
            crops=_crops(2),
            boxes=_boxes(1),
            classifier_scores=[0.5, 0.5],
        )
    with pytest.raises(ValueError, match="uint8"):
        store.log(
            frame_id="f",
            captured_at=T0,
            station="st1",
            line="lineA",
            crops=[np.zeros((8, 8), np.float32)],
            boxes=_boxes(1),
            classifier_scores=[0.5],
        )
    assert store.count() == 0 and not list((tmp_path / "data" / "uncertain" / "images").rglob("*.png"))


def test_only_selected_crops_are_read_and_disabled_store_logs_nothing(tmp_path, open_store):
    class Lazy:
        def __init__(self):
            self.read = []

        def __len__(self):
            return 3

        def __getitem__(self, index):
            self.read.append(index)
            return np.full((32, 32), index, np.uint8)

    store = open_store(tmp_path)
    lazy = Lazy()
    assert (
        store.log(
            frame_id="f",
            captured_at=T0,
            station="st1",
            line="lineA",
            crops=lazy,
            boxes=[(0, 0, 32)] * 3,
            classifier_scores=[0.9, 0.5, 0.1],
        )
        == 1
    )
    assert lazy.read == [1]
    off = open_store(tmp_path / "off", enabled=False)
    assert _log(off, "f", T0, [0.5]) == 0 and off.count() == 0


def test_quota_evicts_oldest_exported_first_then_oldest(tmp_path, open_store):
    store = open_store(tmp_path, max_rows=4)
    for i in range(4):
        assert _log(store, f"f{i}", T0 + timedelta(minutes=i), [0.5], seed=i) == 1
    old_files = {row.frame_id: store.path_of(row) for row in store.patches()}
    # f2 and f1 exported: they go first (oldest exported first), before the older unexported f0
    store._mark_exported([r.id for r in store.patches() if r.frame_id in ("f1", "f2")], T0 + timedelta(hours=1))
    _log(store, "f4", T0 + timedelta(minutes=4), [0.5], seed=4)
    assert sorted(r.frame_id for r in store.patches()) == ["f0", "f2", "f3", "f4"]
    assert not old_files["f1"].exists() and old_files["f2"].exists()
    _log(store, "f5", T0 + timedelta(minutes=5), [0.5], seed=5)
    assert sorted(r.frame_id for r in store.patches()) == ["f0", "f3", "f4", "f5"]
    _log(store, "f6", T0 + timedelta(minutes=6), [0.5], seed=6)  # no exported rows left: the oldest
    assert sorted(r.frame_id for r in store.patches()) == ["f3", "f4", "f5", "f6"]
    assert not old_files["f0"].exists()
    assert store.count() == 4 and store.stats.evicted == 3
    assert len(list(store.image_dir.rglob("*.png"))) == 4  # file and row go together


def test_disk_quota_and_exported_only_policy(tmp_path, open_store):
    probe = open_store(tmp_path / "probe")
    _log(probe, "f", T0, [0.5])
    size = probe.disk_usage_bytes()  # one noise PNG of 64x64
    store = open_store(tmp_path, max_disk_mb=2.5 * size / 1e6, eviction="exported-only")
    assert _log(store, "f0", T0, [0.5], seed=0) == 1
    assert _log(store, "f1", T0 + timedelta(minutes=1), [0.5], seed=0) == 1
    assert _log(store, "f2", T0 + timedelta(minutes=2), [0.5], seed=0) == 0  # full, nothing exported: dropped
    assert store.stats.dropped_quota == 1 and store.count() == 2
    store.export(tmp_path / "e.tar.gz")
    assert _log(store, "f3", T0 + timedelta(minutes=3), [0.5], seed=0) == 1
    assert sorted(r.frame_id for r in store.patches()) == ["f1", "f3"]
    assert store.disk_usage_bytes() <= 2.5 * size


def test_lowered_quota_is_enforced_on_open(tmp_path, open_store):
    store = open_store(tmp_path)
    for i in range(5):
        _log(store, f"f{i}", T0 + timedelta(minutes=i), [0.5], seed=i)
    store.close()
    store = open_store(tmp_path, max_rows=2)
    assert sorted(r.frame_id for r in store.patches()) == ["f3", "f4"]
    assert len(list(store.image_dir.rglob("*.png"))) == 2


def _read_export(path: Path) -> tuple[ExportManifest, dict[str, bytes], str]:
    with tarfile.open(path, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = ExportManifest.model_validate_json(files["manifest.json"])
    return manifest, files, files["manifest.csv"].decode()


def test_export_writes_pngs_and_manifest_marks_rows_and_honours_since(tmp_path, open_store):
    store = open_store(tmp_path)
    _log(store, "early", T0, [0.4, 0.6], seed=1)
    _log(store, "late", T0 + timedelta(days=1), [0.5], seed=2)
    out = tmp_path / "exports" / "u.tar.gz"
    assert store.export(out, since=T0 + timedelta(hours=1)) == 1
    manifest, files, csv_text = _read_export(out)
    assert manifest.count == 1 and manifest.stations == ["st1"] and manifest.lines == ["lineA"]
    assert manifest.store["store_id"] == store.store_id and manifest.since == T0 + timedelta(hours=1)
    assert manifest.selection["band_low"] == 0.3
    patch = manifest.patches[0]
    assert patch.frame_id == "late" and patch.reason == "band+disagreement"  # 0.5 >= 0.5, no seg pixels
    assert hashlib.sha256(files[patch.file]).hexdigest() == patch.sha256
    assert csv_text.splitlines()[0].startswith("file,sha256,") and "late" in csv_text
    assert store.count(exported=True) == 1 and store.count(exported=False) == 2
    with pytest.raises(FileExistsError, match="already exists"):
        store.export(out)
    assert store.export(out, only_new=True, overwrite=True) == 2
    assert store.count(exported=False) == 0
    assert not [p for p in out.parent.iterdir() if p.name != "u.tar.gz"]  # no temp file left
    assert store.export(tmp_path / "all.tar.gz") == 3


def test_export_skips_files_that_are_gone_or_corrupt(tmp_path, open_store):
    store = open_store(tmp_path)
    _log(store, "f", T0, [0.4, 0.5, 0.6])
    rows = store.patches()
    store.path_of(rows[0]).unlink()
    store.path_of(rows[1]).write_bytes(b"not the png")
    assert store.export(tmp_path / "u.tar.gz") == 1
    manifest, _, _ = _read_export(tmp_path / "u.tar.gz")
    reasons = sorted(item["reason"].split()[0] for item in manifest.skipped)
    assert reasons == ["file", "sha256"]
    assert store.count(exported=True) == 1


def test_reopen_keeps_data_and_crash_leftovers_are_removed_and_never_counted(tmp_path, open_store):
    store = open_store(tmp_path)
    _log(store, "f0", T0, [0.5, 0.6])
    usage, store_id = store.disk_usage_bytes(), store.store_id
    day = store.image_dir / "2024-05-01"
    temp = day / ".st1_f9_000_x.png.123.tmp"  # a PNG being written when the power went
    temp.write_bytes(b"x" * 5000)
    orphan = day / "st1_f9_001_deadbeef.png"  # renamed into place, row never committed
    orphan.write_bytes(b"y" * 5000)
    fresh = day / ".st1_f9_002_y.png.123.tmp"  # still being written by another process: too young
    fresh.write_bytes(b"z")
    assert store.disk_usage_bytes() == usage
    old = time.time() - 3600
    os.utime(temp, (old, old))
    os.utime(orphan, (old, old))
    store.close()
    reopened = open_store(tmp_path)
    assert reopened.store_id == store_id and reopened.count() == 2 and reopened.disk_usage_bytes() == usage
    assert not temp.exists() and not orphan.exists() and fresh.exists()
    assert (reopened.stats.recovered_temp_files, reopened.stats.recovered_orphan_files) == (1, 1)
    assert all(reopened.path_of(row).is_file() for row in reopened.patches())
    assert json.loads((reopened.image_dir / "store.json").read_text())["store_id"] == store_id


def test_a_failed_commit_leaves_no_file(tmp_path, open_store, monkeypatch):
    store = open_store(tmp_path)

    def broken_commit(self):
        raise OSError("disk full")

    monkeypatch.setattr("sqlalchemy.orm.Session.commit", broken_commit)
    with pytest.raises(Exception, match="disk full"):
        _log(store, "f", T0, [0.5])
    monkeypatch.undo()
    assert store.count() == 0 and not list(store.image_dir.rglob("*.png"))


def _shared_url(database_url: str | None, tmp_path: Path) -> str:
    """One database for several stores: the test's PostgreSQL schema, or one SQLite file."""
    return database_url or f"sqlite:///{tmp_path / 'shared.db'}"


def test_stores_sharing_one_database_evict_and_export_only_their_own_rows(tmp_path, open_store, database_url):
    url = _shared_url(database_url, tmp_path)
    store = open_store(tmp_path / "st1", database_url=url, max_rows=2)
    other = open_store(tmp_path / "st2", database_url=url, max_rows=2)  # another station, same database
    assert store.engine.dialect.name == ("sqlite" if database_url is None else "postgresql")
    for i in range(3):
        _log(store, f"f{i}", T0 + timedelta(minutes=i), [0.5], seed=i)
    _log(other, "g0", T0, [0.5], station="st2")
    assert [r.frame_id for r in store.patches()] == ["f1", "f2"]  # each store evicts only its own rows
    assert other.count() == 1 and store.patches()[0].captured_at.tzinfo is not None
    assert store.export(tmp_path / "st1.tar.gz") == 2 and store.count(exported=True) == 2
    assert other.count(exported=True) == 0
    manifest, _, _ = _read_export(tmp_path / "st1.tar.gz")
    assert [patch.frame_id for patch in manifest.patches] == ["f1", "f2"]


def test_concurrent_writers_keep_every_store_within_its_quota(tmp_path, open_store, database_url):
    """Three stations (own engines) with two logging threads each write into one database at once."""
    url = _shared_url(database_url, tmp_path)
    stations, writers_per_store, frames_per_writer, max_rows = ("st1", "st2", "st3"), 2, 12, 5
    stores = [open_store(tmp_path / name, database_url=url, max_rows=max_rows) for name in stations]
    start = threading.Barrier(len(stations) * writers_per_store)
    errors: list[BaseException] = []

    def write(store: UncertainStore, station: str, writer: int) -> None:
        try:
            start.wait(timeout=30)
            for k in range(frames_per_writer):
                when = T0 + timedelta(seconds=writers_per_store * k + writer)
                _log(store, f"{station}-w{writer}-{k:02d}", when, [0.45, 0.55], seed=k, station=station)
        except BaseException as error:  # reported below, with the thread's traceback
            errors.append(error)

    threads = [
        threading.Thread(target=write, args=(store, station, writer), name=f"{station}-w{writer}")
        for store, station in zip(stores, stations, strict=True)
        for writer in range(writers_per_store)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    logged = writers_per_store * frames_per_writer * 2
    for store, station in zip(stores, stations, strict=True):
        rows = store.patches()
        assert len(rows) == max_rows and {row.station for row in rows} == {station}
        assert (store.stats.logged, store.stats.evicted) == (logged, logged - max_rows)
        assert sorted(p.relative_to(store.image_dir).as_posix() for p in store.image_dir.rglob("*.png")) == sorted(
            row.file_path for row in rows
        )
        newest = max(row.captured_at for row in rows)
        assert newest == T0 + timedelta(seconds=writers_per_store * (frames_per_writer - 1) + 1)


def test_exports_while_the_station_logs_take_every_patch_exactly_once(tmp_path, open_store, database_url):
    """``pump-edge export-uncertain`` opens the store in a second process while the station keeps logging."""
    url = _shared_url(database_url, tmp_path)
    station = open_store(tmp_path, database_url=url)
    exporter = open_store(tmp_path, database_url=url)  # same folder and store id, its own engine
    assert exporter.store_id == station.store_id
    frames, done = 40, threading.Event()
    errors: list[BaseException] = []

    def log_frames() -> None:
        try:
            for k in range(frames):
                _log(station, f"f{k:02d}", T0 + timedelta(seconds=k), [0.4, 0.6], seed=k)
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    writer = threading.Thread(target=log_frames, name="station")
    writer.start()
    archives: list[Path] = []
    deadline = time.monotonic() + 120
    while (not done.is_set() or exporter.count(exported=False)) and time.monotonic() < deadline:
        archives.append(tmp_path / "exports" / f"u{len(archives):03d}.tar.gz")
        exporter.export(archives[-1], only_new=True)
        time.sleep(0.02)
    writer.join(timeout=60)
    assert not errors, errors
    exported = []
    for archive in archives:
        manifest, files, _ = _read_export(archive)
        assert not manifest.skipped
        for patch in manifest.patches:
            assert hashlib.sha256(files[patch.file]).hexdigest() == patch.sha256
            exported.append(patch.row_id)
    assert len(archives) > 1 and len(exported) == len(set(exported)) == 2 * frames
    assert sorted(exported) == sorted(row.id for row in station.patches())
    assert station.count(exported=False) == 0
