"""One turn of the closed loop, for the demo and its end-to-end test.

On a real line the turn is a person and six commands (README, "The closed loop")::

    pump-edge export-uncertain u.tar.gz --only-new          # on the station
    pump-train ingest u.tar.gz PATCHES                      # origin=line, unlabelled
    pump-train label PATCHES --csv labels.csv               # a person's verdicts
    pump-train classifier train PATCHES RUN2 --init-from RUN1 …
    pump-train export RUN2 BUNDLES/classifier-0.1.1 --parent BUNDLES/classifier
    (the station's bundles.watch_dir picks it up; or cmd/reload)

Here :func:`planted_labels` stands in for the person (the demo's line frames carry the masks
their defects were planted with), and :func:`reload_on_line` runs a station on a watched
frame folder, feeds it frames like a camera, lets a new bundle appear in its ``watch_dir``
and reports which model version judged every frame.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.masks import MASK_DEFECT, MASK_IGNORE
from training.data.ingest import LINE_META_NAME, LinePatchRecord
from training.data.patchset import PatchOrigin, load_patchset
from training.data.table import read_rows

WAIT_S = 60.0


def planted_labels(patches_dir: Path, line_dir: Path, out_dir: Path) -> Path:
    """A label CSV (+ mask PNGs) for the unlabelled line patches whose frame is in ``line_dir/frames.jsonl``.

    Each patch's mask is cut from its frame's planted mask at the tile the station logged
    (frame pixels; outside the frame: ignore) and resized to the patch; a patch with a planted
    defect pixel is ``defect``, else ``good``. Patches of other frames stay unlabelled.
    """
    patches_dir, line_dir, out_dir = Path(patches_dir), Path(line_dir), Path(out_dir)
    frames = {}
    for line in (line_dir / "frames.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        frames[record["id"]] = line_dir / record["mask"]
    patchset = load_patchset(patches_dir)
    frame_of = {row.id: row.frame_id for row in read_rows(patches_dir / LINE_META_NAME, LinePatchRecord)}
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for record in patchset.records:
        if record.origin != PatchOrigin.LINE.value or record.split != "pool":
            continue
        stem = frame_of.get(record.id, "").rsplit("-", 1)[0]  # the folder source names frames <stem>-<counter>
        if stem not in frames:
            continue
        planted = cv2.imread(str(frames[stem]), cv2.IMREAD_GRAYSCALE)
        tile = np.full((record.crop_px, record.crop_px), MASK_IGNORE, np.uint8)
        x0, y0 = max(record.x, 0), max(record.y, 0)
        x1, y1 = min(record.x + record.crop_px, planted.shape[1]), min(record.y + record.crop_px, planted.shape[0])
        if x1 > x0 and y1 > y0:
            tile[y0 - record.y : y1 - record.y, x0 - record.x : x1 - record.x] = np.where(
                planted[y0:y1, x0:x1] >= 128, MASK_DEFECT, 0
            )
        mask = cv2.resize(tile, (record.patch_px, record.patch_px), interpolation=cv2.INTER_NEAREST)
        name = f"masks/{record.id}.png"
        cv2.imwrite(str(out_dir / name), mask)
        rows.append((record.id, "defect" if (mask == MASK_DEFECT).any() else "good", name))
    path = out_dir / "labels.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "mask"])
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class LineReload:
    """What :func:`reload_on_line` saw: the classifier version of every frame's result, in order."""

    versions: list[str]  # per result, in publication order
    frames_fed: int
    reloaded_event: dict | None
    exit_code: int

    @property
    def switches(self) -> int:
        return sum(a != b for a, b in zip(self.versions, self.versions[1:], strict=False))


def _feed(frames: list[Path], folder: Path) -> None:
    """Copy frames into the watched folder as a camera would: a hidden name, then renamed into place."""
    for frame in frames:
        hidden = folder / f".{frame.name}.part"
        shutil.copyfile(frame, hidden)
        os.replace(hidden, folder / frame.name)


def reload_on_line(
    settings,  # noqa: ANN001 - edge.config.EdgeSettings (the training side imports edge lazily)
    frames: list[Path],
    *,
    new_bundle: Callable[[], Path],
    before: int,
    task: str = "classifier",
) -> LineReload:
    """Run a station on ``settings`` (a watched ``folder:`` source, ``bundles.watch_dir`` set), feed ``before``
    frames, call ``new_bundle()`` (which must make a new bundle appear in the watch folder), wait for
    ``model-reloaded``, feed the rest, stop; the results' model versions in order.
    """
    from edge.publish.watch import MessageCollector
    from edge.runtime.station import Station

    folder = Path(settings.source.spec.split(":", 1)[1])
    folder.mkdir(parents=True, exist_ok=True)
    collector = MessageCollector(
        settings.mqtt, settings.line_id, settings.station_id, kinds=("result", "event")
    ).start()
    station = Station(settings)
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(station.run()), name="station")
    runner.start()

    def results() -> list:
        return [m.message for m in collector.messages("result")]

    def wait(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if time.monotonic() > deadline or not runner.is_alive():
                raise RuntimeError(f"closed loop: the station did not {what} within {WAIT_S:.0f} s")
            time.sleep(0.1)

    def reloaded() -> list:
        return [m.message for m in collector.messages("event") if m.message.kind.value == "model-reloaded"]

    try:
        _feed(frames[:before], folder)
        wait(lambda: len(results()) >= before, f"judge the first {before} frames")
        new_bundle()
        wait(lambda: bool(reloaded()), "reload the new bundle")
        _feed(frames[before:], folder)
        wait(lambda: len(results()) >= len(frames), f"judge all {len(frames)} frames")
    finally:
        station.request_stop()
        runner.join(WAIT_S)
        collector.stop()
    versions = [r.models[task].split("+", 1)[0] for r in sorted(results(), key=lambda r: r.seq)]
    event = reloaded()[0].model_dump(mode="json") if reloaded() else None
    return LineReload(
        versions=versions, frames_fed=len(frames), reloaded_event=event, exit_code=codes[0] if codes else 1
    )
