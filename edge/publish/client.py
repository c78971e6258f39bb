"""The station's MQTT publisher: results through the durable outbox, in order, at least once.

Threads: the caller (pipeline) writes results into the outbox; paho's network thread connects,
reconnects with backoff and reports acks; the publisher's own *pump* thread sends outbox rows in
id order, at most ``max_inflight`` unacknowledged, deleting each row when the broker acks it.
After a reconnect the pump starts again from the oldest row, and paho's in-RAM copies are
dropped, so order holds across outages (a message acked just before a link loss may arrive
twice: consumers dedupe by ``result_id``). Status is retained: the current state on every
(re)connect (birth), ``offline`` as the Last Will (delayed under MQTT 5), ``stopped`` on a clean
stop. Every link state change is logged once; repeats are only counted.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

import numpy as np
import paho.mqtt.client as mqtt

from edge.publish.config import MqttConfig
from edge.publish.connection import (
    JSON_CONTENT_TYPE,
    PNG_CONTENT_TYPE,
    client_id_for,
    connect_properties,
    disconnect_properties,
    make_client,
    publish_properties,
    will_properties,
)
from edge.publish.defect_map import fit_png
from edge.publish.outbox import Outbox, OutboxMessage, OutboxRow
from shared.messages import (
    ResultMessage,
    StationState,
    StatsMessage,
    StatusMessage,
    Verdict,
    alert_from_result,
    make_result_id,
    station_topic,
)

log = logging.getLogger(__name__)
_ACK_WAKE_S = 0.5


class LinkState(str, Enum):
    """Connection to the broker as the log reports it (one line per change)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass
class PublisherCounters:
    """Totals since start (what a log would otherwise repeat)."""

    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    sent: int = 0
    acked: int = 0
    rejected: int = 0
    stats_skipped: int = 0
    defect_map_errors: int = 0


def _now() -> datetime:
    return datetime.now(timezone.utc)


class MqttPublisher:
    """Publishes one station's status, results, alerts, defect maps and stats."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        line: str,
        station: str,
        software_version: str,
        models: dict[str, str] | None = None,
        config_hash: str = "",
    ) -> None:
        """Nothing connects or touches disk here; call :meth:`start`."""
        self.config = config
        self.line, self.station = line, station
        self.topics = {
            kind: station_topic(kind, line, station, config.topic_prefix)
            for kind in ("status", "result", "alert", "defect_map", "stats")
        }
        self.client_id = client_id_for(config.topic_prefix, line, station)
        self.software_version = software_version
        self.models = dict(models or {})
        self.config_hash = config_hash
        self.counters = PublisherCounters()
        self.session = 0
        self._state = StationState.STARTING
        self._state_since = _now()
        self._link = LinkState.IDLE
        self._link_since = time.monotonic()
        self._link_lock = threading.Lock()
        self._send_lock = threading.Lock()  # order: _send_lock, then paho's locks; never the reverse
        self._connected = False
        self._generation = 0  # bumped by every connect/disconnect; a pump working on an old one restarts
        self._acks: queue.SimpleQueue[tuple[int, int, str, int]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._pump_stop = threading.Event()
        self._inflight = 0
        self._last_seq = 0
        self._stopping = False
        self._outbox: Outbox | None = None
        self._client: mqtt.Client | None = None
        self._pump: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Open the outbox, count a session and connect in the background (never blocks on the broker)."""
        if self._outbox is not None:
            raise RuntimeError("publisher already started")
        if self.config.host is None:
            raise ValueError("mqtt.host is not set: start the embedded broker first (broker.ensure_broker)")
        self._outbox = Outbox(self.config.outbox_path, self.config.outbox_max_rows)
        self.session = self._outbox.start_session()
        self._last_seq = self._outbox.counter("seq")
        client = make_client(self.config, self.client_id)
        client.max_inflight_messages_set(self.config.max_inflight + 10)  # room for status/stats beside the window
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._set_will(client)
        self._client = client
        self._pump = threading.Thread(target=self._run_pump, name=f"mqtt-outbox-{self.station}", daemon=True)
        self._pump.start()
        log.info(
            "mqtt: station %s/%s session %d -> %s:%d as %s (MQTT %s, TLS %s, user %s), %d message(s) in the outbox",
            self.line,
            self.station,
            self.session,
            self.config.host,
            self.config.port,
            self.client_id,
            self.config.protocol,
            "on" if self.config.tls else "off",
            "set" if self.config.username else "none",
            self._outbox.depth,
        )
        self._set_link(LinkState.CONNECTING, "")
        client.connect_async(
            self.config.host,
            self.config.port,
            self.config.keepalive_s,
            clean_start=not (self.config.mqtt5 and self.config.will_delay_s > 0),
            properties=connect_properties(self.config),
        )
        client.loop_start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Flush the outbox, publish ``stopped`` (retained) and disconnect cleanly.

        Returns True when everything was delivered; otherwise the rest stays in the outbox and
        goes out after the next start. Safe to call twice.
        """
        if self._outbox is None or self._client is None:
            return True
        deadline = time.monotonic() + timeout_s
        flushed = self.flush(timeout_s)
        self._state, self._state_since = StationState.STOPPED, _now()
        info = None
        with self._send_lock:
            if self._connected:
                info = self._publish_status_locked()
        if info is not None:
            with contextlib.suppress(RuntimeError, ValueError):  # not delivered: the Will says offline later
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._stopping = True
        self._pump_stop.set()
        self._wake.set()
        if self._pump is not None:
            self._pump.join(timeout=5)
        self._client.disconnect(properties=disconnect_properties(self.config))
        self._client.loop_stop()
        depth = self._outbox.depth
        self._outbox.close()
        self._outbox = None
        left = "" if flushed else f"{depth} message(s) stay in the outbox for the next start"
        self._set_link(LinkState.STOPPED, left)
        return flushed

    def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (everything acknowledged); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._outbox is not None and self._outbox.depth > 0:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.02)
        return True

    # --- what the pipeline calls -------------------------------------------------------

    def next_result_ids(self) -> tuple[int, str]:
        """(seq, result_id) for the next result; seq is committed at once and never reused."""
        seq = self._require_outbox().next_seq()
        return seq, make_result_id(self.line, self.station, self.session, seq)

    def publish_result(self, result: ResultMessage, defect_map: bytes | np.ndarray | None = None) -> None:
        """Queue a result (+ alert if NG, + defect map per policy) durably; returns before delivery.

        ``defect_map`` is PNG bytes or an 8-bit image; it is downscaled to ``defect_map_max_bytes``.
        Call it from one thread. Raises ValueError when the result belongs to another station or its
        ``seq`` does not rise.
        """
        outbox = self._require_outbox()
        if (result.line, result.station) != (self.line, self.station):
            raise ValueError(f"result of {result.line}/{result.station} given to {self.line}/{self.station}")
        if result.seq <= self._last_seq:
            raise ValueError(f"seq must rise: got {result.seq} after {self._last_seq} (use next_result_ids())")
        qos = self.config.qos
        messages = [self._json_message("result", result.model_dump_json().encode(), result.seq, qos)]
        if result.verdict == Verdict.NG:
            alert = alert_from_result(result).model_dump_json().encode()
            messages.append(self._json_message("alert", alert, result.seq, qos))
        if defect_map is not None and self._wants_defect_map(result.verdict):
            map_message = self._defect_map_message(result, defect_map)
            if map_message is not None:
                messages.append(map_message)
        outbox.append(messages)
        self._last_seq = result.seq
        self._wake.set()

    def publish_stats(self, stats: StatsMessage) -> bool:
        """Publish stats at QoS 0 with the outbox numbers filled in; False (counted) while disconnected."""
        outbox = self._require_outbox()
        if (stats.line, stats.station) != (self.line, self.station):
            raise ValueError(f"stats of {stats.line}/{stats.station} given to {self.line}/{self.station}")
        stats = stats.model_copy(
            update={
                "outbox_depth": outbox.depth,
                "outbox_dropped": outbox.counter("dropped"),
                "outbox_expired": outbox.counter("expired"),
            }
        )
        with self._send_lock:
            if self._connected and self._client is not None:
                properties = publish_properties(self.config, JSON_CONTENT_TYPE)
                info = self._client.publish(
                    self.topics["stats"], stats.model_dump_json().encode(), 0, False, properties=properties
                )
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    return True
        self.counters.stats_skipped += 1
        return False

    def set_status(self, state: StationState | str, models: dict[str, str] | None = None) -> None:
        """Change the retained station state (published now if connected, else at the next birth)."""
        state = StationState(state)
        if models is not None:
            self.models = dict(models)
        if state != self._state:
            log.info("mqtt: station state %s -> %s", self._state.value, state.value)
        self._state, self._state_since = state, _now()
        with self._send_lock:
            if self._connected:
                self._publish_status_locked()

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the next link loss."""
        return self._connected

    @property
    def outbox_depth(self) -> int:
        """Messages not yet acknowledged by the broker (0 before start and after stop)."""
        return self._outbox.depth if self._outbox is not None else 0

    @property
    def state(self) -> StationState:
        """The station state last set."""
        return self._state

    @property
    def link(self) -> LinkState:
        """The broker link as last logged."""
        return self._link

    # --- messages ---------------------------------------------------------------------

    def status_message(self, state: StationState | None = None) -> StatusMessage:
        """The retained status payload for ``state`` (default: the current one)."""
        return StatusMessage(
            line=self.line,
            station=self.station,
            state=state or self._state,
            software_version=self.software_version,
            models=self.models,
            config_hash=self.config_hash,
            session=max(1, self.session),
            timestamp=self._state_since if state is None else _now(),
        )

    def _json_message(self, kind: str, payload: bytes, seq: int, qos: int) -> OutboxMessage:
        return OutboxMessage(
            topic=self.topics[kind], payload=payload, qos=qos, kind=kind, seq=seq, content_type=JSON_CONTENT_TYPE
        )

    def _wants_defect_map(self, verdict: Verdict) -> bool:
        return self.config.defect_map == "all" or (self.config.defect_map == "ng" and verdict == Verdict.NG)

    def _defect_map_message(self, result: ResultMessage, defect_map: bytes | np.ndarray) -> OutboxMessage | None:
        try:
            fitted = fit_png(defect_map, self.config.defect_map_max_bytes)
        except ValueError as error:  # a bad map must never cost the result
            self.counters.defect_map_errors += 1
            log.warning("mqtt: defect map of %s not published: %s", result.result_id, error)
            return None
        return OutboxMessage(
            topic=self.topics["defect_map"],
            payload=fitted.png,
            qos=self.config.qos,
            kind="defect_map",
            seq=result.seq,
            content_type=PNG_CONTENT_TYPE,
            user_properties=(
                ("result_id", result.result_id),
                ("frame_id", result.frame_id),
                ("seq", str(result.seq)),
                ("scale", f"{fitted.scale:.6g}"),
            ),
        )

    def _publish_status_locked(self) -> mqtt.MQTTMessageInfo:
        """Publish the retained status; the caller holds ``_send_lock`` and is connected."""
        assert self._client is not None
        payload = self.status_message().model_dump_json().encode()
        properties = publish_properties(self.config, JSON_CONTENT_TYPE)
        return self._client.publish(self.topics["status"], payload, 1, True, properties=properties)

    def _set_will(self, client: mqtt.Client) -> None:
        payload = self.status_message(StationState.OFFLINE).model_dump_json().encode()
        client.will_set(self.topics["status"], payload, 1, True, properties=will_properties(self.config))

    def _require_outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("publisher not started (or already stopped)")
        return self._outbox

    # --- paho callbacks (network thread; short, never blocking on the pump) -------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counters.connect_failures += 1
            self._set_link(LinkState.REFUSED, f"broker refused the connection: {reason_code}")
            return
        with self._send_lock:
            client.drop_out_messages()  # the outbox owns redelivery; paho's copies would be duplicates
            self._generation += 1
            self._connected = True
            self._publish_status_locked()  # birth
        self.counters.connects += 1
        depth = self.outbox_depth
        self._set_link(LinkState.CONNECTED, f"sending {depth} queued message(s)" if depth else "")
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self.counters.connect_failures += 1
        self._set_link(
            LinkState.UNREACHABLE,
            f"cannot reach {self.config.host}:{self.config.port}; retrying (backoff up to "
            f"{self.config.reconnect_max_s:g} s), results wait in the outbox",
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._send_lock:
            was_connected = self._connected
            self._connected = False
            self._generation += 1
            client.drop_out_messages()
        if self._stopping:
            return
        self._set_will(client)  # refreshed timestamp for the next connection
        if was_connected:
            self.counters.disconnects += 1
            if reason_code == "Session taken over":
                log.error(
                    "mqtt: another client connected as %s: is a second process running for %s/%s?",
                    self.client_id,
                    self.line,
                    self.station,
                )
            self._set_link(LinkState.DISCONNECTED, f"{reason_code}; reconnecting, results wait in the outbox")
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # Runs under paho's message lock: hand over to the pump, take no lock of ours.
        self._acks.put((mid, int(reason_code.is_failure), str(reason_code), self._generation))
        self._wake.set()

    def _set_link(self, state: LinkState, detail: str) -> None:
        with self._link_lock:
            if state == self._link:
                return
            previous, since = self._link, self._link_since
            self._link, self._link_since = state, time.monotonic()
        after = f" after {time.monotonic() - since:.1f} s {previous.value}" if previous != LinkState.IDLE else ""
        calm = (LinkState.CONNECTED, LinkState.CONNECTING, LinkState.STOPPED)
        level = logging.INFO if state in calm else logging.WARNING
        log.log(level, "mqtt: %s%s%s", state.value, after, f" ({detail})" if detail else "")

    # --- the pump: outbox rows -> paho, in id order ---------------------------------------

    def _run_pump(self) -> None:
        inflight: dict[int, int] = {}  # paho mid -> outbox row id
        cursor, generation = 0, -1
        while not self._pump_stop.is_set():
            self._wake.wait(_ACK_WAKE_S)
            self._wake.clear()
            try:
                self._take_acks(inflight, generation)
                with self._send_lock:
                    connected, current = self._connected, self._generation
                if current != generation:  # link changed: acks of the old link first, then resend from the oldest
                    self._take_acks(inflight, generation)
                    inflight.clear()
                    cursor, generation = 0, current
                if connected:
                    cursor = self._fill(inflight, cursor, generation)
                self._inflight = len(inflight)
            except Exception:  # pragma: no cover - keep delivering whatever went wrong once
                log.exception("mqtt: outbox pump error")
                time.sleep(_ACK_WAKE_S)

    def _take_acks(self, inflight: dict[int, int], generation: int) -> None:
        outbox = self._outbox
        while True:
            try:
                mid, failed, reason, ack_generation = self._acks.get_nowait()
            except queue.Empty:
                return
            row_id = inflight.pop(mid, None) if ack_generation == generation else None
            if row_id is None or outbox is None:
                continue  # a status/stats message, or a link that is gone
            outbox.delete(row_id)
            if failed:  # the broker will never take it (e.g. not authorised): drop, or it blocks the line
                self.counters.rejected += 1
                log.warning("mqtt: broker rejected outbox message %d: %s (dropped)", row_id, reason)
            else:
                self.counters.acked += 1

    def _fill(self, inflight: dict[int, int], cursor: int, generation: int) -> int:
        outbox = self._outbox
        while outbox is not None and len(inflight) < self.config.max_inflight:
            rows = outbox.pending(cursor, self.config.max_inflight - len(inflight))
            if not rows:
                break
            for row in rows:
                expiry_s = self._remaining_expiry(row)
                if expiry_s is not None and expiry_s <= 0:
                    outbox.expire(row.id)
                    cursor = row.id
                    continue
                message = row.message
                properties = publish_properties(self.config, message.content_type, message.user_properties, expiry_s)
                with self._send_lock:
                    if not self._connected or self._generation != generation or self._client is None:
                        return cursor
                    info = self._client.publish(
                        message.topic, message.payload, message.qos, message.retain, properties=properties
                    )
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return cursor  # link just went; the next generation starts over
                inflight[info.mid] = row.id
                cursor = row.id
                self.counters.sent += 1
        return cursor

    def _remaining_expiry(self, row: OutboxRow) -> int | None:
        if self.config.message_expiry_s is None:
            return None
        return int(self.config.message_expiry_s - (time.time() - row.created_at))


__all__ = ["LinkState", "MqttPublisher", "PublisherCounters"]
