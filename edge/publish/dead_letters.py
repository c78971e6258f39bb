"""``pump-edge outbox``: what waits in a station's outbox, what the broker refused, and replaying it.

Works on the outbox file while the station runs: reading is safe (SQLite WAL), and a requeue
is *asked of* the running station (it owns the file and moves the dead letters itself within a
couple of seconds), so its counts stay right. With the station stopped, the requeue happens
here and the messages go out at its next start. Purging needs the station stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from edge.publish.outbox import COUNTERS, DeadLetter, Outbox, OutboxBusy

REQUEUE_WAIT_S = 10.0


@dataclass(frozen=True)
class OutboxReport:
    """Depths and persistent counters of one outbox file."""

    path: Path
    station_running: bool
    depth: int
    dead_letters: int
    counters: dict[str, int]


def open_existing(path: Path, *, lock: bool = False) -> Outbox:
    """The outbox at ``path``; FileNotFoundError (never an empty new file) when there is none.

    ``lock``: own it (raises :class:`OutboxBusy` while a station runs on it).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no outbox at {path}: has a station run with this data_dir / mqtt.outbox_path?")
    return Outbox(path, lock=lock)


def report(path: Path) -> OutboxReport:
    with open_existing(path) as outbox:
        return OutboxReport(
            path=Path(path),
            station_running=outbox.locked_elsewhere(),
            depth=outbox.depth,
            dead_letters=outbox.dead_letter_depth,
            counters={name: outbox.counter(name) for name in COUNTERS if name != "requeue_requested"},
        )


def list_dead_letters(path: Path, limit: int) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters."""
    with open_existing(path) as outbox:
        return outbox.dead_letters(limit=limit)


def requeue(path: Path, wait_s: float = REQUEUE_WAIT_S) -> tuple[int | None, str]:
    """Move every dead letter back to the outbox: (how many, or None if not confirmed; what happened)."""
    try:
        with open_existing(path, lock=True) as outbox:
            moved = outbox.requeue()
        return moved, f"{moved} dead letter(s) back in the outbox; they go out at the station's next start"
    except OutboxBusy:
        pass
    with open_existing(path) as outbox:
        count = outbox.dead_letter_depth
        outbox.request_requeue()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not outbox.requeue_requested():
                return count, f"the running station requeued {count} dead letter(s); they go out after its backlog"
            time.sleep(0.2)
    return None, (
        f"asked the running station to requeue; it has not done so within {wait_s:g} s "
        "(it will once its publisher runs; check with pump-edge outbox)"
    )


def purge(path: Path) -> int:
    """Delete every dead letter; raises :class:`OutboxBusy` while a station holds the file."""
    with open_existing(path, lock=True) as outbox:
        return outbox.purge_dead_letters()


def _time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="seconds")


def as_json(info: OutboxReport, listed: list[DeadLetter] | None) -> dict[str, object]:
    """The report (and the dead letters listed, payloads as UTF-8 text where they are) for ``--json``."""
    document: dict[str, object] = {
        "path": str(info.path),
        "station_running": info.station_running,
        "depth": info.depth,
        "dead_letters": info.dead_letters,
        "counters": info.counters,
    }
    if listed is not None:
        document["dead_letter_list"] = [
            {
                "id": letter.id,
                "refused_at": _time(letter.refused_at),
                "created_at": _time(letter.created_at),
                "reason": letter.reason,
                "topic": letter.message.topic,
                "kind": letter.message.kind,
                "seq": letter.message.seq,
                "payload": letter.message.payload.decode("utf-8", errors="replace")
                if letter.message.content_type == "application/json"
                else f"<{len(letter.message.payload)} bytes>",
            }
            for letter in listed
        ]
    return document


def report_table(info: OutboxReport) -> Table:
    table = Table(title=f"outbox {info.path}", caption="station running" if info.station_running else "station stopped")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("waiting for the broker", str(info.depth))
    table.add_row("dead letters (refused by the broker)", str(info.dead_letters))
    for name, value in info.counters.items():
        table.add_row(f"counter {name}", str(value))
    return table


def dead_letter_table(letters: list[DeadLetter], total: int) -> Table:
    shown = f"{len(letters)} of {total}" if len(letters) < total else str(total)
    table = Table(title=f"dead letters ({shown})", caption="replay with: pump-edge outbox --requeue")
    for column in ("id", "refused at", "topic", "kind", "seq", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        seq = "" if letter.message.seq is None else str(letter.message.seq)
        table.add_row(
            str(letter.id),
            _time(letter.refused_at),
            escape(letter.message.topic),
            letter.message.kind,
            seq,
            escape(letter.reason),
        )
    return table
