"""The contract every frame source keeps, run for every entry of ``edge.sources.registry.SOURCE_KINDS``.

House style 19: one battery for the whole plugin family, like the backend conformance tests. Each
kind brings a :class:`Recipe` (how to make it yield frames here, without a camera: a camera is
opened on a video file through OpenCV's FFmpeg backend, as a stream would be); a new source kind
fails :func:`test_every_registered_source_kind_has_a_contract_recipe` until it gets one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge.sources import Frame, FrameError, FrameSource, SourceConfig, SourceStatus, create_source
from edge.sources.registry import SOURCE_KINDS

WIDTH, HEIGHT, FRAMES = 64, 48, 3


def _images() -> list[np.ndarray]:
    return [np.full((HEIGHT, WIDTH, 3), 40 + 60 * index, np.uint8) for index in range(FRAMES)]


def _folder(tmp_path: Path) -> str:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, image in enumerate(_images()):
        cv2.imwrite(str(folder / f"frame{index:03d}.png"), image)
    return str(folder)


def _video(tmp_path: Path) -> str:
    path = tmp_path / "run.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (WIDTH, HEIGHT), True)
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for image in _images():
        writer.write(image)
    writer.release()
    return str(path)


@dataclass(frozen=True)
class Recipe:
    """How the contract drives one source kind on this machine."""

    target: Callable[[Path], str]  # a target that yields at least FRAMES frames of WIDTH x HEIGHT
    bad_target: Callable[[Path], str]  # a target that cannot work: a clear error, never a crash mid-iteration
    is_live: bool
    drops_when_busy: bool
    options: dict  # SourceConfig fields the kind needs here (e.g. a quick camera reconnect)


RECIPES: dict[str, Recipe] = {
    "folder": Recipe(_folder, lambda tmp: str(tmp / "no-such-folder"), False, False, {}),
    "video": Recipe(_video, lambda tmp: str(tmp / "no-such-video.avi"), False, False, {}),
    "camera": Recipe(
        _video,  # a video file read as a stream: it 'drops' at its end and is reconnected
        lambda tmp: str(tmp / "no-such-camera.avi"),
        True,
        True,
        {"reconnect_initial_s": 0.01, "reconnect_max_s": 0.02, "max_reconnects": 0},
    ),
    "synthetic": Recipe(lambda tmp: f"{WIDTH}x{HEIGHT}", lambda tmp: "wide-by-tall", False, False, {}),
}


def test_every_registered_source_kind_has_a_contract_recipe():
    assert sorted(RECIPES) == sorted(SOURCE_KINDS)


@pytest.fixture(params=sorted(SOURCE_KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


class TestFrameSourceContract:
    """Every source: typed items, stable ids, no raising on bad input, close any time, twice."""

    @staticmethod
    def config(kind: str, target: str, **fields: object) -> SourceConfig:
        return SourceConfig(spec=f"{kind}:{target}", name=f"src-{kind}", **{**RECIPES[kind].options, **fields})

    def good_source(self, kind: str, tmp_path: Path, **fields: object) -> FrameSource:
        return create_source(self.config(kind, RECIPES[kind].target(tmp_path), **{"max_frames": FRAMES, **fields}))

    def test_it_is_the_registered_class_and_says_whether_it_is_live(self, kind: str, tmp_path: Path):
        source = self.good_source(kind, tmp_path)
        assert type(source) is SOURCE_KINDS[kind] and source.kind == kind
        assert (source.is_live, source.drops_when_busy) == (RECIPES[kind].is_live, RECIPES[kind].drops_when_busy)
        assert isinstance(source.is_live, bool) and isinstance(source.drops_when_busy, bool)

    def test_it_yields_typed_items_and_frames_with_unique_ids_in_order(self, kind: str, tmp_path: Path):
        with self.good_source(kind, tmp_path) as source:
            items = list(source)
        assert all(isinstance(item, Frame | FrameError | SourceStatus) for item in items)
        frames = [item for item in items if isinstance(item, Frame)]
        assert len(frames) == FRAMES, items
        assert [frame.index for frame in frames] == list(range(FRAMES))
        assert len({frame.frame_id for frame in frames}) == FRAMES
        for frame in frames:
            assert frame.source == f"src-{kind}" and frame.frame_id
            assert frame.image.dtype == np.uint8 and frame.image.shape == (HEIGHT, WIDTH)  # color = gray
            assert frame.image.flags.c_contiguous
            assert frame.captured_at.tzinfo is not None and frame.captured_at.utcoffset() == timezone.utc.utcoffset(
                None
            )

    def test_mark_done_takes_every_frame_and_never_raises(self, kind: str, tmp_path: Path):
        source = self.good_source(kind, tmp_path)
        with source:
            frames = [item for item in source if isinstance(item, Frame)]
        for frame in frames:  # also after iteration ended, as the inference thread may call it
            assert source.mark_done(frame) is None

    def test_close_is_idempotent_and_a_closed_source_yields_nothing(self, kind: str, tmp_path: Path):
        source = self.good_source(kind, tmp_path)
        source.close()
        source.close()
        assert source.stopped and list(source) == []
        source.close()

    def test_the_context_manager_returns_the_source_and_closes_it(self, kind: str, tmp_path: Path):
        source = self.good_source(kind, tmp_path)
        with source as entered:
            assert entered is source and not source.stopped
            next(iter(source))
        assert source.stopped
        source.close()

    def test_close_from_another_thread_ends_the_iteration(self, kind: str, tmp_path: Path):
        source = self.good_source(kind, tmp_path, max_frames=None)
        items: queue.Queue = queue.Queue()
        thread = threading.Thread(target=lambda: [items.put(item) for item in source], daemon=True)
        thread.start()
        items.get(timeout=10)  # it runs
        source.close()
        thread.join(timeout=5)
        assert not thread.is_alive(), "close() did not end the iteration"

    def test_a_target_that_cannot_work_is_a_clear_error_not_a_crash(self, kind: str, tmp_path: Path):
        bad = RECIPES[kind].bad_target(tmp_path)
        try:
            source = create_source(self.config(kind, bad))
        except ValueError as error:  # refused at creation: the message names the target
            assert bad in str(error)
            return
        with source:
            items = list(source)  # never raises
        problems = [item for item in items if isinstance(item, FrameError | SourceStatus)]
        assert problems and not any(isinstance(item, Frame) for item in items)
        assert any(bad in (getattr(item, "ref", "") + " " + item.reason) for item in problems), problems

    def test_a_spec_without_a_target_is_refused_naming_the_form(self, kind: str):
        with pytest.raises(ValidationError, match="KIND:TARGET"):
            SourceConfig(spec=f"{kind}:")
