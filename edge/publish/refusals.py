"""Refusal bursts: what the station says when the broker refuses its messages, without flooding.

A broker that refuses one result (MQTT 5 PUBACK "Not authorized", say) usually refuses all of
them, several per second. :class:`RefusalTracker` turns that stream into a few notices per topic:
``refused`` for the first refusal of a burst (or when the reason changes), ``summary`` at most once
per ``summary_interval_s`` while more keep coming, and ``accepted`` when the broker takes a message
on that topic again, which ends the burst. While a burst is open its topic is a *problem*: the
station's status says ``degraded``. Thread-safe; the clock is injectable for tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from shared.messages import EventKind


@dataclass(frozen=True)
class RefusalNotice:
    """Something to tell the MES (an event) and the log.

    ``count`` is the refusals this notice covers (1 for ``refused``, the new ones for ``summary``,
    the whole burst for ``accepted``); ``total`` the burst so far; ``since`` its start (epoch s).
    """

    kind: Literal["refused", "summary", "accepted"]
    topic: str
    reason: str
    count: int
    total: int
    since: float


@dataclass
class _Burst:
    reason: str
    since: float
    total: int = 1
    unreported: int = 0
    reported_at: float = 0.0


class RefusalTracker:
    """Open refusal bursts per topic."""

    def __init__(self, summary_interval_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.summary_interval_s = summary_interval_s
        self._clock = clock
        self._bursts: dict[str, _Burst] = {}
        self._lock = threading.Lock()

    def refused(self, topic: str, reason: str) -> RefusalNotice | None:
        """Count a refusal; a notice when it opens a burst (first refusal, or a new reason)."""
        now = self._clock()
        with self._lock:
            burst = self._bursts.get(topic)
            if burst is not None and burst.reason == reason:
                burst.total += 1
                burst.unreported += 1
                return None
            self._bursts[topic] = _Burst(reason=reason, since=now, reported_at=now)
        return RefusalNotice("refused", topic, reason, 1, 1, now)

    def accepted(self, topic: str) -> RefusalNotice | None:
        """The broker took a message on ``topic``: a notice when that ends a burst."""
        with self._lock:
            burst = self._bursts.pop(topic, None)
        if burst is None:
            return None
        return RefusalNotice("accepted", topic, burst.reason, burst.total, burst.total, burst.since)

    def due(self) -> list[RefusalNotice]:
        """Summaries of bursts with unreported refusals whose last notice is ``summary_interval_s`` old."""
        now, notices = self._clock(), []
        with self._lock:
            for topic, burst in self._bursts.items():
                if burst.unreported and now - burst.reported_at >= self.summary_interval_s:
                    notice = RefusalNotice("summary", topic, burst.reason, burst.unreported, burst.total, burst.since)
                    notices.append(notice)
                    burst.unreported, burst.reported_at = 0, now
        return notices

    def problems(self) -> list[str]:
        """One line per open burst, for the status's ``problems``."""
        with self._lock:
            return [
                f"the broker refuses messages to {topic} ({burst.reason}); they are kept as dead letters"
                for topic, burst in sorted(self._bursts.items())
            ]

    def since(self) -> float | None:
        """Start of the oldest open burst (epoch s); None when the broker accepts everything."""
        with self._lock:
            return min((burst.since for burst in self._bursts.values()), default=None)


def describe(notice: RefusalNotice) -> tuple[EventKind, int, str]:
    """(event kind, log level, text for the event's ``reason`` and the log) of a notice."""
    since = datetime.fromtimestamp(notice.since, timezone.utc).isoformat(timespec="seconds")
    if notice.kind == "refused":
        text = (
            f"the broker refused a message to {notice.topic}: {notice.reason}; it is kept as a dead letter "
            "(pump-edge outbox --dead-letters), and so is every further one until it accepts them again"
        )
        return EventKind.PUBLISH_REFUSED, logging.ERROR, text
    if notice.kind == "summary":
        text = (
            f"the broker refused {notice.count} more message(s) to {notice.topic}: {notice.reason} "
            f"({notice.total} since {since}, all kept as dead letters)"
        )
        return EventKind.PUBLISH_REFUSED, logging.WARNING, text
    text = (
        f"the broker accepts messages to {notice.topic} again, after refusing {notice.total} since {since} "
        "(they stay dead letters until pump-edge outbox --requeue)"
    )
    return EventKind.PUBLISH_ACCEPTED, logging.INFO, text
