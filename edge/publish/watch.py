"""An MES-like subscriber: receive what stations publish and show it as a live table.

``pump-edge watch`` calls :func:`watch`; tests use :class:`MessageCollector` directly. It does
what docs/mqtt.md asks of a consumer: QoS 1 subscriptions, an optional persistent session (the
broker queues results while the consumer is away), duplicates dropped by ``result_id`` and seq
gaps counted per station.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from edge.publish.broker import LOOPBACK
from edge.publish.config import MqttConfig
from edge.publish.connection import make_client
from shared.messages import (
    MESSAGE_MODELS,
    TOPIC_KINDS,
    AlertMessage,
    EventMessage,
    ResultMessage,
    StatsMessage,
    StatusMessage,
    parse_topic,
    topic_filter,
)

PERSISTENT_SESSION_S = 3600


@dataclass(frozen=True)
class Received:
    """One message as a consumer got it."""

    topic: str
    kind: str
    line: str
    station: str
    payload: bytes
    retain: bool
    qos: int
    content_type: str | None
    user_properties: dict[str, str]
    message: BaseModel | None  # the parsed JSON payload; None for defect maps and invalid payloads
    error: str | None = None
    received_at: float = field(default_factory=time.time)
    message_expiry_s: int | None = None  # MQTT 5 Message Expiry left when it arrived


class SeqTracker:
    """Per-station dedupe by ``result_id`` and gap counting by ``seq`` (what an MES should do)."""

    def __init__(self) -> None:
        self.last_seq: dict[tuple[str, str], int] = {}
        self.seen: set[str] = set()
        self.duplicates = 0
        self.missing = 0

    def see(self, result: ResultMessage) -> str:
        """'new', 'duplicate' (already seen: drop it) or 'gap' (new, but results before it are missing)."""
        if result.result_id in self.seen:
            self.duplicates += 1
            return "duplicate"
        self.seen.add(result.result_id)
        key = (result.line, result.station)
        last = self.last_seq.get(key)
        self.last_seq[key] = max(result.seq, last or 0)
        if last is not None and result.seq > last + 1:
            self.missing += result.seq - last - 1
            return "gap"
        return "new"


def _parse(topic_kind: str, payload: bytes) -> tuple[BaseModel | None, str | None]:
    if topic_kind not in MESSAGE_MODELS:
        return None, None
    try:
        return MESSAGE_MODELS[topic_kind].model_validate_json(payload), None
    except ValidationError as error:
        return None, f"invalid {topic_kind} payload: {error.error_count()} error(s)"


class LoginRefused(ConnectionError):
    """The broker answered and refused the credentials (not a missing broker)."""


class MessageCollector:
    """Subscribes to station topics and keeps every message it receives, in arrival order."""

    def __init__(
        self,
        config: MqttConfig,
        line: str = "+",
        station: str = "+",
        kinds: Iterable[str] = TOPIC_KINDS,
        *,
        client_id: str | None = None,
        persistent: bool = False,
        on_message: Callable[[Received], None] | None = None,
    ) -> None:
        """Args:
        config: broker settings; the same ``[mqtt]`` section a station uses (no host: the station's
            embedded broker on 127.0.0.1:port).
        line, station: which stations ('+' = all).
        kinds: topic kinds to subscribe to.
        client_id: fixed id (needed for a persistent session); default a random one.
        persistent: keep the session (and the broker's queue of missed QoS 1 messages) across
            disconnects for an hour, like an MES that must not miss results.
        on_message: called for every message, on the network thread.
        """
        if config.host is None:  # the station's embedded broker listens on loopback at mqtt.port
            if config.port == 0:
                raise ValueError("mqtt.host is not set and mqtt.port is 0: give the broker's port to watch")
            config = config.model_copy(update={"host": LOOPBACK})
        self.config = config
        self.filters = [topic_filter(kind, line, station, config.topic_prefix) for kind in kinds]
        self.persistent = persistent
        self.client_id = client_id or f"{config.topic_prefix.replace('/', '-')}-watch-{uuid.uuid4().hex[:8]}"
        self._on_message_callback = on_message
        self._messages: list[Received] = []
        self._lock = threading.Condition()
        self._answered = threading.Event()  # subscribed, or the login refused: start() stops waiting
        self.refused: str | None = None  # the broker's reason code when it refused the login
        self._client = make_client(config, self.client_id, clean_session=not persistent)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout_s: float = 5.0) -> MessageCollector:
        """Connect and wait until the subscriptions are acknowledged."""
        properties = None
        if self.config.mqtt5 and self.persistent:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = PERSISTENT_SESSION_S
        self._client.connect_async(
            self.config.host,
            self.config.port,
            self.config.keepalive_s,
            clean_start=not self.persistent,
            properties=properties,
        )
        self._client.loop_start()
        if not self._answered.wait(timeout_s) or self.refused is not None:
            self.stop()
            where = f"{self.config.host}:{self.config.port}"
            if self.refused is not None:
                account = self.config.username or "anonymous"
                raise LoginRefused(f"the broker on {where} refused the login of {account!r}: {self.refused}")
            raise TimeoutError(f"no subscription on {where} within {timeout_s} s")
        return self

    def stop(self) -> None:
        """Disconnect (a persistent session stays on the broker) and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MessageCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self.filters])
        else:  # wrong password, unknown account, anonymous not allowed: say so, do not wait out the timeout
            self.refused = str(reason_code)
            self._answered.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._answered.set()

    def _on_message(self, client, userdata, message) -> None:
        parts = parse_topic(message.topic, self.config.topic_prefix)
        if parts is None:
            return
        properties = getattr(message, "properties", None)
        parsed, error = _parse(parts.kind, message.payload)
        received = Received(
            topic=message.topic,
            kind=parts.kind,
            line=parts.line,
            station=parts.station,
            payload=bytes(message.payload),
            retain=bool(message.retain),
            qos=message.qos,
            content_type=getattr(properties, "ContentType", None),
            user_properties=dict(getattr(properties, "UserProperty", []) or []),
            message=parsed,
            error=error,
            message_expiry_s=getattr(properties, "MessageExpiryInterval", None),
        )
        with self._lock:
            self._messages.append(received)
            self._lock.notify_all()
        if self._on_message_callback is not None:
            self._on_message_callback(received)

    def messages(self, kind: str | None = None) -> list[Received]:
        """What arrived so far (of one topic kind, or all), oldest first."""
        with self._lock:
            return [m for m in self._messages if kind is None or m.kind == kind]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float) -> bool:
        """Block until ``predicate(messages)`` holds; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not predicate(list(self._messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True


def _station(message: BaseModel) -> str:
    """``line/station`` of a station's message: the view's key and its station column."""
    return f"{message.line}/{message.station}"


def _clock(value: datetime) -> str:
    return value.astimezone().strftime("%H:%M:%S.%f")[:-3]


WATCHED_KINDS = ("status", "stats", "result", "alert", "event")
"""What ``pump-edge watch`` subscribes to (defect maps are images, not for a table)."""


class WatchView:
    """The live table's state: latest status and stats per station and the last results/alerts/events."""

    def __init__(self, max_rows: int = 20) -> None:
        self.tracker = SeqTracker()
        self.statuses: dict[str, StatusMessage] = {}
        self.stats: dict[str, StatsMessage] = {}
        self.rows: deque[tuple[str, ...]] = deque(maxlen=max_rows)
        self.counts = {"result": 0, "alert": 0, "NG": 0, "event": 0}
        self._lock = threading.Lock()  # add() runs on the network thread, render() on the caller's

    def add(self, received: Received) -> None:
        """Fold one message into the view."""
        with self._lock:
            self._add(received.message)

    def _add(self, message: BaseModel | None) -> None:
        if isinstance(message, StatusMessage):
            self.statuses[_station(message)] = message
        elif isinstance(message, StatsMessage):
            self.stats[_station(message)] = message
        elif isinstance(message, EventMessage):
            self.counts["event"] += 1
            ref = f" ({message.ref})" if message.ref else ""
            self._row(
                message.time,
                message,
                "event",
                verdict=message.severity.value,
                note=f"{message.kind.value}: {message.reason}{ref}",
            )
        elif isinstance(message, ResultMessage):
            note = self.tracker.see(message)
            self.counts["result"] += 1
            self.counts["NG"] += message.verdict.value == "NG"
            worst = max((d.max_score for d in message.defects), default=message.patches.max_score or 0.0)
            self._row(
                message.captured_at,
                message,
                "result",
                str(message.seq),
                message.verdict.value,
                str(len(message.defects)),
                f"{worst:.2f}",
                f"{message.latency_ms:.0f}",
                "" if note == "new" else note,
            )
        elif isinstance(message, AlertMessage):
            self.counts["alert"] += 1
            boxes = " ".join(f"{b.x},{b.y} {b.w}x{b.h}" for b in message.boxes[:3])
            self._row(
                message.time,
                message,
                "ALERT",
                str(message.seq),
                message.verdict.value,
                str(message.defect_count),
                f"{message.worst_score:.2f}",
                note=boxes,
            )

    def _row(
        self, when: datetime, message: BaseModel, kind: str, seq: str = "", verdict: str = "", defects: str = "",
        worst: str = "", ms: str = "", note: str = "",
    ) -> None:  # fmt: skip
        """One line of the recent-messages table (its columns, in order), newest first."""
        self.rows.appendleft((_clock(when), _station(message), kind, seq, verdict, defects, worst, ms, note))

    def render(self) -> Group:
        """Station states above the recent messages."""
        with self._lock:
            return self._render()

    def _render(self) -> Group:
        states = Table(title="stations", show_edge=False)
        for column in ("station", "state", "session", "since", "models", "fps", "p99 ms", "outbox", "dead letters"):
            states.add_column(column)
        now = datetime.now(timezone.utc)
        for name in sorted({*self.statuses, *self.stats}):
            status, stats = self.statuses.get(name), self.stats.get(name)
            figures = _stats_cells(stats)
            if status is None:  # stats before the retained status arrived
                states.add_row(name, "?", "", "", "", *figures)
                continue
            state = status.state.value
            style = {"online": "green", "offline": "red", "stopped": "yellow", "degraded": "magenta"}.get(state, "cyan")
            if status.valid_until is not None and status.valid_until < now:
                state, style = f"gone? ({state}, lease ran out {_clock(status.valid_until)})", "red"
            elif status.problems:
                state += ": " + "; ".join(status.problems)
            states.add_row(
                name,
                f"[{style}]{escape(state)}[/]",
                str(status.session),
                _clock(status.timestamp),
                ", ".join(status.models.values()),
                *figures,
            )
        recent = Table(
            title=f"results {self.counts['result']} (NG {self.counts['NG']}), alerts {self.counts['alert']}, "
            f"events {self.counts['event']}, "
            f"duplicates {self.tracker.duplicates}, missing {self.tracker.missing}",
            show_edge=False,
        )
        for column in ("captured", "station", "kind", "seq", "verdict", "defects", "worst", "ms", "note"):
            recent.add_column(column)
        for row in self.rows:
            style = "red" if row[2] == "ALERT" or row[4] == "error" else "yellow" if row[4] == "warning" else None
            recent.add_row(*(escape(cell) for cell in row), style=style)
        return Group(states, recent)


def _stats_cells(stats: StatsMessage | None) -> tuple[str, str, str, str]:
    if stats is None:
        return ("", "", "", "")
    p99 = "" if stats.latency_p99_ms is None else f"{stats.latency_p99_ms:.0f}"
    dead = f"[red]{stats.dead_letters}[/]" if stats.dead_letters else "0"
    return (f"{stats.fps:.1f}", p99, str(stats.outbox_depth), dead)


def watch(
    config: MqttConfig,
    line: str = "+",
    station: str = "+",
    *,
    duration_s: float | None = None,
    max_rows: int = 20,
    console: Console | None = None,
) -> WatchView:
    """Show statuses, stats, results, alerts and events live until Ctrl-C (or ``duration_s``); returns the final view.

    An account may read only some of these (the ``dashboard`` account: no results); the rest stays empty.
    """
    view = WatchView(max_rows)
    console = console or Console()
    collector = MessageCollector(config, line, station, kinds=WATCHED_KINDS, on_message=view.add)
    collector.start()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        with Live(view.render(), console=console, refresh_per_second=4) as live:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.25)
                live.update(view.render())
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop()
    return view
