"""The station's MQTT publisher: results through the durable outbox, in order, at least once.

Three threads meet here: the pipeline calls :meth:`MqttPublisher.publish_result`, which only
writes to the outbox; paho's network thread connects, reconnects with backoff and reports acks;
the :class:`~edge.publish.sender.OutboxSender` thread moves outbox rows to the broker in order.
Status is retained: the current state on every (re)connect (birth), ``offline`` as the Last Will
(delayed under MQTT 5), ``stopped`` on a clean stop; a live state is re-published as a heartbeat and
expires if the station stops renewing it, and ``online`` shows as ``degraded`` while the broker
refuses messages (:mod:`edge.publish.status`). Refused messages become dead letters and
``publish-refused`` events, one per burst plus a summary now and then (:mod:`edge.publish.refusals`).
Stats and events bypass the outbox: published on the live connection or dropped and counted. Each
link state change is logged once (:class:`~edge.publish.link.BrokerLink`); repeats are only counted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

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
from edge.publish.link import BrokerLink, LinkState
from edge.publish.outbox import Outbox, OutboxMessage
from edge.publish.refusals import RefusalNotice, describe
from edge.publish.sender import OutboxSender
from edge.publish.status import StatusBoard
from shared.messages import (
    EVENT_SEVERITY,
    CommandAck,
    EventMessage,
    ResultMessage,
    StationState,
    StatsMessage,
    StatusMessage,
    Verdict,
    alert_from_result,
    command_filter,
    command_topic,
    make_result_id,
    station_topic,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublisherCounters:
    """Totals since start (what a log would otherwise repeat)."""

    connects: int
    connect_failures: int
    disconnects: int
    sent: int
    acked: int
    rejected: int
    stats_skipped: int
    events_skipped: int
    defect_map_errors: int


def _now() -> datetime:
    return datetime.now(timezone.utc)


class MqttPublisher:
    """Publishes one station's status, results, alerts, defect maps, stats and events."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        line: str,
        station: str,
        software_version: str,
        models: dict[str, str] | None = None,
        config_hash: str = "",
        data_dir: Path | None = None,
    ) -> None:
        """Nothing connects or touches disk here; call :meth:`start`.

        ``data_dir`` is the station's data folder, where the outbox lives unless ``mqtt.outbox_path`` says.
        """
        self.config = config
        self.outbox_path = config.resolved_outbox_path(data_dir)
        self.line, self.station = line, station
        self.topics = {
            kind: station_topic(kind, line, station, config.topic_prefix)
            for kind in ("status", "result", "alert", "defect_map", "stats", "event")
        }
        self.client_id = client_id_for(config.topic_prefix, line, station)
        self.software_version = software_version
        self.models = dict(models or {})
        self.config_hash = config_hash
        self.session = 0
        self._counts = dict.fromkeys(
            ("connects", "connect_failures", "disconnects", "stats_skipped", "events_skipped", "defect_map_errors"),
            0,
        )
        self._board = StatusBoard(config.status_expiry_s, config.refusal_summary_s)
        self._dead_letters_at_stop = 0
        self._last_seq = 0
        self._stopping = False
        self._outbox: Outbox | None = None
        self._link: BrokerLink | None = None
        self._sender: OutboxSender | None = None
        self.on_command: Callable[[str, bytes], None] | None = None  # set before start: subscribes to own cmd/#

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Open the outbox, count a session and connect in the background (never blocks on the broker)."""
        if self._outbox is not None:
            raise RuntimeError("publisher already started")
        if self.config.host is None:
            raise ValueError("mqtt.host is not set: start the embedded broker first (broker.ensure_broker)")
        self._outbox = Outbox(self.outbox_path, self.config.outbox_max_rows, self.config.dead_letter_limit, lock=True)
        self.session = self._outbox.start_session()
        self._last_seq = self._outbox.counter("seq")
        client = make_client(self.config, self.client_id)
        client.max_inflight_messages_set(self.config.max_inflight + 10)  # room for status, stats, events
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._set_will(client)
        self._link = BrokerLink(client)
        self._sender = OutboxSender(
            self._outbox,
            self._link,
            self.config,
            name=f"mqtt-outbox-{self.station}",
            on_outcome=self._on_outcome,
            on_tick=self._on_tick,
        )
        self._sender.start()
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
        if self._outbox.dead_letter_depth:
            log.warning(
                "mqtt: %d message(s) the broker refused earlier are kept as dead letters in %s "
                "(pump-edge outbox --dead-letters; --requeue once the broker's ACL is fixed)",
                self._outbox.dead_letter_depth,
                self.outbox_path,
            )
        self._link.set_state(LinkState.CONNECTING)
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
        if self._outbox is None or self._link is None or self._sender is None:
            return True
        deadline = time.monotonic() + timeout_s
        flushed = self.flush(timeout_s)
        self._board.set(StationState.STOPPED)
        info = self._publish_status()
        if info is not None:
            with contextlib.suppress(RuntimeError, ValueError):  # not delivered: the Will says offline later
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._stopping = True
        self._sender.stop()
        self._link.client.disconnect(properties=disconnect_properties(self.config))
        self._link.client.loop_stop()
        depth = self._outbox.depth
        self._dead_letters_at_stop = self._outbox.dead_letter_depth
        self._outbox.close()
        self._outbox = None
        left = "" if flushed else f"{depth} message(s) stay in the outbox for the next start"
        self._link.set_state(LinkState.STOPPED, left)
        return flushed

    def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (everything acknowledged); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._outbox is not None and self._outbox.depth > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # --- what the pipeline calls -------------------------------------------------------

    def next_result_ids(self) -> tuple[int, str]:
        """(seq, result_id) for the next result; seq is committed at once and never reused."""
        seq = self._require_outbox().next_seq()
        return seq, make_result_id(self.line, self.station, self.session, seq)

    def publish_result(
        self, result: ResultMessage, defect_map: bytes | np.ndarray | None = None, *, map_scale: float = 1.0
    ) -> None:
        """Queue a result (+ alert if NG, + defect map per policy) durably; returns before delivery.

        ``defect_map`` is the rendered picture (an 8-bit image, encoded once here) or PNG bytes; it goes
        out when ``MqttConfig.publishes_defect_map`` wants one for this verdict, downscaled to
        ``defect_map_max_bytes`` if its PNG is larger. ``map_scale`` is the given map's width / the
        frame's (the station renders maps at most ``defect_map_max_px`` wide), so the published
        ``scale`` property is map width / frame width as docs/mqtt.md says.
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
        if result.verdict in (Verdict.NG, Verdict.ERROR):  # an uninspected part needs action too
            alert = alert_from_result(result).model_dump_json().encode()
            messages.append(self._json_message("alert", alert, result.seq, qos))
        if defect_map is not None and self.config.publishes_defect_map(result.verdict):
            map_message = self._defect_map_message(result, defect_map, map_scale)
            if map_message is not None:
                messages.append(map_message)
        outbox.append(messages)
        self._last_seq = result.seq
        if self._sender is not None:
            self._sender.wake()

    def publish_stats(self, stats: StatsMessage) -> bool:
        """Publish stats at QoS 0 with the outbox numbers filled in; False (counted) while disconnected."""
        outbox = self._require_outbox()
        if (stats.line, stats.station) != (self.line, self.station):
            raise ValueError(f"stats of {stats.line}/{stats.station} given to {self.line}/{self.station}")
        stats = stats.model_copy(
            update={
                "errors": stats.errors + self.counters.rejected,  # refused this session: errors too
                "outbox_depth": outbox.depth,
                "outbox_dropped": outbox.counter("dropped"),
                "outbox_expired": outbox.counter("expired"),
                "outbox_refused": outbox.counter("refused"),
                "dead_letters": outbox.dead_letter_depth,
                "dead_letters_evicted": outbox.counter("dead_evicted"),
            }
        )
        properties = publish_properties(self.config, JSON_CONTENT_TYPE)
        payload = stats.model_dump_json().encode()
        if self._link is not None and self._link.publish(self.topics["stats"], payload, 0, False, properties):
            return True
        self._counts["stats_skipped"] += 1
        return False

    def publish_event(self, event: EventMessage) -> bool:
        """Publish a diagnostic event at QoS 1, not retained; False (counted) while disconnected.

        Best effort: events never enter the outbox, so one raised while the broker is away (or
        before :meth:`start`, after :meth:`stop`) is dropped and counted in ``events_skipped``.
        Never blocks. Raises ValueError when the event belongs to another station.
        """
        if (event.line, event.station) != (self.line, self.station):
            raise ValueError(f"event of {event.line}/{event.station} given to {self.line}/{self.station}")
        properties = publish_properties(self.config, JSON_CONTENT_TYPE)
        payload = event.model_dump_json().encode()
        if self._link is not None and self._link.publish(self.topics["event"], payload, 1, False, properties):
            return True
        self._counts["events_skipped"] += 1
        return False

    def publish_ack(self, ack: CommandAck) -> bool:
        """Answer a command on ``cmd/ack`` at QoS 1, best effort like events (the sender may repeat the id)."""
        properties = publish_properties(self.config, JSON_CONTENT_TYPE)
        topic = command_topic("ack", self.line, self.station, self.config.topic_prefix)
        if self._link is not None and self._link.publish(topic, ack.model_dump_json().encode(), 1, False, properties):
            return True
        self._counts["events_skipped"] += 1
        return False

    def set_status(self, state: StationState | str, models: dict[str, str] | None = None) -> None:
        """Change the retained station state (published now if connected, else at the next birth)."""
        state = StationState(state)
        if models is not None:
            self.models = dict(models)
        if state != self._board.state:
            log.info("mqtt: station state %s -> %s", self._board.state.value, state.value)
        self._board.set(state)
        self._publish_status()

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the next link loss."""
        return self._link is not None and self._link.connected

    @property
    def outbox_depth(self) -> int:
        """Messages not yet acknowledged by the broker (0 before start and after stop)."""
        return self._outbox.depth if self._outbox is not None else 0

    @property
    def dead_letter_depth(self) -> int:
        """Messages the broker refused, kept as dead letters (as at :meth:`stop` once stopped)."""
        return self._outbox.dead_letter_depth if self._outbox is not None else self._dead_letters_at_stop

    @property
    def state(self) -> StationState:
        """The station state last set (``online`` even while the status shows ``degraded``)."""
        return self._board.state

    @property
    def shown_state(self) -> StationState:
        """The state the retained status shows now (``degraded`` while the broker refuses messages)."""
        return self._board.shown().state

    @property
    def problems(self) -> list[str]:
        """Why the station is degraded (the status's ``problems``); empty when the broker accepts everything."""
        return self._board.refusals.problems()

    @property
    def link(self) -> LinkState:
        """The broker link as last logged."""
        return self._link.state if self._link is not None else LinkState.IDLE

    @property
    def counters(self) -> PublisherCounters:
        """A snapshot of the totals since start."""
        sender = self._sender.counters if self._sender is not None else None
        return PublisherCounters(
            sent=sender.sent if sender else 0,
            acked=sender.acked if sender else 0,
            rejected=sender.rejected if sender else 0,
            **self._counts,
        )

    # --- messages ---------------------------------------------------------------------

    def status_message(self, state: StationState | None = None) -> StatusMessage:
        """The retained status payload: the current one, or ``state`` from now (the Will: no lease, no problems)."""
        shown = self._board.shown()
        return StatusMessage(
            line=self.line,
            station=self.station,
            state=shown.state if state is None else state,
            software_version=self.software_version,
            models=self.models,
            config_hash=self.config_hash,
            session=max(1, self.session),
            timestamp=shown.since if state is None else _now(),
            problems=shown.problems if state is None else [],
            heartbeat_at=shown.heartbeat_at if state is None else None,
            valid_until=shown.valid_until if state is None else None,
        )

    def _json_message(self, kind: str, payload: bytes, seq: int, qos: int) -> OutboxMessage:
        return OutboxMessage(
            topic=self.topics[kind], payload=payload, qos=qos, kind=kind, seq=seq, content_type=JSON_CONTENT_TYPE
        )

    def _defect_map_message(
        self, result: ResultMessage, defect_map: bytes | np.ndarray, map_scale: float
    ) -> OutboxMessage | None:
        try:
            fitted = fit_png(defect_map, self.config.defect_map_max_bytes)
        except ValueError as error:  # a bad map must never cost the result
            self._counts["defect_map_errors"] += 1
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
                ("scale", f"{fitted.scale * map_scale:.6g}"),
            ),
        )

    def _publish_status(self) -> mqtt.MQTTMessageInfo | None:
        """Publish the retained status if connected; the paho message info, or None."""
        if self._link is None:
            return None
        message = self.status_message()
        expiry_s = self.config.status_expiry_s if message.valid_until is not None else None
        properties = publish_properties(self.config, JSON_CONTENT_TYPE, expiry_s=expiry_s)
        info = self._link.publish(self.topics["status"], message.model_dump_json().encode(), 1, True, properties)
        if info is not None:
            self._board.published()
        return info

    def _publish_notice(self, notice: RefusalNotice) -> None:
        """A refusal burst began, goes on, or ended: log it, raise an event, re-publish the status."""
        kind, level, reason = describe(notice)
        log.log(level, "mqtt: %s", reason)
        event = EventMessage(
            line=self.line,
            station=self.station,
            time=_now(),
            kind=kind,
            severity=EVENT_SEVERITY[kind],
            source="mqtt",
            ref=notice.topic,
            reason=reason,
        )
        self.publish_event(event)
        if notice.kind != "summary":
            self._publish_status()  # degraded begins or ends

    def _set_will(self, client: mqtt.Client) -> None:
        payload = self.status_message(StationState.OFFLINE).model_dump_json().encode()
        client.will_set(self.topics["status"], payload, 1, True, properties=will_properties(self.config))

    def _require_outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("publisher not started (or already stopped)")
        return self._outbox

    # --- paho callbacks (network thread; short, never waiting for the sender) ----------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        assert self._link is not None and self._sender is not None
        if reason_code.is_failure:
            self._counts["connect_failures"] += 1
            self._link.set_state(LinkState.REFUSED, f"broker refused the connection: {reason_code}")
            return
        if self.on_command is not None:  # only its own commands (the broker's ACL says the same); before the birth
            client.subscribe(command_filter(self.line, self.station, self.config.topic_prefix), qos=1)
        self._link.up(birth=self._publish_status)
        self._counts["connects"] += 1
        depth = self.outbox_depth
        self._link.set_state(LinkState.CONNECTED, f"sending {depth} queued message(s)" if depth else "")
        self._sender.wake()

    def _on_connect_fail(self, client, userdata) -> None:
        assert self._link is not None
        self._counts["connect_failures"] += 1
        self._link.set_state(
            LinkState.UNREACHABLE,
            f"cannot reach {self.config.host}:{self.config.port}; retrying (backoff up to "
            f"{self.config.reconnect_max_s:g} s), results wait in the outbox",
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        assert self._link is not None and self._sender is not None
        was_connected = self._link.down()
        if self._stopping:
            return
        self._set_will(client)  # refreshed timestamp for the next connection
        if was_connected:
            self._counts["disconnects"] += 1
            if reason_code == "Session taken over":
                log.error(
                    "mqtt: another client connected as %s: is a second process running for %s/%s?",
                    self.client_id,
                    self.line,
                    self.station,
                )
            self._link.set_state(LinkState.DISCONNECTED, f"{reason_code}; reconnecting, results wait in the outbox")
        self._sender.wake()

    # --- sender callbacks (its thread) ------------------------------------------------------

    def _on_outcome(self, topic: str, refused: bool, reason: str) -> None:
        tracker = self._board.refusals
        notice = tracker.refused(topic, reason) if refused else tracker.accepted(topic)
        if notice is not None:
            self._publish_notice(notice)

    def _on_tick(self) -> None:
        for notice in self._board.refusals.due():
            self._publish_notice(notice)
        if self._board.heartbeat_due():
            self._publish_status()

    def _on_message(self, client, userdata, message) -> None:
        command = message.topic.rsplit("/", 1)[-1]
        if self.on_command is not None and command != "ack":  # its own acks come back through cmd/#
            self.on_command(command, message.payload)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if self._sender is not None:  # paho holds its message lock here: the sender only queues the ack
            self._sender.on_ack(mid, reason_code.is_failure, str(reason_code))


__all__ = ["LinkState", "MqttPublisher", "PublisherCounters"]
