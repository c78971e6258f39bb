"""Frame sources: order, ids, pixel conversion, bad input as events, watching, video, camera reconnects
(hostile files: test_sources_hostile.py; blocking watched folders and the ledger: test_source_ledger.py)."""

from __future__ import annotations

import subprocess
import sys
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
from tests.edge.source_helpers import collect, drain_in_thread, frames_of, gray, write_video


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


def test_a_watched_folder_reads_new_files_once_complete_and_skips_partial_writes(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "first.png"), gray(value=10))
    source = create_source(SourceConfig(spec=f"folder:{tmp_path}", watch=True, poll_s=0.05, settle_s=1.0))
    assert source.is_live
    items, thread = drain_in_thread(source)
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
    items, thread = drain_in_thread(source)
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
