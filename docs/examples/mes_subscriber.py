#!/usr/bin/env python3
"""Example MES subscriber for pumpinspect inspection stations (the contract: docs/mqtt.md).

Copy it and replace :meth:`Subscriber.handle_message` with your own handling. Depends only on
paho-mqtt >= 2 and the standard library. What it shows:

- TLS with user name + password (or a client certificate: mutual TLS), the read-only ``mes`` account;
- a **persistent session**: a fixed client id, MQTT 5 Clean Start = 0 with a Session Expiry Interval
  (or MQTT 3.1.1 ``clean_session=false``), so the broker queues results while this program is away;
- QoS 1, acknowledged only after the message was handled (``manual_ack``): nothing is lost;
- **idempotent handling**: a result or alert redelivered at QoS 1 (same ``result_id``) is handled once;
- **gap detection**: per station, ``seq`` must rise by exactly 1; a jump prints a warning line.

With ``--state-file`` the handled ids and the last ``seq`` per station survive a restart (a real MES
keeps them in its database, in the same transaction as the handling).

Output, one JSON object per line on stdout (logs go to stderr)::

    {"type": "result", "topic": ..., "line": ..., "station": ..., "seq": 7, "result_id": ..., "payload": {...}}
    {"type": "duplicate", "kind": "result", "result_id": ..., "seq": 7, ...}      redelivery, dropped
    {"type": "gap", "level": "warning", "line": ..., "station": ..., "first_missing": 8, "last_missing": 9,
     "count": 2}                                                                   results lost before this one

Example (password from the environment, not the command line)::

    MQTT_PASSWORD=... python3 mes_subscriber.py --host broker.plant.local --cafile ca.crt \\
        --username mes --client-id mes-plant1 --state-file mes-state.json

Exit codes: 0 stopped (Ctrl-C, ``--max-messages`` reached, or ``--timeout-s`` elapsed without
``--max-messages``), 1 ``--timeout-s`` elapsed before ``--max-messages`` messages came,
2 bad arguments or the broker refused the login.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("mes")
KINDS = ("status", "result", "alert", "defect_map", "stats", "event")
DEDUPED = ("result", "alert", "defect_map")  # at-least-once through the station's outbox: may come twice


class Ledger:
    """What was handled: message ids (to drop repeats) and the last ``seq`` per station (to see gaps)."""

    def __init__(self, path: Path | None, remember: int) -> None:
        self.path, self.remember = path, remember
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.last_seq: dict[str, int] = {}  # "line/station" -> highest seq handled
        self.session: dict[str, int] = {}  # "line/station" -> the station's session of that result
        if path is not None and path.is_file():
            state = json.loads(path.read_text(encoding="utf-8"))
            self.seen = OrderedDict.fromkeys(state.get("seen", []))
            self.last_seq, self.session = state.get("last_seq", {}), state.get("session", {})

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is seen (and remembers it); False for a repeat."""
        if key in self.seen:
            return False
        self.seen[key] = None
        while len(self.seen) > self.remember:
            self.seen.popitem(last=False)
        return True

    def save(self) -> None:
        """Write the state atomically (temporary file, then rename)."""
        if self.path is None:
            return
        state = {"seen": list(self.seen), "last_seq": self.last_seq, "session": self.session}
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temporary, self.path)


def emit(record: dict) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Subscriber:
    """Subscribes to station topics and handles every message once, in order per station."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix = args.prefix
        self.ledger = Ledger(args.state_file, args.remember)
        self.received = 0
        self.done = threading.Event()
        self.refused: str | None = None
        self.v5 = args.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=args.client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else False,  # 3.1.1: a persistent session
            manual_ack=True,  # acknowledge a QoS 1 message only once it is handled
        )
        if args.username:
            self.client.username_pw_set(args.username, password(args))
        if not args.no_tls:
            self.client.tls_set(ca_certs=args.cafile, certfile=args.certfile, keyfile=args.keyfile)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self.on_connect
        self.client.on_connect_fail = lambda client, userdata: log.warning("connection failed; retrying")
        self.client.on_subscribe = self.on_subscribe
        self.client.on_message = self.on_message
        self.client.on_disconnect = self.on_disconnect

    def start(self) -> None:
        """Connect in the background (paho retries until the broker answers)."""
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.args.session_expiry_s
            self.client.connect_async(
                self.args.host, self.args.port, keepalive=30, clean_start=False, properties=properties
            )
        else:
            self.client.connect_async(self.args.host, self.args.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.done.set()  # from here on a disconnect is ours, not a lost link
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho callbacks (on paho's network thread) ------------------------------------------------

    def on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self.refused = str(reason_code)
            log.error("the broker refused the login: %s", reason_code)
            self.done.set()
            return
        log.info("connected (session present: %s)", flags.session_present)
        filters = [f"{self.prefix}/{self.args.line}/{self.args.station}/{kind}" for kind in self.args.kinds]
        client.subscribe([(topic, 1) for topic in filters])  # again on every connect: harmless, and safe

    def on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("subscription refused: %s", ", ".join(refused))
        log.info("subscribed to %s", ", ".join(self.args.kinds))

    def on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if not self.done.is_set():
            log.warning("disconnected (%s); reconnecting, the broker keeps the session's messages", reason_code)

    def on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        try:
            self.handle_message(message)
        except Exception:  # noqa: BLE001 - a bad message must not stop the subscriber
            log.exception("could not handle a message on %s", message.topic)
        client.ack(message.mid, message.qos)  # after handling: a crash before this means a redelivery
        self.received += 1
        if self.args.max_messages and self.received >= self.args.max_messages:
            self.done.set()

    # --- handling ---------------------------------------------------------------------------------

    def handle_message(self, message: mqtt.MQTTMessage) -> None:
        """Drop repeats, report gaps, then handle; replace the ``emit`` calls with your own code."""
        levels = message.topic[len(self.prefix) + 1 :].split("/")
        if len(levels) != 3:
            return
        line, station, kind = levels
        where = {"topic": message.topic, "line": line, "station": station, "retained": bool(message.retain)}
        if kind == "defect_map":  # a PNG; under MQTT 5 its ids are user properties
            user = dict(getattr(message.properties, "UserProperty", None) or [])
            key = f"defect_map:{user['result_id']}" if "result_id" in user else None
            if key is not None and not self.ledger.first_time(key):
                emit({"type": "duplicate", "kind": kind, "result_id": user["result_id"], **where})
                return
            emit({"type": kind, **where, "bytes": len(message.payload), "properties": user})
            self.ledger.save()
            return
        try:
            payload = json.loads(message.payload)
        except ValueError as error:
            emit({"type": "invalid", **where, "error": str(error)})
            return
        if kind in DEDUPED and not self.ledger.first_time(f"{kind}:{payload['result_id']}"):
            emit({"type": "duplicate", "kind": kind, "result_id": payload["result_id"], "seq": payload["seq"], **where})
            return
        record = {"type": kind, **where}
        if kind == "result":
            record.update(self.check_sequence(line, station, payload))
        emit({**record, "payload": payload})
        if kind in DEDUPED:
            self.ledger.save()

    def check_sequence(self, line: str, station: str, result: dict) -> dict:
        """Warn about a gap in ``seq`` before this result; note a late result and a restarted station."""
        key, seq = f"{line}/{station}", int(result["seq"])
        last = self.ledger.last_seq.get(key)
        notes: dict = {"seq": seq, "result_id": result["result_id"]}
        if last is not None and seq > last + 1:
            emit(
                {
                    "type": "gap",
                    "level": "warning",
                    "line": line,
                    "station": station,
                    "first_missing": last + 1,
                    "last_missing": seq - 1,
                    "count": seq - last - 1,
                }
            )
        if last is not None and seq <= last:
            notes["late"] = True  # an older result arriving now, e.g. replayed dead letters: a gap closes
        if self.ledger.session.get(key, result["session"]) != result["session"]:
            notes["station_restarted"] = True
        self.ledger.last_seq[key] = max(seq, last or 0)
        self.ledger.session[key] = result["session"]
        return notes


def password(args: argparse.Namespace) -> str | None:
    if args.password_file is not None:
        return args.password_file.read_text(encoding="utf-8").splitlines()[0]
    return args.password if args.password is not None else os.environ.get("MQTT_PASSWORD")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=env("MQTT_HOST", "localhost"), help="broker host (env MQTT_HOST)")
    parser.add_argument("--port", type=int, default=int(env("MQTT_PORT", "8883")), help="broker port (MQTT_PORT)")
    parser.add_argument("--cafile", default=env("MQTT_CAFILE"), help="CA that signed the broker (MQTT_CAFILE)")
    parser.add_argument("--certfile", default=env("MQTT_CERTFILE"), help="client certificate, mutual TLS")
    parser.add_argument("--keyfile", default=env("MQTT_KEYFILE"), help="client key, mutual TLS")
    parser.add_argument("--no-tls", action="store_true", help="plain TCP (a development broker only)")
    parser.add_argument("--username", default=env("MQTT_USERNAME", "mes"), help="account (MQTT_USERNAME)")
    parser.add_argument("--password", help="visible to other users in ps: prefer MQTT_PASSWORD or --password-file")
    parser.add_argument("--password-file", type=Path, help="file whose first line is the password")
    parser.add_argument(
        "--client-id", default=env("MQTT_CLIENT_ID", "mes-example"), help="fixed: it names the persistent session"
    )
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version (default 5)")
    parser.add_argument("--session-expiry-s", type=int, default=3600, help="MQTT 5: how long the broker keeps it")
    parser.add_argument("--prefix", default="pumpinspect", help="the stations' mqtt.topic_prefix")
    parser.add_argument("--line", default="+", help="one line id (default: all)")
    parser.add_argument("--station", default="+", help="one station id (default: all)")
    parser.add_argument(
        "--kinds",
        type=lambda text: [kind for kind in text.split(",") if kind],
        default=["status", "result", "alert", "event"],
        help=f"comma-separated topic kinds of {', '.join(KINDS)} (default: status,result,alert,event)",
    )
    parser.add_argument("--state-file", type=Path, help="keep handled ids and last seq here across restarts")
    parser.add_argument("--remember", type=int, default=100_000, help="message ids remembered (a day's worth)")
    parser.add_argument("--max-messages", type=int, default=0, help="exit after N messages (duplicates count)")
    parser.add_argument("--timeout-s", type=float, default=0, help="exit after S seconds (0: run until Ctrl-C)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown:
        parser.error(f"--kinds: unknown {', '.join(unknown)}; use {', '.join(KINDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    subscriber = Subscriber(args)
    subscriber.start()
    deadline = time.monotonic() + args.timeout_s if args.timeout_s > 0 else None
    timed_out = False
    try:
        while not subscriber.done.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.stop()
    if subscriber.refused is not None:
        return 2
    if timed_out and args.max_messages:
        log.warning(
            "timed out after %g s with %d of %d messages", args.timeout_s, subscriber.received, args.max_messages
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
