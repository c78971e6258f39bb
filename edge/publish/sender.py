"""The outbox sender: outbox rows -> broker in id order, at most ``max_inflight`` unacknowledged.

Runs on its own thread. Each acknowledged row is deleted; a row the broker refuses (e.g. not
authorised by its ACL) moves to the outbox's dead letters and is counted, since retrying it in
place would block every later result; ``on_outcome`` tells the publisher either way (it raises
events and the ``degraded`` status). When the link changes (see :class:`BrokerLink`), everything
still in the outbox is sent again from the oldest row, so order holds across outages; a message
acknowledged just before the loss but not yet seen here may go out twice (consumers dedupe by
``result_id``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from edge.publish.config import MqttConfig
from edge.publish.connection import publish_properties
from edge.publish.link import BrokerLink
from edge.publish.outbox import Outbox, OutboxRow

log = logging.getLogger("edge.publish.client")
_IDLE_WAKE_S = 0.5
_REQUEUE_CHECK_S = 2.0

Outcome = Callable[[str, bool, str], None]
"""``(topic, refused, reason)`` for every acknowledged outbox message."""


class SenderCounters:
    """Totals since start, read by the publisher's stats and tests."""

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.rejected = 0


class OutboxSender:
    """Moves outbox rows onto the link as acknowledgements make room."""

    def __init__(
        self,
        outbox: Outbox,
        link: BrokerLink,
        config: MqttConfig,
        name: str = "mqtt-outbox",
        *,
        on_outcome: Outcome | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """``on_outcome`` hears every ack; ``on_tick`` runs on this thread at least every 0.5 s (heartbeats)."""
        self.outbox = outbox
        self.link = link
        self.config = config
        self.counters = SenderCounters()
        self._on_outcome = on_outcome
        self._on_tick = on_tick
        self._next_requeue_check = 0.0
        self._acks: queue.SimpleQueue[tuple[int, bool, str, int]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def wake(self) -> None:
        """Something changed (new rows, link up/down): look again now."""
        self._wake.set()

    def on_ack(self, mid: int, failed: bool, reason: str) -> None:
        """paho acknowledged ``mid`` (called on its thread, holding its lock: queue it, nothing more)."""
        self._acks.put((mid, failed, reason, self.link.generation))
        self._wake.set()

    def _run(self) -> None:
        inflight: dict[int, tuple[int, str]] = {}  # paho mid -> (outbox row id, topic)
        cursor, generation = 0, -1
        while not self._stop.is_set():
            self._wake.wait(_IDLE_WAKE_S)
            self._wake.clear()
            try:
                self._take_acks(inflight, generation)
                connected, current = self.link.snapshot()
                if current != generation:  # acks of the old link first, then start over from the oldest row
                    self._take_acks(inflight, generation)
                    inflight.clear()
                    cursor, generation = 0, current
                if connected:
                    cursor = self._fill(inflight, cursor, generation)
                self._housekeeping()
            except Exception:  # pragma: no cover - keep delivering, whatever went wrong once
                log.exception("mqtt: outbox sender error")
                time.sleep(_IDLE_WAKE_S)

    def _housekeeping(self) -> None:
        if self._on_tick is not None:
            self._on_tick()
        now = time.monotonic()
        if now >= self._next_requeue_check:  # `pump-edge outbox --requeue` while the station runs
            self._next_requeue_check = now + _REQUEUE_CHECK_S
            if self.outbox.requeue_requested():
                moved = self.outbox.requeue()
                log.warning("mqtt: %d dead letter(s) requeued on request; they go out after the backlog", moved)

    def _take_acks(self, inflight: dict[int, tuple[int, str]], generation: int) -> None:
        while True:
            try:
                mid, failed, reason, ack_generation = self._acks.get_nowait()
            except queue.Empty:
                return
            entry = inflight.pop(mid, None) if ack_generation == generation else None
            if entry is None:
                continue  # a status or stats message, or a connection that is gone
            row_id, topic = entry
            if failed:
                if self.outbox.refuse(row_id, reason):
                    self.counters.rejected += 1
                    log.debug("mqtt: broker refused outbox message %d to %s: %s (dead letter)", row_id, topic, reason)
            else:
                self.outbox.delete(row_id)
                self.counters.acked += 1
            if self._on_outcome is not None:
                self._on_outcome(topic, failed, reason)

    def _fill(self, inflight: dict[int, tuple[int, str]], cursor: int, generation: int) -> int:
        while len(inflight) < self.config.max_inflight:
            rows = self.outbox.pending(cursor, self.config.max_inflight - len(inflight))
            if not rows:
                break
            for row in rows:
                expiry_s = self._remaining_expiry(row)
                if expiry_s is not None and expiry_s <= 0:
                    self.outbox.expire(row.id)
                    cursor = row.id
                    continue
                message = row.message
                properties = publish_properties(self.config, message.content_type, message.user_properties, expiry_s)
                info = self.link.publish(
                    message.topic, message.payload, message.qos, message.retain, properties, generation
                )
                if info is None:
                    return cursor  # the link changed under us; the next round starts over
                inflight[info.mid] = (row.id, message.topic)
                cursor = row.id
                self.counters.sent += 1
        return cursor

    def _remaining_expiry(self, row: OutboxRow) -> int | None:
        if self.config.message_expiry_s is None:
            return None
        return int(self.config.message_expiry_s - (time.time() - row.created_at))
