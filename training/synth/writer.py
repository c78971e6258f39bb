"""Write a synthetic frame set to disk: images, masks, per-frame records and provenance.

Layout of ``out_dir``::

    images/frame_00000.png   8-bit grey frame
    masks/frame_00000.png    0 = good, 255 = defect
    frames.jsonl             one object per frame: id, paths, size, defects, pose, lighting
    synth.json               what made the set (config, seed, versions) and its statistics

The set is written into a temporary folder that is renamed into place at the end, so a
failure never leaves a half-written set behind.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from training.outputs import atomic_output_dir, provenance, write_json_atomic
from training.synth.config import DEFECT_KINDS, SynthConfig
from training.synth.render import SynthFrame, render_frame
from training.synth.stats import PatchStatistics, random_patch_statistics

_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # lossless either way; level 1 is ~4x faster than 3


@dataclass(frozen=True)
class SynthSummary:
    """What a written set contains and how long it took."""

    frames: int
    seconds: float
    frames_with_defects: int
    defects_by_kind: dict[str, int]
    patch_statistics: PatchStatistics

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def format(self) -> str:
        """Readable multi-line summary: counts, speed and the patch statistics."""
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.defects_by_kind.items())
        head = [
            f"rendered and written            {self.frames} frames in {self.seconds:.1f} s "
            f"({self.frames_per_s:.2f} frames/s)",
            f"frames with defects             {self.frames_with_defects}",
            f"defects by kind                 {kinds}",
        ]
        return "\n".join([*head, self.patch_statistics.table()])

    def to_dict(self) -> dict:
        return {
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.frames_per_s, 3),
            "frames_with_defects": self.frames_with_defects,
            "defects_by_kind": dict(self.defects_by_kind),
            "patch_statistics": self.patch_statistics.to_dict(),
        }


def frame_id(index: int) -> str:
    """File stem of frame ``index`` (``frame_00000``)."""
    return f"frame_{index:05d}"


def frame_record(index: int, frame: SynthFrame) -> dict:
    """The ``frames.jsonl`` object of one frame (paths relative to the set folder)."""
    height, width = frame.image.shape
    stem = frame_id(index)
    return {
        "id": stem,
        "image": f"images/{stem}.png",
        "mask": f"masks/{stem}.png",
        "width": width,
        "height": height,
        "defects": [defect.to_dict() for defect in frame.defects],
        "pose": frame.pose.to_dict(),
        "lighting": frame.lighting.to_dict(),
    }


def write_synth_set(
    out_dir: Path,
    config: SynthConfig,
    frames: int,
    seed: int,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Render ``frames`` frames of set ``seed`` into ``out_dir`` (atomically) and summarise them."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    started = time.perf_counter()
    kinds: Counter[str] = Counter({kind: 0 for kind in DEFECT_KINDS})
    with_defects = 0
    with atomic_output_dir(Path(out_dir), overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        with open(tmp / "frames.jsonl", "w", encoding="utf-8") as records, _PngWriter() as pngs:

            def rendered_masks() -> Iterator[np.ndarray]:
                nonlocal with_defects
                for index in tqdm(range(frames), desc="synth", unit="frame", disable=not progress):
                    frame = render_frame(config, seed, index)
                    record = frame_record(index, frame)
                    pngs.write(tmp / record["image"], frame.image)
                    pngs.write(tmp / record["mask"], frame.mask)
                    records.write(json.dumps(record) + "\n")
                    kinds.update(defect.kind for defect in frame.defects)
                    with_defects += bool(frame.defects)
                    yield frame.mask

            statistics = random_patch_statistics(rendered_masks(), seed)
        summary = SynthSummary(
            frames=frames,
            seconds=time.perf_counter() - started,
            frames_with_defects=with_defects,
            defects_by_kind=dict(kinds),
            patch_statistics=statistics,
        )
        payload = provenance("synth", config.model_dump(mode="json"), seed)
        payload["statistics"] = summary.to_dict()
        write_json_atomic(tmp / "synth.json", payload)
    return summary


class _PngWriter:
    """Encodes PNGs on background threads while the next frame renders (zlib releases the GIL).

    At most ``max_pending`` writes are in flight (bounded memory); a failed write is raised
    at the next :meth:`write` or on exit, and exiting waits for every write to finish, so
    the folder is never renamed or removed under a running write.
    """

    def __init__(self, threads: int = 2, max_pending: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="png")
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending

    def __enter__(self) -> _PngWriter:
        return self

    def write(self, path: Path, pixels: np.ndarray) -> None:
        self._pending.append(self._pool.submit(_write_png, path, pixels))
        while len(self._pending) > self._max_pending:
            self._pending.popleft().result()

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            while self._pending:
                future = self._pending.popleft()
                if exc_type is None:
                    future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    if not cv2.imwrite(str(path), pixels, _PNG_FAST):
        raise OSError(f"could not write {path}")
