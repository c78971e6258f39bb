"""Which files of a folder were inspected: a small SQLite table in the station's data dir.

A folder source records a file (name, size, mtime in ns) only after the runtime has put
its result in the durable outbox (:meth:`FrameSource.mark_done`), so a crash between
reading and publishing re-inspects the file instead of losing it. A crash in the short
window after the outbox write and before the ledger write inspects it twice (a second
result with a new ``result_id``): at-least-once, never lost. WAL with ``synchronous =
NORMAL`` survives a killed process; a power cut may forget the last few records (again:
re-inspected, not lost).

The file is ``<data_dir>/sources/<source name>.sqlite3``; rows are keyed by the folder's
absolute path and the file name, so two folders may share a source name. Rows for files no
longer in the folder are forgotten (at start and while watching), which keeps the table
as small as the folder. Writes come from the inference thread and open their own short
connection, so they work after the source has stopped iterating (the queue still drains).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

Signature = tuple[int, int]  # (size in bytes, mtime in ns)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inspected (
    folder TEXT NOT NULL,
    name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inspected_at TEXT NOT NULL,
    PRIMARY KEY (folder, name)
)
"""


def ledger_path(data_dir: Path, source_name: str) -> Path:
    """Where the ledger of source ``source_name`` lives under the station's data dir."""
    return Path(data_dir) / "sources" / f"{source_name}.sqlite3"


class InspectedLedger:
    """Inspected files of one folder; an in-memory copy answers lookups, SQLite makes it durable."""

    def __init__(self, path: Path, folder: Path) -> None:
        self.path = Path(path)
        self.folder = str(Path(folder).resolve())
        self._done: dict[str, Signature] = {}
        self._lock = threading.Lock()
        self._write_failed = False

    def open(self) -> None:
        """Create the table if needed and load this folder's rows; raises ``sqlite3.Error``/``OSError``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode = WAL")
            with db:
                db.execute(_SCHEMA)
            rows = db.execute(
                "SELECT name, size_bytes, mtime_ns FROM inspected WHERE folder = ?", (self.folder,)
            ).fetchall()
        with self._lock:
            self._done = {name: (size, mtime) for name, size, mtime in rows}

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10.0)
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def __len__(self) -> int:
        with self._lock:
            return len(self._done)

    def is_done(self, name: str, signature: Signature) -> bool:
        """True when ``name`` was inspected with exactly this size and mtime."""
        with self._lock:
            return self._done.get(name) == signature

    def record(self, name: str, signature: Signature) -> bool:
        """Remember ``name`` as inspected; False (logged once) when the database cannot be written."""
        with self._lock:
            self._done[name] = signature
        try:
            with closing(self._connect()) as db, db:
                db.execute(
                    "INSERT OR REPLACE INTO inspected (folder, name, size_bytes, mtime_ns, inspected_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (self.folder, name, signature[0], signature[1], datetime.now(timezone.utc).isoformat()),
                )
        except (sqlite3.Error, OSError) as error:
            if not self._write_failed:
                log.warning("inspected-files ledger %s cannot be written (%s): a restart re-inspects", self.path, error)
            self._write_failed = True
            return False
        self._write_failed = False
        return True

    def forget_except(self, present: Iterable[str]) -> int:
        """Drop rows of files not in ``present`` (the folder's current listing); the number dropped."""
        keep = set(present)
        with self._lock:
            gone = [name for name in self._done if name not in keep]
            for name in gone:
                del self._done[name]
        if not gone:
            return 0
        try:
            with closing(self._connect()) as db, db:
                db.executemany(
                    "DELETE FROM inspected WHERE folder = ? AND name = ?", [(self.folder, name) for name in gone]
                )
        except (sqlite3.Error, OSError) as error:
            log.warning(
                "inspected-files ledger %s: cannot forget %d vanished file(s) (%s)", self.path, len(gone), error
            )
        return len(gone)
