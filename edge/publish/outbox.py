"""Durable outbox: every result is on disk before it is published, and leaves only when acknowledged.

paho keeps unacknowledged messages in RAM only, so a broker outage plus a process restart
would lose them. Here each message is a row in SQLite (WAL, ``synchronous=NORMAL``: survives a
killed process; a power cut may lose the last commit), written before publishing, deleted on
the broker's acknowledgement and replayed in id order after a reconnect or a restart. The same
file keeps the station's counters: ``seq`` (per-station result number) and ``session``
(process starts), so both keep rising across restarts.

Full policy: the outbox holds at most ``max_rows`` messages. When full, the oldest messages
are dropped to make room and counted (``dropped``): inspection never blocks on the broker, and
the MES sees the loss as a ``seq`` gap.

Dead letters: a message the broker *refuses* (MQTT 5 PUBACK with a failure reason such as "Not
authorized") moves to the ``dead_letters`` table of the same file with the reason and time, and
is counted (``refused``); retrying it in place would block every later result. Dead letters count
toward ``max_rows`` and keep at most ``dead_letter_max_rows`` of it (default a tenth): past that
the oldest dead letters are deleted and counted (``dead_evicted``). :meth:`Outbox.requeue` moves
them back to the end of the outbox (``pump-edge outbox --requeue``, once the broker's ACL is fixed).

One process owns the file: the station opens it with ``lock=True`` (an exclusive ``flock`` on
``<file>.lock``). Another process may read it, and asks the owner to requeue through
:meth:`Outbox.request_requeue` rather than writing rows itself.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no inter-process lock
    fcntl = None  # type: ignore[assignment]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the id is the delivery order
    created_at REAL NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    content_type TEXT,
    user_properties TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- refusal order
    outbox_id INTEGER NOT NULL,            -- the id it had in the outbox
    created_at REAL NOT NULL,
    refused_at REAL NOT NULL,
    reason TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    content_type TEXT,
    user_properties TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
COUNTERS = ("seq", "session", "dropped", "expired", "refused", "dead_evicted", "requeue_requested")
_MESSAGE_COLUMNS = "kind, seq, topic, payload, qos, retain, content_type, user_properties"


@dataclass(frozen=True)
class OutboxMessage:
    """One MQTT message as it will be published."""

    topic: str
    payload: bytes
    qos: int
    kind: str
    retain: bool = False
    seq: int | None = None
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class OutboxRow:
    """A stored message with its delivery-order id and creation time (epoch seconds)."""

    id: int
    created_at: float
    message: OutboxMessage


@dataclass(frozen=True)
class DeadLetter:
    """A message the broker refused: when (epoch seconds), why, and the message as it was."""

    id: int
    outbox_id: int
    created_at: float
    refused_at: float
    reason: str
    message: OutboxMessage


class OutboxBusy(RuntimeError):
    """Another process (a running station) holds the outbox."""


def _message(row: Sequence[object]) -> OutboxMessage:
    """An :class:`OutboxMessage` from the ``_MESSAGE_COLUMNS`` of a row, in that order."""
    kind, seq, topic, payload, qos, retain, content_type, user_properties = row
    return OutboxMessage(
        kind=str(kind),
        seq=seq,  # type: ignore[arg-type]
        topic=str(topic),
        payload=bytes(payload),  # type: ignore[arg-type]
        qos=int(qos),  # type: ignore[arg-type]
        retain=bool(retain),
        content_type=content_type,  # type: ignore[arg-type]
        user_properties=tuple((str(k), str(v)) for k, v in json.loads(str(user_properties))),
    )


class Outbox:
    """SQLite outbox plus persistent counters; thread-safe (one connection behind a lock)."""

    def __init__(
        self, path: Path, max_rows: int = 100_000, dead_letter_max_rows: int | None = None, *, lock: bool = False
    ) -> None:
        """Open (or create) the file. ``lock``: hold ``<file>.lock`` exclusively (the station does; raises
        :class:`OutboxBusy` when another process holds it). ``dead_letter_max_rows`` defaults to a tenth of
        ``max_rows``.
        """
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        dead_max = max(1, max_rows // 10) if dead_letter_max_rows is None else dead_letter_max_rows
        if not 1 <= dead_max <= max_rows:
            raise ValueError(f"dead_letter_max_rows must be 1..{max_rows}, got {dead_max}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.dead_letter_max_rows = dead_max
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_file_lock() if lock else None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.executemany("INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", [(n,) for n in COUNTERS])
        self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._dead = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]

    def _take_file_lock(self) -> int | None:
        if fcntl is None:  # pragma: no cover
            return None
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutboxBusy(f"{self.path} is in use by another process (a running station?)") from None
        return fd

    def locked_elsewhere(self) -> bool:
        """True when another process holds the file (a running station); always False for the holder."""
        if fcntl is None or self._lock_fd is not None:
            return False
        try:
            fd = self._take_file_lock()
        except OutboxBusy:
            return True
        if fd is not None:
            os.close(fd)
        return False

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One atomic write (the connection is in autocommit mode otherwise)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            self._dead = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
            raise
        self._db.execute("COMMIT")

    # --- counters ---------------------------------------------------------------------

    def _bump(self, name: str, by: int = 1) -> int:
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (by, name))
        return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def counter(self, name: str) -> int:
        """Current value of one of :data:`COUNTERS` (``seq``, ``session``, ``dropped``, ``refused``, ...)."""
        with self._lock:
            return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def start_session(self) -> int:
        """Count a process start; returns the new session number (1, 2, ...)."""
        with self._lock, self._transaction():
            return self._bump("session")

    def next_seq(self) -> int:
        """Reserve the next result number; committed at once, so it never repeats after a crash."""
        with self._lock, self._transaction():
            return self._bump("seq")

    # --- messages ---------------------------------------------------------------------

    def append(self, messages: Sequence[OutboxMessage]) -> list[int]:
        """Store messages in one transaction (all or none); drops the oldest rows if full.

        Full means outbox + dead letters at ``max_rows``: the oldest outbox rows go first (``dropped``),
        then, if that is not room enough, the oldest dead letters (``dead_evicted``).
        """
        if not messages:
            return []
        if len(messages) > self.max_rows:
            raise ValueError(f"{len(messages)} messages exceed the outbox size {self.max_rows}")
        now = time.time()
        with self._lock, self._transaction():
            overflow = self._depth + self._dead + len(messages) - self.max_rows
            dropped = min(max(overflow, 0), self._depth)
            if dropped > 0:
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (dropped,)
                )
                self._bump("dropped", dropped)
                self._depth -= dropped
            self._evict_dead_letters(overflow - dropped)
            ids = []
            for message in messages:
                cursor = self._db.execute(
                    "INSERT INTO outbox(created_at, kind, seq, topic, payload, qos, retain, content_type,"
                    " user_properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        now,
                        message.kind,
                        message.seq,
                        message.topic,
                        message.payload,
                        message.qos,
                        int(message.retain),
                        message.content_type,
                        json.dumps([list(pair) for pair in message.user_properties]),
                    ),
                )
                ids.append(int(cursor.lastrowid))
            self._depth += len(messages)
        return ids

    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Stored messages with id > ``after_id`` in delivery order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, created_at, {_MESSAGE_COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxRow(id=row[0], created_at=row[1], message=_message(row[2:])) for row in rows]

    def delete(self, row_id: int) -> bool:
        """Forget an acknowledged message; False if it was already gone (dropped or acked twice)."""
        with self._lock, self._transaction():
            return self._delete(row_id)

    def expire(self, row_id: int) -> bool:
        """Drop a message that outlived its expiry, counting it."""
        with self._lock, self._transaction():
            gone = self._delete(row_id)
            if gone:
                self._bump("expired")
            return gone

    def _delete(self, row_id: int) -> bool:
        deleted = self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount > 0
        self._depth -= int(deleted)
        return deleted

    # --- dead letters -----------------------------------------------------------------

    def refuse(self, row_id: int, reason: str) -> bool:
        """Move a message the broker refused to the dead letters (counted); False if it was already gone."""
        with self._lock, self._transaction():
            moved = self._db.execute(
                f"INSERT INTO dead_letters(outbox_id, created_at, refused_at, reason, {_MESSAGE_COLUMNS})"
                f" SELECT id, created_at, ?, ?, {_MESSAGE_COLUMNS} FROM outbox WHERE id = ?",
                (time.time(), reason, row_id),
            ).rowcount
            if not moved:
                return False
            self._delete(row_id)
            self._dead += 1
            self._bump("refused")
            self._evict_dead_letters(self._dead - self.dead_letter_max_rows)
        return True

    def _evict_dead_letters(self, count: int) -> None:
        if count <= 0:
            return
        self._db.execute(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT ?)", (count,)
        )
        self._bump("dead_evicted", count)
        self._dead -= count

    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Dead letters with id > ``after_id``, oldest refusal first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, outbox_id, created_at, refused_at, reason, {_MESSAGE_COLUMNS} FROM dead_letters"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [DeadLetter(*row[:5], message=_message(row[5:])) for row in rows]

    def requeue(self) -> int:
        """Move every dead letter back to the end of the outbox (oldest first, creation time kept); returns how many.

        Call it in the process that owns the file (others: :meth:`request_requeue`). The messages go out
        after the current backlog: an MES sees their ``seq`` late, closing the gaps they left.
        """
        with self._lock, self._transaction():
            moved = self._db.execute(
                f"INSERT INTO outbox(created_at, {_MESSAGE_COLUMNS})"
                f" SELECT created_at, {_MESSAGE_COLUMNS} FROM dead_letters ORDER BY id"
            ).rowcount
            self._db.execute("DELETE FROM dead_letters")
            self._db.execute("UPDATE counters SET value = 0 WHERE name = 'requeue_requested'")
            self._depth += moved
            self._dead = 0
        return moved

    def purge_dead_letters(self) -> int:
        """Delete every dead letter (an operator's decision, not counted); returns how many."""
        with self._lock, self._transaction():
            gone = self._db.execute("DELETE FROM dead_letters").rowcount
            self._dead = 0
        return gone

    def request_requeue(self) -> None:
        """Ask the process owning the file to :meth:`requeue` (it checks :meth:`requeue_requested` as it runs)."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE counters SET value = 1 WHERE name = 'requeue_requested'")

    def requeue_requested(self) -> bool:
        """Whether another process asked for a requeue that has not happened yet."""
        return bool(self.counter("requeue_requested"))

    @property
    def depth(self) -> int:
        """Messages waiting for an acknowledgement."""
        return self._depth

    @property
    def dead_letter_depth(self) -> int:
        """Refused messages kept in the dead-letter table."""
        return self._dead

    def close(self) -> None:
        """Close the database and release the file lock (a later use raises)."""
        with self._lock:
            self._db.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
