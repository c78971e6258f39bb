"""``folder:DIR`` - image files in name order, once, or watched for new files.

Watching polls the directory (portable, no inotify): a file is read once its size and
mtime have not changed for ``settle_s``, so a camera or a copy still writing it is not
read half-way. Hidden and temporary names (``.x``, ``*.tmp``, ``*.part``, ``*~``) are never
read: writers that rename into place are picked up at the rename. A file replaced later
(new size or mtime) is read again as a new frame.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from edge.sources.base import FrameError, FrameSource, SourceItem, safe_id_part
from edge.sources.config import SourceConfig
from edge.sources.decode import read_image_file

TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")

Signature = tuple[int, int]  # (size in bytes, mtime in ns)


def is_candidate(name: str) -> bool:
    """Names a watched folder may read; hidden and in-progress names are skipped silently."""
    lower = name.lower()
    return not (name.startswith(".") or lower.endswith(TEMPORARY_SUFFIXES) or name.endswith("~"))


class FolderSource(FrameSource):
    """Frames from the image files of one directory (not recursive)."""

    kind = "folder"

    def __init__(self, target: str, config: SourceConfig) -> None:
        super().__init__(target, config)
        self.directory = Path(target).expanduser()
        self._counter = 0

    @property
    def is_live(self) -> bool:
        return self.config.watch

    def _scan(self) -> dict[str, tuple[Path, Signature]] | str:
        try:
            entries = list(os.scandir(self.directory))
        except OSError as error:
            return f"cannot list the folder ({error.strerror or error})"
        found: dict[str, tuple[Path, Signature]] = {}
        for entry in entries:
            if not is_candidate(entry.name):
                continue
            try:
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except OSError:
                continue  # vanished between listing and stat
            found[entry.name] = (Path(entry.path), (stat.st_size, stat.st_mtime_ns))
        return found

    def _read(self, path: Path, signature: Signature) -> SourceItem:
        self._counter += 1
        frame_id = f"{safe_id_part(path.stem)}-{self._counter:06d}"
        decoded = read_image_file(path)
        if isinstance(decoded, str):
            return FrameError(self.name, str(path), decoded, path)
        captured_at = datetime.fromtimestamp(signature[1] / 1e9, tz=timezone.utc)
        return self.to_frame(decoded, frame_id, str(path), captured_at, path)

    def _items(self) -> Iterator[SourceItem]:
        found = self._scan()
        if isinstance(found, str):
            yield FrameError(self.name, str(self.directory), found, self.directory)
            if not self.config.watch:
                return
            found = {}
        if not self.config.watch:
            for name in sorted(found):
                yield self._read(*found[name])
            return
        yield from self._watch()

    def _watch(self) -> Iterator[SourceItem]:
        done: dict[str, Signature] = {}  # name -> signature already read
        pending: dict[str, tuple[Signature, float]] = {}  # name -> (signature, first seen unchanged)
        listing_failed = False
        while not self.stopped:
            found = self._scan()
            if isinstance(found, str):
                if not listing_failed:  # report an unreadable folder once per outage, not every poll
                    yield FrameError(self.name, str(self.directory), found, self.directory)
                listing_failed = True
                found = {}
            else:
                listing_failed = False
            now = time.monotonic()
            ready: list[tuple[int, str]] = []
            for name, (_path, signature) in found.items():
                if done.get(name) == signature:
                    continue
                seen = pending.get(name)
                if seen is None or seen[0] != signature:
                    pending[name] = (signature, now)
                    seen = pending[name]
                if now - seen[1] >= self.config.settle_s:
                    ready.append((signature[1], name))
            for gone in [name for name in done if name not in found]:
                del done[gone]
            for gone in [name for name in pending if name not in found]:
                del pending[gone]
            for _mtime, name in sorted(ready):
                path, signature = found[name]
                del pending[name]
                done[name] = signature
                yield self._read(path, signature)
                if self.stopped:
                    return
            if not self.sleep(self.config.poll_s):
                return
