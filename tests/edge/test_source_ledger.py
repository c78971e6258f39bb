"""A folder is a queue of files: it blocks instead of dropping and remembers what was inspected."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import cv2

from edge.sources import Frame, FrameError, SourceConfig, create_source
from tests.edge.source_helpers import drain_in_thread, frames_of, gray, reasons_by_name


def test_folders_block_and_cameras_drop_under_automatic_backpressure(tmp_path: Path):
    assert not create_source(SourceConfig(spec=f"folder:{tmp_path}")).drops_when_busy
    watched = create_source(SourceConfig(spec=f"folder:{tmp_path}", watch=True))
    assert watched.is_live and not watched.drops_when_busy
    assert create_source(SourceConfig(spec="camera:0")).drops_when_busy


def test_a_burst_of_ten_files_into_a_watched_folder_reaches_a_slow_consumer_complete(tmp_path: Path):
    from edge.runtime.frames import FrameQueue

    watched = tmp_path / "in"
    watched.mkdir()
    source = create_source(SourceConfig(spec=f"folder:{watched}", watch=True, poll_s=0.02, settle_s=0.05))
    frames = FrameQueue(1, drop_oldest=source.drops_when_busy)  # as the station chooses for backpressure auto
    stop = threading.Event()

    def produce() -> None:
        for item in source:
            if isinstance(item, Frame):
                frames.put(item, stop)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    staging = tmp_path / "staging"
    staging.mkdir()
    for index in range(10):
        cv2.imwrite(str(staging / f"part{index:02d}.png"), gray(value=10 + index))
    for path in staging.iterdir():
        path.rename(watched / path.name)  # "moved in at once"
    received = []
    try:
        while len(received) < 10:
            frame = frames.get(10.0)
            assert frame is not None, f"only {len(received)} of 10 frames arrived"
            received.append(frame.path.name)
            time.sleep(0.05)  # a station slower than the burst
    finally:
        stop.set()
        source.close()
        producer.join(timeout=5)
    assert sorted(received) == [f"part{index:02d}.png" for index in range(10)]


def _inspect(folder: Path, data_dir: Path | None, mark=lambda frame: True, **options) -> list:
    """One --once pass, marking frames done as the station does once their result is in the outbox."""
    with create_source(SourceConfig(spec=f"folder:{folder}", name="line1", **options), data_dir) as source:
        items = list(source)
        for frame in frames_of(items):
            if mark(frame):
                source.mark_done(frame)  # after the source finished iterating: the queue drains later
    return items


def test_a_restart_does_not_reinspect_files_whose_result_was_stored(tmp_path: Path):
    folder, data_dir = tmp_path / "in", tmp_path / "data"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(folder / name), gray())
    (folder / "d_bad.png").write_bytes(b"garbage")

    first = _inspect(folder, data_dir, mark=lambda frame: frame.path.name != "c.png")  # c: crashed before publish
    assert [f.path.name for f in frames_of(first)] == ["a.png", "b.png", "c.png"]
    assert (data_dir / "sources" / "line1.sqlite3").is_file()

    cv2.imwrite(str(folder / "e_new.png"), gray())
    os.utime(folder / "b.png", ns=(time.time_ns(), time.time_ns() + 10**9))  # replaced: a new version
    second = _inspect(folder, data_dir)
    assert [f.path.name for f in frames_of(second)] == ["b.png", "c.png", "e_new.png"]
    assert list(reasons_by_name(second)) == ["d_bad.png"], "bad files are reported again: they have no result"

    assert frames_of(_inspect(folder, data_dir)) == [], "everything is remembered now"
    assert len(frames_of(_inspect(folder, data_dir, remember_inspected=False))) == 4
    assert len(frames_of(_inspect(folder, None))) == 4, "without a data dir nothing is remembered"


def test_the_ledger_forgets_files_that_left_the_folder(tmp_path: Path):
    folder, data_dir = tmp_path / "in", tmp_path / "data"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), gray())
    _inspect(folder, data_dir)
    (folder / "a.png").unlink()
    _inspect(folder, data_dir)
    with sqlite3.connect(data_dir / "sources" / "line1.sqlite3") as db:
        assert [row[0] for row in db.execute("SELECT name FROM inspected")] == ["b.png"]


def test_a_watched_folder_remembers_inspected_files_across_a_restart(tmp_path: Path):
    folder, data_dir = tmp_path / "in", tmp_path / "data"
    folder.mkdir()
    config = SourceConfig(spec=f"folder:{folder}", name="w", watch=True, poll_s=0.02, settle_s=0.0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), gray())

    first = create_source(config, data_dir)
    items, thread = drain_in_thread(first)
    try:
        for _ in range(2):
            frame = items.get(timeout=10)
            first.mark_done(frame)
    finally:
        first.close()
        thread.join(timeout=5)

    cv2.imwrite(str(folder / "c.png"), gray())
    second = create_source(config, data_dir)
    items, thread = drain_in_thread(second)
    try:
        frame = items.get(timeout=10)
        time.sleep(0.3)  # more polls: nothing else may come
    finally:
        second.close()
        thread.join(timeout=5)
    assert frame.path.name == "c.png" and items.empty()
    assert second.already_inspected == 2


def test_an_unwritable_data_dir_is_an_event_and_the_folder_is_still_read(tmp_path: Path):
    (tmp_path / "data").write_text("a file where the data dir should be")
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), gray())
    items = _inspect(folder, tmp_path / "data")
    assert [f.path.name for f in frames_of(items)] == ["a.png"]
    errors = [item for item in items if isinstance(item, FrameError)]
    assert len(errors) == 1 and "inspected-files ledger" in errors[0].reason
