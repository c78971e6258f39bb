"""The broker connection as the publisher's threads see it: up/down, a generation, one lock, one log line.

paho reports connects and losses on its network thread while the pipeline and the outbox sender
publish from theirs. Every publish goes through :meth:`BrokerLink.publish` under one lock that
:meth:`up` and :meth:`down` also take, so a message is either published on the current connection
or not at all; the *generation* changes with every connect and loss, so a sender working for an
old connection notices and starts over. Lock order: this lock, then paho's — never the reverse
(paho calls ``on_publish`` holding its own lock, so that callback must not come here).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

log = logging.getLogger("edge.publish.client")


class LinkState(str, Enum):
    """Connection to the broker as the log reports it (one line per change)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


_CALM = (LinkState.CONNECTING, LinkState.CONNECTED, LinkState.STOPPED)


class BrokerLink:
    """Wraps a paho client: connected flag, generation, publish lock and state logging."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self._lock = threading.RLock()
        self._connected = False
        self._generation = 0
        self._state = LinkState.IDLE
        self._since = time.monotonic()
        self._state_lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def generation(self) -> int:
        """Changes on every connect and loss (read on paho's thread it is always current)."""
        return self._generation

    @property
    def state(self) -> LinkState:
        return self._state

    def snapshot(self) -> tuple[bool, int]:
        """(connected, generation), read together."""
        with self._lock:
            return self._connected, self._generation

    def up(self, birth: Callable[[], object]) -> None:
        """A connection is up (from ``on_connect``): forget paho's in-RAM copies, then publish ``birth``.

        The copies would be resent by paho ahead of the outbox's own resend, as duplicates.
        """
        with self._lock:
            self.client.drop_out_messages()
            self._generation += 1
            self._connected = True
            birth()

    def down(self) -> bool:
        """The connection is gone (from ``on_disconnect``); returns whether it had been up."""
        with self._lock:
            was_connected = self._connected
            self._connected = False
            self._generation += 1
            self.client.drop_out_messages()
        return was_connected

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties | None,
        generation: int | None = None,
    ) -> mqtt.MQTTMessageInfo | None:
        """Publish on the current connection (or on ``generation`` only); None when that is not up."""
        with self._lock:
            if not self._connected or (generation is not None and generation != self._generation):
                return None
            info = self.client.publish(topic, payload, qos, retain, properties=properties)
        return info if info.rc == mqtt.MQTT_ERR_SUCCESS else None

    def set_state(self, state: LinkState, detail: str = "") -> None:
        """Log a state change once; repeating the same state logs nothing (a retry loop stays quiet)."""
        with self._state_lock:
            if state == self._state:
                return
            previous, since = self._state, self._since
            self._state, self._since = state, time.monotonic()
        after = f" after {time.monotonic() - since:.1f} s {previous.value}" if previous != LinkState.IDLE else ""
        level = logging.INFO if state in _CALM else logging.WARNING
        log.log(level, "mqtt: %s%s%s", state.value, after, f" ({detail})" if detail else "")
