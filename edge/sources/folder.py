"""``folder:DIR`` - image files in name order, once, or watched for new files.

Watching polls the directory (portable, no inotify): a file is read once its size and
mtime have not changed for ``settle_s``, so a camera or a copy still writing it is not
read half-way. Hidden and temporary names (``.x``, ``*.tmp``, ``*.part``, ``*~``) are never
read: writers that rename into place are picked up at the rename. A file replaced later
(new size or mtime) is read again as a new frame.

A folder is a queue of files, not a live camera: the runtime blocks rather than drops
when busy (:attr:`drops_when_busy` is False, watched or not). With a data dir and
``remember_inspected``, files whose result reached the outbox are recorded
(:mod:`edge.sources.ledger`), so a restart on the same folder does not inspect them again.

What cannot be read becomes a :class:`FrameError` naming the entry, once per name (and
again only if it changes): dangling symlinks and symlink loops, symlinks leaving the folder
(unless ``follow_external_symlinks``), directories with an image suffix, FIFOs/sockets/
devices, files that vanish between listing and reading, unreadable files, and every bad
image :mod:`edge.sources.decode` names. Plain subfolders are ignored.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.sources.base import Frame, FrameError, FrameSource, SourceItem, safe_id_part
from edge.sources.config import SourceConfig
from edge.sources.decode import IMAGE_SUFFIXES, read_image_file
from edge.sources.ledger import InspectedLedger, Signature, ledger_path
from shared.imagefiles import not_regular_reason

log = logging.getLogger(__name__)

TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")


def is_candidate(name: str) -> bool:
    """Names a watched folder may read; hidden and in-progress names are skipped silently."""
    lower = name.lower()
    return not (name.startswith(".") or lower.endswith(TEMPORARY_SUFFIXES) or name.endswith("~"))


@dataclass(frozen=True)
class FolderEntry:
    """A readable entry: its name in the folder, its (size, mtime), and what to open."""

    path: Path  # DIR/name: what frames and events name
    signature: Signature
    open_path: Path  # the entry, or a symlink's resolved target
    is_link: bool


Listing = tuple[dict[str, FolderEntry], dict[str, str]]  # readable entries, refused names -> reason


class FolderSource(FrameSource):
    """Frames from the image files of one directory (not recursive)."""

    kind = "folder"

    def __init__(self, target: str, config: SourceConfig, data_dir: Path | None = None) -> None:
        super().__init__(target, config, data_dir)
        self.directory = Path(target).expanduser()
        self._counter = 0
        self.ledger: InspectedLedger | None = None
        self.already_inspected = 0  # files skipped because the ledger had them (for logs and tests)

    @property
    def is_live(self) -> bool:
        return self.config.watch

    @property
    def drops_when_busy(self) -> bool:
        return False  # files wait on disk: blocking loses nothing, dropping would lose a part's inspection

    def mark_done(self, frame: Frame) -> None:
        if self.ledger is not None and frame.path is not None and frame.file_signature is not None:
            self.ledger.record(frame.path.name, frame.file_signature)

    # --- listing ----------------------------------------------------------------------------

    def _scan(self) -> Listing | str:
        try:
            entries = list(os.scandir(self.directory))
        except OSError as error:
            return f"cannot list the folder ({error.strerror or error})"
        root = os.path.realpath(self.directory)
        files: dict[str, FolderEntry] = {}
        refused: dict[str, str] = {}
        for entry in entries:
            if not is_candidate(entry.name):
                continue
            found = self._classify(entry, root)
            if isinstance(found, FolderEntry):
                files[entry.name] = found
            elif found is not None:
                refused[entry.name] = found
        return files, refused

    def _classify(self, entry: os.DirEntry, root: str) -> FolderEntry | str | None:
        """A readable entry, the reason it is refused, or None to pass over it silently."""
        path = Path(entry.path)
        real = path
        try:
            is_link = entry.is_symlink()
            if is_link:
                problem = self._link_problem(entry.path, root)
                if problem:
                    return problem
                info = os.stat(entry.path)
                real = Path(os.path.realpath(entry.path))
            else:
                info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None  # vanished between listing and stat: nothing left to inspect
        except OSError as error:
            return f"cannot be examined ({error.strerror or error})"
        if stat.S_ISDIR(info.st_mode):
            return "is a directory" if path.suffix.lower() in IMAGE_SUFFIXES else None
        if not stat.S_ISREG(info.st_mode):
            return not_regular_reason(info.st_mode)
        return FolderEntry(path, (info.st_size, info.st_mtime_ns), real, is_link)

    def _link_problem(self, link: str, root: str) -> str | None:
        target = os.readlink(link)
        try:
            os.stat(link)
        except OSError as error:
            if error.errno == errno.ENOENT:
                return f"dangling symlink (-> {target}, which does not exist)"
            if error.errno == errno.ELOOP:
                return f"symlink loop (-> {target})"
            return f"symlink cannot be followed (-> {target}: {error.strerror or error})"
        real = os.path.realpath(link)
        if not self.config.follow_external_symlinks and os.path.commonpath([real, root]) != root:
            return f"symlink leaves the folder (-> {real}); set source.follow_external_symlinks = true to read it"
        return None

    # --- reading ----------------------------------------------------------------------------

    def _read(self, entry: FolderEntry) -> SourceItem:
        """One file as a frame or an error; nothing a file does can end the folder pass."""
        self._counter += 1
        frame_id = f"{safe_id_part(entry.path.stem)}-{self._counter:06d}"
        ref = str(entry.path)
        try:
            decoded = read_image_file(
                entry.open_path,
                self.config.max_frame_pixels,
                follow_symlinks=entry.is_link,
                suffix=entry.path.suffix,
            )
            if isinstance(decoded, str):
                return FrameError(self.name, ref, decoded, entry.path)
            captured_at = datetime.fromtimestamp(entry.signature[1] / 1e9, tz=timezone.utc)
            return self.to_frame(
                decoded.image,
                frame_id,
                ref,
                captured_at,
                entry.path,
                significant_bits=decoded.header.significant_bits,
                file_signature=entry.signature,
            )
        except Exception as error:  # noqa: BLE001 - a frame can fail, the source cannot
            return FrameError(self.name, ref, f"unexpected error ({type(error).__name__}: {error})", entry.path)

    def _refusal(self, name: str, reason: str) -> FrameError:
        return FrameError(self.name, str(self.directory / name), reason, self.directory / name)

    def _open_ledger(self, present: list[str]) -> FrameError | None:
        if self.data_dir is None or not self.config.remember_inspected:
            return None
        path = ledger_path(self.data_dir, self.name)
        ledger = InspectedLedger(path, self.directory)
        try:
            ledger.open()
        except (sqlite3.Error, OSError) as error:
            return FrameError(
                self.name,
                str(path),
                f"cannot open the inspected-files ledger ({error}); files are inspected again after a restart",
                path,
            )
        if present:  # an empty listing may be an unmounted share: keep the records
            ledger.forget_except(present)
        self.ledger = ledger
        return None

    def _already_done(self, name: str, signature: Signature) -> bool:
        if self.ledger is not None and self.ledger.is_done(name, signature):
            self.already_inspected += 1
            return True
        return False

    def _items(self) -> Iterator[SourceItem]:
        found = self._scan()
        if isinstance(found, str):
            yield FrameError(self.name, str(self.directory), found, self.directory)
            if not self.config.watch:
                return
            found = ({}, {})
        files, refused = found
        ledger_error = self._open_ledger([*files, *refused])
        if ledger_error is not None:
            yield ledger_error
        if not self.config.watch:
            for name in sorted({*files, *refused}):
                if name in refused:
                    yield self._refusal(name, refused[name])
                elif not self._already_done(name, files[name].signature):
                    yield self._read(files[name])
            if self.already_inspected:
                log.info("%s: %d file(s) already inspected (ledger), skipped", self.directory, self.already_inspected)
            return
        yield from self._watch()

    def _watch(self) -> Iterator[SourceItem]:
        done: dict[str, Signature] = {}  # name -> signature already read
        pending: dict[str, tuple[Signature, float]] = {}  # name -> (signature, first seen unchanged)
        reported: dict[str, str] = {}  # refused name -> reason already reported
        listing_failed = False
        while not self.stopped:
            found = self._scan()
            if isinstance(found, str):
                if not listing_failed:  # report an unreadable folder once per outage, not every poll
                    yield FrameError(self.name, str(self.directory), found, self.directory)
                listing_failed = True
                found = ({}, {})
            else:
                listing_failed = False
            files, refused = found
            for name in sorted(refused):
                if reported.get(name) != refused[name]:
                    reported[name] = refused[name]
                    yield self._refusal(name, refused[name])
            for gone in [name for name in reported if name not in refused]:
                del reported[gone]
            now = time.monotonic()
            ready: list[tuple[int, str]] = []
            for name, entry in files.items():
                if done.get(name) == entry.signature:
                    continue
                if self._already_done(name, entry.signature):
                    done[name] = entry.signature
                    continue
                seen = pending.get(name)
                if seen is None or seen[0] != entry.signature:
                    pending[name] = (entry.signature, now)
                    seen = pending[name]
                if now - seen[1] >= self.config.settle_s:
                    ready.append((entry.signature[1], name))
            gone_files = [name for name in done if name not in files]
            for gone in gone_files:
                del done[gone]
            for gone in [name for name in pending if name not in files]:
                del pending[gone]
            if gone_files and self.ledger is not None and (files or refused):
                self.ledger.forget_except([*files, *refused])
            for _mtime, name in sorted(ready):
                entry = files[name]
                del pending[name]
                done[name] = entry.signature
                yield self._read(entry)
                if self.stopped:
                    return
            if not self.sleep(self.config.poll_s):
                return
