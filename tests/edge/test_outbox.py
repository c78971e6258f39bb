"""Durable outbox: order, acknowledgement, persistence across reopen, bound and counters."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.publish.outbox import Outbox, OutboxMessage

REPO = Path(__file__).resolve().parents[2]


def message(index: int, kind: str = "result") -> OutboxMessage:
    return OutboxMessage(
        topic=f"p/l/s/{kind}",
        payload=f"payload-{index}".encode(),
        qos=1,
        kind=kind,
        seq=index,
        content_type="application/json",
        user_properties=(("frame_id", f"f{index}"), ("result_id", f"r{index}")),
    )


def test_messages_come_back_in_the_order_they_were_stored_with_all_their_fields(tmp_path):
    with Outbox(tmp_path / "o.db") as outbox:
        ids = outbox.append([message(1), message(1, "alert")]) + outbox.append([message(2)])
        assert ids == sorted(ids) and len(set(ids)) == 3
        rows = outbox.pending()
        assert [row.id for row in rows] == ids
        assert [row.message for row in rows] == [message(1), message(1, "alert"), message(2)]
        assert [row.id for row in outbox.pending(after_id=ids[0], limit=1)] == [ids[1]]
        assert rows[0].created_at == pytest.approx(time.time(), abs=5)


def test_an_acknowledged_message_is_deleted_once_and_ids_are_never_reused(tmp_path):
    with Outbox(tmp_path / "o.db") as outbox:
        first, second = outbox.append([message(1), message(2)])
        assert outbox.delete(second) and not outbox.delete(second)
        assert outbox.depth == 1
        (third,) = outbox.append([message(3)])
        assert third > second  # a reused id would hide the message behind the sender's cursor
        assert [row.message.seq for row in outbox.pending()] == [1, 3]


def test_unacknowledged_messages_and_counters_survive_a_reopen(tmp_path):
    path = tmp_path / "state" / "o.db"
    with Outbox(path) as outbox:
        assert outbox.start_session() == 1
        assert [outbox.next_seq() for _ in range(3)] == [1, 2, 3]
        outbox.append([message(1), message(2)])
        outbox.delete(outbox.pending()[0].id)
    with Outbox(path) as reopened:
        assert reopened.start_session() == 2
        assert reopened.next_seq() == 4
        assert reopened.depth == 1 and [row.message.seq for row in reopened.pending()] == [2]


def test_a_killed_writer_loses_nothing_it_committed(tmp_path):
    path = tmp_path / "o.db"
    script = (
        "import os, signal\n"
        "from edge.publish.outbox import Outbox, OutboxMessage\n"
        f"box = Outbox({str(path)!r})\n"
        "box.next_seq()\n"
        "box.append([OutboxMessage('t', b'x', 1, 'result', seq=1)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr
    with Outbox(path) as outbox:
        assert outbox.depth == 1 and outbox.counter("seq") == 1


def test_a_full_outbox_drops_the_oldest_messages_and_counts_them(tmp_path):
    with Outbox(tmp_path / "o.db", max_rows=4) as outbox:
        for index in range(1, 7):
            outbox.append([message(index)])
        assert outbox.depth == 4
        assert [row.message.seq for row in outbox.pending()] == [3, 4, 5, 6]
        assert outbox.counter("dropped") == 2
        outbox.append([message(7), message(7, "alert")])
        assert [row.message.seq for row in outbox.pending()] == [5, 6, 7, 7]
        assert outbox.counter("dropped") == 4


def test_expired_messages_are_counted_apart_from_dropped_ones(tmp_path):
    with Outbox(tmp_path / "o.db") as outbox:
        (row_id,) = outbox.append([message(1)])
        assert outbox.expire(row_id) and not outbox.expire(row_id)
        assert outbox.counter("expired") == 1 and outbox.counter("dropped") == 0 and outbox.depth == 0


def test_the_database_runs_in_wal_mode(tmp_path):
    Outbox(tmp_path / "o.db").close()
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_append_stores_nothing(tmp_path):
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.append([message(1)])
        broken = OutboxMessage(topic="t", payload=object(), qos=1, kind="result")  # type: ignore[arg-type]
        with pytest.raises(sqlite3.Error):
            outbox.append([message(2), broken])
        assert outbox.depth == 1 and [row.message.seq for row in outbox.pending()] == [1]


def test_a_refused_message_moves_to_the_dead_letters_with_its_reason_and_is_counted(tmp_path):
    with Outbox(tmp_path / "o.db") as outbox:
        first, second = outbox.append([message(1), message(2)])
        assert outbox.refuse(first, "Not authorized") and not outbox.refuse(first, "again")
        assert (outbox.depth, outbox.dead_letter_depth, outbox.counter("refused")) == (1, 1, 1)
        assert [row.id for row in outbox.pending()] == [second]
        (letter,) = outbox.dead_letters()
        assert (letter.outbox_id, letter.reason, letter.message) == (first, "Not authorized", message(1))
        assert letter.refused_at >= letter.created_at
    with Outbox(tmp_path / "o.db") as reopened:  # kept on disk like the outbox itself
        assert reopened.dead_letter_depth == 1 and reopened.counter("refused") == 1


def test_dead_letters_keep_their_bounded_share_evicting_the_oldest_counted(tmp_path):
    with Outbox(tmp_path / "o.db", max_rows=10, dead_letter_max_rows=3) as outbox:
        ids = outbox.append([message(index) for index in range(1, 6)])
        for row_id in ids:
            outbox.refuse(row_id, "Not authorized")
        assert outbox.dead_letter_depth == 3 and outbox.counter("dead_evicted") == 2
        assert [letter.message.seq for letter in outbox.dead_letters()] == [3, 4, 5]
        assert outbox.counter("refused") == 5


def test_dead_letters_count_toward_the_outbox_bound_pending_messages_go_first(tmp_path):
    with Outbox(tmp_path / "o.db", max_rows=5, dead_letter_max_rows=2) as outbox:
        for row_id in outbox.append([message(1), message(2)]):
            outbox.refuse(row_id, "Not authorized")
        for index in range(3, 7):  # the 4th makes 2 dead + 4 pending > 5: the oldest pending goes
            outbox.append([message(index)])
        assert (outbox.depth, outbox.dead_letter_depth) == (3, 2)
        assert [row.message.seq for row in outbox.pending()] == [4, 5, 6]
        assert (outbox.counter("dropped"), outbox.counter("dead_evicted")) == (1, 0)
        outbox.append([message(index) for index in range(7, 12)])  # a full batch: dead letters make room too
        assert (outbox.depth, outbox.dead_letter_depth) == (5, 0)
        assert (outbox.counter("dropped"), outbox.counter("dead_evicted")) == (4, 2)


def test_requeued_dead_letters_go_to_the_end_of_the_outbox_keeping_their_age(tmp_path):
    with Outbox(tmp_path / "o.db") as outbox:
        first, _ = outbox.append([message(1), message(2)])
        created = outbox.pending()[0].created_at
        outbox.refuse(first, "Not authorized")
        outbox.append([message(3)])
        assert outbox.requeue() == 1 and outbox.dead_letter_depth == 0
        rows = outbox.pending()
        assert [row.message.seq for row in rows] == [2, 3, 1] and rows[-1].id > rows[-2].id
        assert rows[-1].created_at == created and rows[-1].message == message(1)
        assert outbox.requeue() == 0


def test_another_process_asks_the_owner_to_requeue_and_cannot_take_the_file(tmp_path):
    path = tmp_path / "o.db"
    with Outbox(path, lock=True) as owner:
        (row_id,) = owner.append([message(1)])
        owner.refuse(row_id, "Not authorized")
        script = (
            "import sys\n"
            "from edge.publish.outbox import Outbox, OutboxBusy\n"
            f"box = Outbox({str(path)!r})\n"
            "try:\n"
            f"    Outbox({str(path)!r}, lock=True)\n"
            "except OutboxBusy:\n"
            "    busy = True\n"
            "else:\n"
            "    busy = False\n"
            "box.request_requeue()\n"
            "print(busy, box.locked_elsewhere(), box.dead_letter_depth)\n"
        )
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.stdout.split() == ["True", "True", "1"], done.stderr
        assert not owner.locked_elsewhere()
        assert owner.requeue_requested()
        assert owner.requeue() == 1 and not owner.requeue_requested() and owner.depth == 1
    with Outbox(path, lock=True) as next_owner:  # closing released the lock
        assert next_owner.depth == 1
