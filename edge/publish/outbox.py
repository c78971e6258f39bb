"""Durable outbox: every result is on disk before it is published, and leaves only when acknowledged.

paho keeps unacknowledged messages in RAM only, so a broker outage plus a process restart
would lose them. Here each message is a row in SQLite (WAL, ``synchronous=NORMAL``: survives a
killed process; a power cut may lose the last commit), written before publishing, deleted on
the broker's acknowledgement and replayed in id order after a reconnect or a restart. The same
file keeps the station's counters: ``seq`` (per-station result number) and ``session``
(process starts), so both keep rising across restarts.

Full policy: the outbox holds at most ``max_rows`` messages. When full, the oldest messages
are dropped to make room and counted (``dropped``): inspection never blocks on the broker, and
the MES sees the loss as a ``seq`` gap. Only this process writes the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
COUNTERS = ("seq", "session", "dropped", "expired")


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


class Outbox:
    """SQLite outbox plus persistent counters; thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path, max_rows: int = 100_000) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.executemany("INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", [(n,) for n in COUNTERS])
        self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One atomic write (the connection is in autocommit mode otherwise)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            raise
        self._db.execute("COMMIT")

    # --- counters ---------------------------------------------------------------------

    def _bump(self, name: str, by: int = 1) -> int:
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (by, name))
        return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def counter(self, name: str) -> int:
        """Current value of ``seq``, ``session``, ``dropped`` or ``expired``."""
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
        """Store messages in one transaction (all or none); drops the oldest rows if full."""
        if not messages:
            return []
        if len(messages) > self.max_rows:
            raise ValueError(f"{len(messages)} messages exceed the outbox size {self.max_rows}")
        now = time.time()
        with self._lock, self._transaction():
            overflow = self._depth + len(messages) - self.max_rows
            if overflow > 0:
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (overflow,)
                )
                self._bump("dropped", overflow)
                self._depth -= overflow
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
                "SELECT id, created_at, kind, seq, topic, payload, qos, retain, content_type, user_properties"
                " FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [
            OutboxRow(
                id=row[0],
                created_at=row[1],
                message=OutboxMessage(
                    kind=row[2],
                    seq=row[3],
                    topic=row[4],
                    payload=bytes(row[5]),
                    qos=row[6],
                    retain=bool(row[7]),
                    content_type=row[8],
                    user_properties=tuple((str(k), str(v)) for k, v in json.loads(row[9])),
                ),
            )
            for row in rows
        ]

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

    @property
    def depth(self) -> int:
        """Messages waiting for an acknowledgement."""
        return self._depth

    def close(self) -> None:
        """Close the database (a later use raises)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
