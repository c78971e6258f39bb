"""Frame sources: order, ids, pixel conversion, bad input as events, watching, video, camera reconnects,
hostile files (issue 8), blocking watched folders and the inspected-files ledger."""

from __future__ import annotations

import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge.sources import Frame, FrameError, SourceConfig, SourceState, SourceStatus, create_source
from edge.sources.camera import backoff_delays
from shared.pixels import ColorPolicy, DepthPolicy, to_gray
from tests.edge.hostile_frames import (
    png_bytes,
    png_chunk,
    png_header_only,
    write_hostile_frames,
    write_odd_but_valid_frames,
)


def gray(width: int = 64, height: int = 48, value: int = 100) -> np.ndarray:
    image = np.full((height, width), value, np.uint8)
    image[5:15, 5:25] = 200  # something to tell orientation by
    return image


def collect(config: SourceConfig) -> list:
    with create_source(config) as source:
        return list(source)


def frames_of(items: list) -> list[Frame]:
    return [item for item in items if isinstance(item, Frame)]


def write_video(path: Path, count: int, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size, True)
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for index in range(count):
        writer.write(np.full((size[1], size[0], 3), 30 + 40 * index, np.uint8))
    writer.release()
    return path


def test_a_folder_is_read_once_in_name_order_with_stable_ids(tmp_path: Path):
    for name in ("b.png", "a.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), gray())
    items = collect(SourceConfig(spec=f"folder:{tmp_path}", name="cam1"))
    frames = frames_of(items)
    assert [f.path.name for f in frames] == ["a.png", "b.png", "c.jpg"]
    assert [f.frame_id for f in frames] == ["a-000001", "b-000002", "c-000003"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(f.source == "cam1" and f.captured_at.tzinfo is timezone.utc for f in frames)
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (48, 64)
    np.testing.assert_array_equal(frames[0].image, gray())
    assert len(items) == 3, "a clean folder yields frames only"


def test_max_frames_stops_the_source(tmp_path: Path):
    for index in range(5):
        cv2.imwrite(str(tmp_path / f"f{index}.png"), gray())
    assert len(collect(SourceConfig(spec=f"folder:{tmp_path}", max_frames=2))) == 2


def test_sixteen_bit_and_colour_frames_follow_the_configured_pixel_policies(tmp_path: Path):
    deep = np.array([[0, 4095, 65535, 257 * 100]], np.uint16).repeat(4, axis=0)
    cv2.imwrite(str(tmp_path / "a_deep.png"), deep)
    bgr = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "b_color.png"), bgr)

    scaled = frames_of(collect(SourceConfig(spec=f"folder:{tmp_path}")))
    assert scaled[0].image[0].tolist() == [0, 16, 255, 100]
    np.testing.assert_array_equal(scaled[1].image, to_gray(bgr))

    twelve = frames_of(collect(SourceConfig(spec=f"folder:{tmp_path}", depth=DepthPolicy.SCALE12)))
    assert twelve[0].image[0].tolist() == [0, 255, 255, 255]

    kept = frames_of(collect(SourceConfig(spec=f"folder:{tmp_path}", color=ColorPolicy.KEEP)))
    assert kept[0].image.shape == (4, 4, 3) and kept[0].image.dtype == np.uint8
    np.testing.assert_array_equal(kept[1].image, bgr)


def test_bad_files_become_frame_errors_and_the_folder_goes_on(tmp_path: Path):
    good = gray()
    cv2.imwrite(str(tmp_path / "a_good.png"), good)
    (tmp_path / "b_empty.png").write_bytes(b"")
    png = cv2.imencode(".png", good)[1].tobytes()
    (tmp_path / "c_truncated.png").write_bytes(png[: len(png) // 2])
    jpg = cv2.imencode(".jpg", good)[1].tobytes()
    (tmp_path / "d_truncated.jpg").write_bytes(jpg[: len(jpg) - 40])
    (tmp_path / "e_text.png").write_bytes(b"this is not an image at all")
    (tmp_path / "f_notes.txt").write_text("operator notes")
    cv2.imwrite(str(tmp_path / "g_float.tiff"), np.ones((8, 8), np.float32))
    cv2.imwrite(str(tmp_path / "h_wrong_size.png"), gray(32, 32))
    (tmp_path / ".hidden.png").write_bytes(png)  # hidden and temporary names are never read
    (tmp_path / "i_partial.png.part").write_bytes(png[:10])
    cv2.imwrite(str(tmp_path / "z_good.png"), good)

    items = collect(SourceConfig(spec=f"folder:{tmp_path}", expected_width_px=64, expected_height_px=48))
    reasons = {Path(item.ref).name: item.reason for item in items if isinstance(item, FrameError)}
    assert [f.path.name for f in frames_of(items)] == ["a_good.png", "z_good.png"]
    assert reasons["b_empty.png"] == "empty file"
    assert "truncated PNG" in reasons["c_truncated.png"]
    assert "truncated JPEG" in reasons["d_truncated.jpg"]
    assert "not a PNG" in reasons["e_text.png"]
    assert "not an image file type" in reasons["f_notes.txt"]
    assert "unsupported pixels" in reasons["g_float.tiff"] and "float32" in reasons["g_float.tiff"]
    assert "wrong size 32x32" in reasons["h_wrong_size.png"]
    assert len(items) == 9, "every file but the hidden and the partial one yields exactly one item"
    assert all(isinstance(item, (Frame, FrameError)) for item in items)


def test_a_missing_folder_is_an_error_event_not_an_exception(tmp_path: Path):
    items = collect(SourceConfig(spec=f"folder:{tmp_path / 'nope'}"))
    assert len(items) == 1 and isinstance(items[0], FrameError) and "cannot list" in items[0].reason


def _drain_in_thread(source) -> tuple[queue.Queue, threading.Thread]:
    items: queue.Queue = queue.Queue()

    def run() -> None:
        for item in source:
            items.put(item)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return items, thread


def test_a_watched_folder_reads_new_files_once_complete_and_skips_partial_writes(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "first.png"), gray(value=10))
    source = create_source(SourceConfig(spec=f"folder:{tmp_path}", watch=True, poll_s=0.05, settle_s=1.0))
    assert source.is_live
    items, thread = _drain_in_thread(source)
    try:
        first = items.get(timeout=10)
        assert isinstance(first, Frame) and first.path.name == "first.png"

        data = cv2.imencode(".png", gray(value=20))[1].tobytes()
        late = tmp_path / "late.png"
        late.write_bytes(data[: len(data) // 3])  # a camera still writing the file
        time.sleep(0.3)  # the watcher has seen the partial file by now, but it has not settled
        assert items.empty(), "a file still being written must not be read"
        with open(late, "ab") as handle:
            handle.write(data[len(data) // 3 :])
        second = items.get(timeout=10)
        assert isinstance(second, Frame), f"the completed file is a frame, got {second}"
        assert second.path.name == "late.png" and int(second.image[40, 40]) == 20
        assert second.frame_id == "late-000002"
    finally:
        source.close()
        thread.join(timeout=5)
    assert not thread.is_alive(), "close() ends a watching source"
    assert items.empty(), "each file is read once"


def test_a_video_file_yields_its_frames_in_order(tmp_path: Path):
    video = write_video(tmp_path / "run7.avi", 5)
    frames = frames_of(collect(SourceConfig(spec=f"video:{video}")))
    assert [f.frame_id for f in frames] == [f"run7-{i:06d}" for i in range(5)]
    assert all(f.image.ndim == 2 and f.image.shape == (48, 64) for f in frames)
    means = [float(f.image.mean()) for f in frames]
    assert means == sorted(means) and means[-1] - means[0] > 100


@pytest.mark.parametrize("content", [None, b"not a video"])
def test_a_missing_or_broken_video_is_one_error_event(tmp_path: Path, content: bytes | None):
    path = tmp_path / "broken.avi"
    if content is not None:
        path.write_bytes(content)
    items = collect(SourceConfig(spec=f"video:{path}"))
    assert len(items) == 1 and isinstance(items[0], FrameError)


def test_backoff_grows_by_the_factor_up_to_the_cap():
    delays = backoff_delays(0.1, 3.0, 1.0)
    assert [round(next(delays), 6) for _ in range(5)] == [0.1, 0.3, 0.9, 1.0, 1.0]


def test_a_camera_that_cannot_connect_reports_each_attempt_with_backoff_and_never_raises():
    config = SourceConfig(
        spec="camera:rtsp://127.0.0.1:1/line", reconnect_initial_s=0.01, reconnect_max_s=0.04, max_reconnects=4
    )
    items = collect(config)
    assert all(isinstance(item, SourceStatus) and item.state is SourceState.DISCONNECTED for item in items)
    assert [item.attempt for item in items] == [1, 2, 3, 4, 5]
    assert [item.retry_in_s for item in items] == [0.01, 0.02, 0.04, 0.04, None]
    assert items[-1].reason.startswith("giving up")


def test_closing_a_camera_interrupts_its_backoff_wait():
    source = create_source(
        SourceConfig(spec="camera:rtsp://127.0.0.1:1/line", reconnect_initial_s=60, reconnect_max_s=60)
    )
    items, thread = _drain_in_thread(source)
    status = items.get(timeout=10)
    assert isinstance(status, SourceStatus) and status.retry_in_s == 60
    started = time.monotonic()
    source.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 5


def test_a_camera_stream_that_drops_is_reconnected_and_frames_continue(tmp_path: Path):
    video = write_video(tmp_path / "stream.avi", 4)  # the 'stream' ends after 4 frames: a dropout
    items = collect(SourceConfig(spec=f"camera:{video}", name="cam", max_frames=6, reconnect_initial_s=0.01))
    kinds = [type(item).__name__ if not isinstance(item, SourceStatus) else item.state.value for item in items]
    assert kinds == ["connected"] + ["Frame"] * 4 + ["disconnected", "connected"] + ["Frame"] * 2
    reconnected = items[6]
    assert reconnected.reason == "reconnected" and reconnected.outage_s is not None and reconnected.outage_s >= 0
    ids = [item.frame_id for item in frames_of(items)]
    assert len(set(ids)) == 6 and ids == sorted(ids), "camera ids are unique and increase across reconnects"
    assert all(frame_id.startswith("cam-") for frame_id in ids)


def test_synthetic_frames_are_deterministic_and_carry_a_bright_square_on_even_frames():
    frames = frames_of(collect(SourceConfig(spec="synthetic:320x240", max_frames=2)))
    again = frames_of(collect(SourceConfig(spec="synthetic:320x240", max_frames=2)))
    np.testing.assert_array_equal(frames[0].image, again[0].image)
    assert frames[0].image.max() == 250 and frames[1].image.max() < 250


@pytest.mark.parametrize(
    "fields",
    [
        {"spec": "ftp:somewhere"},
        {"spec": "folder"},
        {"spec": "folder:x", "colour": "gray"},
        {"spec": "camera:0", "reconnect_initial_s": 5, "reconnect_max_s": 1},
    ],
)
def test_invalid_source_settings_are_refused(fields: dict):
    with pytest.raises(ValidationError):
        SourceConfig(**fields)


def test_the_station_settings_carry_the_source_section(monkeypatch: pytest.MonkeyPatch):
    from edge.config import EdgeSettings
    from shared.config import ConfigError, load_settings

    monkeypatch.setenv("PUMP_SOURCE__SPEC", "video:/data/run.mp4")
    monkeypatch.setenv("PUMP_SOURCE__MAX_FRAMES", "10")
    settings = load_settings(EdgeSettings)
    assert (settings.source.kind, settings.source.target, settings.source.max_frames) == ("video", "/data/run.mp4", 10)
    monkeypatch.setenv("PUMP_SOURCE__SPEC", "tape:/dev/st0")
    with pytest.raises(ConfigError, match="source.spec"):
        load_settings(EdgeSettings)


def test_the_kind_names_config_validates_against_are_the_registry_keys():
    from edge.sources.config import SOURCE_KIND_NAMES
    from edge.sources.registry import SOURCE_KINDS

    assert sorted(SOURCE_KIND_NAMES) == sorted(SOURCE_KINDS)
    assert len(set(SOURCE_KIND_NAMES)) == len(SOURCE_KIND_NAMES)


_VALIDATE_ONLY = """
import sys
from edge.config import EdgeSettings
from edge.sources.config import SourceConfig

SourceConfig(spec="camera:rtsp://cam/stream")
EdgeSettings(source={"spec": "video:/data/run.mp4"}, roi={"x": 0, "y": 0, "width": 8, "height": 8})
try:
    SourceConfig(spec="tape:/dev/st0")
except ValueError as error:
    assert "choose one of ['camera', 'folder', 'synthetic', 'video']" in str(error), error
else:
    raise AssertionError("an unknown kind was accepted")
print(" ".join(sorted(name for name in sys.modules if name == "cv2" or name.startswith("edge.sources."))))
"""


def test_validating_settings_imports_no_source_and_no_opencv():
    result = subprocess.run(
        [sys.executable, "-c", _VALIDATE_ONLY], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["edge.sources.config"]  # was: camera, folder, video, ... and cv2


# --- hostile input (issue 8): a frame can fail, the source cannot ---------------------------------


def reasons_by_name(items: list) -> dict[str, str]:
    return {Path(item.ref).name: item.reason for item in items if isinstance(item, FrameError)}


def test_every_hostile_kind_is_one_frame_error_naming_it_and_the_good_frames_around_them_pass(tmp_path: Path):
    expected = write_hostile_frames(tmp_path)
    cv2.imwrite(str(tmp_path / "0_good.png"), gray())
    cv2.imwrite(str(tmp_path / "z_good.png"), gray())
    items = collect(SourceConfig(spec=f"folder:{tmp_path}"))
    assert [f.path.name for f in frames_of(items)] == ["0_good.png", "z_good.png"]
    reasons = reasons_by_name(items)
    assert set(reasons) == set(expected), "exactly one error per bad entry, no more, no less"
    for name, fragment in expected.items():
        assert fragment in reasons[name], f"{name}: {reasons[name]!r} should say {fragment!r}"
    assert len(items) == len(expected) + 2
    assert all(
        item.path is not None and item.path.name == Path(item.ref).name
        for item in items
        if isinstance(item, FrameError)
    )


def test_the_bombs_name_their_declared_size_the_limit_and_the_setting(tmp_path: Path):
    write_hostile_frames(tmp_path)
    reasons = reasons_by_name(collect(SourceConfig(spec=f"folder:{tmp_path}")))
    assert reasons["bomb_header.png"] == (
        "declared size 100000 x 100000 px (10000.0 MP) exceeds source.max_frame_pixels = 32000000 (32.0 MP); "
        "refused before decoding"
    )
    assert "30000 x 30000" in reasons["bomb_deflate.png"]


_PEAK_RSS_PROBE = """
import sys
from edge.sources import SourceConfig, create_source
with create_source(SourceConfig(spec="folder:" + sys.argv[1])) as source:
    kinds = [type(item).__name__ for item in source]
# VmHWM: the peak of this process's own memory. ru_maxrss is not: Linux carries it across exec
# from the forked parent, so under a 1 GB pytest process it reads 1 GB whatever the child did.
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(len(kinds), kinds.count("FrameError"), peak_kib)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_reading_the_bomb_folder_stays_far_below_the_1_gb_budget(tmp_path: Path):
    expected = write_hostile_frames(tmp_path / "bombs")
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_PROBE, str(tmp_path / "bombs")],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    count, errors, peak_kib = (int(value) for value in result.stdout.split())
    assert count == errors == len(expected)
    # The budget is 1 GB; the 30000 x 30000 bomb alone decodes to 900 MB, so a peak anywhere near the
    # budget means a bomb was decoded. Python + numpy + OpenCV start at ~100 MB.
    assert peak_kib / 1024 < 400, f"peak RSS {peak_kib / 1024:.0f} MiB"


def test_odd_but_valid_files_are_good_frames_with_the_right_pixels(tmp_path: Path):
    names = write_odd_but_valid_frames(tmp_path, 64, 48)
    items = collect(SourceConfig(spec=f"folder:{tmp_path}", expected_width_px=64, expected_height_px=48))
    assert reasons_by_name(items) == {}
    frames = {f.path.name: f for f in frames_of(items)}
    assert sorted(frames) == names
    for name, frame in frames.items():
        assert frame.image.shape == (48, 64) and frame.image.dtype == np.uint8, name
        if name not in ("alpha.png", "color16.png", "color16.tif"):  # those are colour: gray = luma
            assert abs(int(frame.image[10, 10]) - 200) <= 2 and abs(int(frame.image[30, 40]) - 100) <= 2, name
    assert int(frames["sbit12.png"].image[10, 10]) == round(200 * 16 * 255 / 4095), "sBIT 12: scaled as 12-bit"


def test_a_frame_at_the_pixel_budget_is_read_and_one_row_more_is_refused_before_decoding(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "a_at_limit.png"), np.zeros((100, 100), np.uint8))
    cv2.imwrite(str(tmp_path / "b_over.png"), np.zeros((101, 100), np.uint8))
    cv2.imwrite(str(tmp_path / "c_over.jpg"), np.zeros((101, 100), np.uint8))
    items = collect(SourceConfig(spec=f"folder:{tmp_path}", max_frame_pixels=10_000))
    assert [f.path.name for f in frames_of(items)] == ["a_at_limit.png"]
    reasons = reasons_by_name(items)
    assert set(reasons) == {"b_over.png", "c_over.jpg"}
    assert all("100 x 101 px" in reason and "max_frame_pixels = 10000" in reason for reason in reasons.values())


def test_a_one_pixel_frame_is_a_frame_unless_a_size_is_expected(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "dot.png"), np.full((1, 1), 7, np.uint8))
    frames = frames_of(collect(SourceConfig(spec=f"folder:{tmp_path}")))
    assert len(frames) == 1 and frames[0].image.shape == (1, 1) and int(frames[0].image[0, 0]) == 7
    items = collect(SourceConfig(spec=f"folder:{tmp_path}", expected_width_px=64))
    assert "wrong size 1x1" in reasons_by_name(items)["dot.png"]


def test_a_file_deleted_between_listing_and_reading_is_a_frame_error(tmp_path: Path):
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), gray())
    with create_source(SourceConfig(spec=f"folder:{tmp_path}")) as source:
        items = iter(source)
        first = next(items)  # the folder is listed, a.png read
        (tmp_path / "b.png").unlink()
        rest = list(items)
    assert isinstance(first, Frame) and first.path.name == "a.png"
    assert isinstance(rest[0], FrameError) and Path(rest[0].ref).name == "b.png"
    assert rest[0].reason == "file vanished before it could be read"
    assert isinstance(rest[1], Frame) and rest[1].path.name == "c.png"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files without permission")
def test_an_unreadable_file_is_a_frame_error(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "locked.png"), gray())
    (tmp_path / "locked.png").chmod(0)
    assert reasons_by_name(collect(SourceConfig(spec=f"folder:{tmp_path}"))) == {
        "locked.png": "cannot be read (permission denied)"
    }


def test_symlinks_leaving_the_folder_are_refused_unless_configured(tmp_path: Path):
    inside, outside = tmp_path / "watched", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    cv2.imwrite(str(outside / "secret.png"), gray(value=50))
    cv2.imwrite(str(inside / "local.png"), gray(value=60))
    (inside / "escape.png").symlink_to(outside / "secret.png")
    (inside / "relative.png").symlink_to("../elsewhere/secret.png")
    (inside / "alias.png").symlink_to("local.png")

    items = collect(SourceConfig(spec=f"folder:{inside}"))
    assert [f.path.name for f in frames_of(items)] == ["alias.png", "local.png"], "links inside are read"
    reasons = reasons_by_name(items)
    assert set(reasons) == {"escape.png", "relative.png"}
    assert all("leaves the folder" in r and "follow_external_symlinks" in r for r in reasons.values())

    allowed = frames_of(collect(SourceConfig(spec=f"folder:{inside}", follow_external_symlinks=True)))
    by_name = {f.path.name: f for f in allowed}
    assert set(by_name) == {"alias.png", "escape.png", "local.png", "relative.png"}
    assert by_name["escape.png"].path == inside / "escape.png", "frames name the link, not its target"
    assert int(by_name["escape.png"].image[40, 40]) == 50


def test_a_watched_folder_reports_a_bad_entry_once_not_every_poll(tmp_path: Path):
    source = create_source(SourceConfig(spec=f"folder:{tmp_path}", watch=True, poll_s=0.02, settle_s=0.0))
    items, thread = _drain_in_thread(source)
    try:
        (tmp_path / "dangling.png").symlink_to("nowhere.png")
        (tmp_path / "frames.png").mkdir()
        (tmp_path / "bad.part").write_bytes(png_header_only())
        (tmp_path / "bad.part").rename(tmp_path / "bad.png")  # whole at once: a half-written file is another file
        time.sleep(1.0)  # ~50 polls
        cv2.imwrite(str(tmp_path / "good.png"), gray())
        seen = []
        while not any(isinstance(item, Frame) for item in seen):
            seen.append(items.get(timeout=10))
        (tmp_path / "dangling.png").unlink()
        time.sleep(0.5)  # many polls see it gone, even on a loaded machine
        (tmp_path / "dangling.png").symlink_to("still-nowhere.png")  # gone and back: reported again
        seen.append(items.get(timeout=10))
    finally:
        source.close()
        thread.join(timeout=5)
    while not items.empty():
        seen.append(items.get())
    names = [Path(item.ref).name for item in seen if isinstance(item, FrameError)]
    assert sorted(names) == ["bad.png", "dangling.png", "dangling.png", "frames.png"], names
    assert "still-nowhere.png" in [item.reason for item in seen if isinstance(item, FrameError)][-1]


def test_twelve_bit_data_in_sixteen_bit_files_is_scaled_by_evidence_or_refused_naming_the_setting(tmp_path: Path):
    twelve = np.full((8, 8), 2048, np.uint16)
    (tmp_path / "a_sbit.png").write_bytes(png_bytes(twelve, 0, before_idat=(png_chunk(b"sBIT", b"\x0c"),)))
    cv2.imwrite(str(tmp_path / "b_bare.png"), twelve)
    auto = collect(SourceConfig(spec=f"folder:{tmp_path}"))
    assert [int(f.image[0, 0]) for f in frames_of(auto)] == [128], "sBIT 12: 2048 / 4095 * 255"
    reason = reasons_by_name(auto)["b_bare.png"]
    assert "fit in 12 bits" in reason and "source.depth = auto" in reason and "scale12 or scale16" in reason
    scaled16 = frames_of(collect(SourceConfig(spec=f"folder:{tmp_path}", depth=DepthPolicy.SCALE16)))
    assert [int(f.image[0, 0]) for f in scaled16] == [8, 8], "an explicit policy is obeyed"


def test_a_video_declaring_frames_above_the_budget_is_one_error_and_synthetic_refuses_at_start(tmp_path: Path):
    video = write_video(tmp_path / "big.avi", 2)
    items = collect(SourceConfig(spec=f"video:{video}", max_frame_pixels=1000))
    assert len(items) == 1 and "64 x 48 px" in items[0].reason and "max_frame_pixels = 1000" in items[0].reason
    with pytest.raises(ValueError, match="max_frame_pixels"):
        create_source(SourceConfig(spec="synthetic:100x100", max_frame_pixels=1000))


def test_a_camera_declaring_frames_above_the_budget_is_refused_like_a_failed_connection(tmp_path: Path):
    video = write_video(tmp_path / "stream.avi", 3)  # a 64 x 48 'camera'
    config = SourceConfig(
        spec=f"camera:{video}", max_frame_pixels=1000, reconnect_initial_s=0.01, reconnect_max_s=0.02, max_reconnects=2
    )
    items = collect(config)
    assert all(isinstance(item, SourceStatus) and item.state is SourceState.DISCONNECTED for item in items)
    assert [item.attempt for item in items] == [1, 2, 3], "backoff applies: no hot reconnect loop"
    assert all("64 x 48 px" in item.reason and "max_frame_pixels = 1000" in item.reason for item in items)


# --- a folder is a queue of files: block, never drop; remember what was inspected -------------------


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
    items, thread = _drain_in_thread(first)
    try:
        for _ in range(2):
            frame = items.get(timeout=10)
            first.mark_done(frame)
    finally:
        first.close()
        thread.join(timeout=5)

    cv2.imwrite(str(folder / "c.png"), gray())
    second = create_source(config, data_dir)
    items, thread = _drain_in_thread(second)
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
