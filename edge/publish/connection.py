"""Building a paho client from :class:`MqttConfig`: identity, auth, TLS, Will and MQTT 5 properties.

Kept apart from the publisher so the watcher (an MES-like subscriber) connects the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.publish.config import MqttConfig

CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
JSON_CONTENT_TYPE = "application/json"
PNG_CONTENT_TYPE = "image/png"
PAHO_LOGGER = "edge.publish.paho"


def client_id_for(prefix: str, line: str, station: str, role: str = "") -> str:
    """Client id ``{prefix}-{line}-{station}[-{role}]``: one per station, so a second process with the
    same line/station is visible as a broker take-over instead of two stations silently sharing topics.
    """
    client_id = "-".join(part for part in (prefix.replace("/", "-"), line, station, role) if part)
    if not re.match(CLIENT_ID_PATTERN, client_id):
        raise ValueError(f"MQTT client id {client_id!r} must be 1-128 characters of [A-Za-z0-9_-]")
    return client_id


def read_password(config: MqttConfig) -> str | None:
    """The broker password from ``password`` or the first line of ``password_file``."""
    if config.password is not None:
        return config.password.get_secret_value()
    if config.password_file is None:
        return None
    path = Path(config.password_file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"mqtt.password_file: {path} not found") from None
    return lines[0].strip() if lines else ""


def _log_paho(client: mqtt.Client, userdata: object, level: int, text: str) -> None:
    """paho's chatter (one line per failed retry) at DEBUG; only exceptions in our callbacks as errors.

    The publisher logs each link state change once itself, so a broker outage cannot flood the log.
    """
    failed_callback = text.startswith("Caught exception")
    logging.getLogger(PAHO_LOGGER).log(logging.ERROR if failed_callback else logging.DEBUG, "%s", text)


def _check_file(field: str, path: Path | None) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"mqtt.tls.{field}: {path} not found")
    return str(path)


def make_client(config: MqttConfig, client_id: str, *, clean_session: bool = True) -> mqtt.Client:
    """A configured paho client (not connected): protocol, backoff, auth, TLS; callbacks are the caller's.

    ``clean_session`` is for 3.1.1 only; MQTT 5 chooses Clean Start when connecting.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if config.mqtt5 else mqtt.MQTTv311,
        clean_session=None if config.mqtt5 else clean_session,
    )
    client.on_log = _log_paho
    client.suppress_exceptions = True  # a bug in a callback is logged, it must not kill the network thread
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)  # type: ignore[arg-type]
    client.max_queued_messages_set(0)
    if config.username is not None:
        client.username_pw_set(config.username, read_password(config))
    if config.tls is not None:
        tls = config.tls
        client.tls_set(
            ca_certs=_check_file("ca_file", tls.ca_file),
            certfile=_check_file("cert_file", tls.cert_file),
            keyfile=_check_file("key_file", tls.key_file),
        )
        client.tls_insecure_set(tls.insecure)
    return client


def connect_properties(config: MqttConfig) -> Properties | None:
    """MQTT 5 CONNECT: a session outliving the Will delay, so a quick reconnect cancels the Will."""
    if not config.mqtt5 or config.will_delay_s == 0:
        return None
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = config.will_delay_s
    return properties


def will_properties(config: MqttConfig) -> Properties | None:
    """MQTT 5 Will: delayed by ``will_delay_s``, JSON content."""
    if not config.mqtt5:
        return None
    properties = Properties(PacketTypes.WILLMESSAGE)
    properties.WillDelayInterval = config.will_delay_s
    properties.ContentType = JSON_CONTENT_TYPE
    properties.PayloadFormatIndicator = 1
    return properties


def publish_properties(
    config: MqttConfig,
    content_type: str | None,
    user_properties: Sequence[tuple[str, str]] = (),
    expiry_s: int | None = None,
) -> Properties | None:
    """MQTT 5 PUBLISH properties (None under 3.1.1, which has none)."""
    if not config.mqtt5:
        return None
    properties = Properties(PacketTypes.PUBLISH)
    if content_type is not None:
        properties.ContentType = content_type
        properties.PayloadFormatIndicator = int(content_type == JSON_CONTENT_TYPE)
    if user_properties:
        properties.UserProperty = list(user_properties)
    if expiry_s is not None:
        properties.MessageExpiryInterval = expiry_s
    return properties


def disconnect_properties(config: MqttConfig) -> Properties | None:
    """MQTT 5 DISCONNECT ending the session now (a clean stop needs no Will delay)."""
    if not config.mqtt5:
        return None
    properties = Properties(PacketTypes.DISCONNECT)
    properties.SessionExpiryInterval = 0
    return properties
