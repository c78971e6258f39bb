#!/usr/bin/env python3
"""Send one command to a pumpinspect station and wait for its answer on ``cmd/ack`` (docs/mqtt.md, Commands).

An operator's tool, logged in as the ``operator`` account (the only one the broker lets write
``cmd/#``). Depends only on paho-mqtt >= 2 and the standard library. It subscribes to the
station's ``cmd/ack`` first, then publishes the command at QoS 1 (not retained) and prints the
matching ack as one JSON line::

    MQTT_PASSWORD=... python3 send_command.py reload classifier-0.2.0 --line line1 --station station1 \\
        --host broker.plant.local --cafile ca.crt
    MQTT_PASSWORD=... python3 send_command.py thresholds --decision 0.7 --line line1 --station station1 ...

Commands are idempotent by ``command_id``: after a timeout send the same command again with the
same ``--command-id`` (printed on stderr) and the station answers again (``"repeated": true``)
without applying it twice. A reload is answered once the new bundle is validated and warmed up,
which takes minutes when a TensorRT engine must be built: hence the long default timeout.

Exit codes: 0 accepted, 1 rejected (the ack's ``reason`` says why; the running models go on),
2 no ack within ``--timeout-s``, 3 the broker refused the login, the subscription or (MQTT 5) the
command (e.g. an account without the right to command), or could not be reached, 4 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger("send_command")
ACCEPTED, REJECTED, TIMEOUT, REFUSED, USAGE = 0, 1, 2, 3, 4


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; here 2 means a timeout, so a usage error exits 4."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


class CommandSender:
    """Subscribes to the station's acks, publishes one command, waits for the ack with its id."""

    def __init__(self, args: argparse.Namespace, command: dict) -> None:
        self.args, self.command = args, command
        station = f"{args.prefix}/{args.line}/{args.station}"
        self.command_topic, self.ack_topic = f"{station}/cmd/{args.command}", f"{station}/cmd/ack"
        self.ack: dict | None = None
        self.refused: str | None = None
        self.done = threading.Event()
        self.v5 = args.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{args.username or 'operator'}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        if args.username:
            self.client.username_pw_set(args.username, password(args))
        if not args.no_tls:
            self.client.tls_set(ca_certs=args.cafile, certfile=args.certfile, keyfile=args.keyfile)
        self.client.on_connect = self.on_connect
        self.client.on_subscribe = self.on_subscribe
        self.client.on_publish = self.on_publish
        self.client.on_message = self.on_message

    def run(self) -> int:
        try:
            self.client.connect(self.args.host, self.args.port, keepalive=30)
        except OSError as error:
            log.error("cannot reach the broker %s:%d: %s", self.args.host, self.args.port, error)
            return REFUSED
        self.client.loop_start()
        try:
            answered = self.done.wait(self.args.timeout_s)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
        if self.refused is not None:
            log.error("%s", self.refused)
            return REFUSED
        if not answered or self.ack is None:
            log.error(
                "no ack from %s within %g s; send it again with --command-id %s (it is never applied twice)",
                self.args.station,
                self.args.timeout_s,
                self.command["command_id"],
            )
            return TIMEOUT
        print(json.dumps(self.ack), flush=True)
        return ACCEPTED if self.ack.get("outcome") == "accepted" else REJECTED

    def fail(self, reason: str) -> None:
        self.refused = reason
        self.done.set()

    def on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self.fail(f"the broker refused the login: {reason_code}")
            return
        client.subscribe(self.ack_topic, qos=1)  # first: an ack must not come before we listen

    def on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        if any(code.is_failure for code in reason_codes):
            self.fail(f"the broker refused the subscription to {self.ack_topic}: {reason_codes[0]}")
            return
        log.info("sending %s %s to %s", self.args.command, self.command["command_id"], self.command_topic)
        client.publish(self.command_topic, json.dumps(self.command), qos=1, retain=False)

    def on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        if self.v5 and reason_code.is_failure:  # MQTT 3.1.1 cannot say: the command is then lost (a timeout)
            self.fail(f"the broker refused the command on {self.command_topic}: {reason_code}")

    def on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        try:
            ack = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(ack, dict) and ack.get("command_id") == self.command["command_id"]:
            self.ack = ack
            self.done.set()


def build_command(args: argparse.Namespace) -> dict:
    command = {"schema_version": 1, "command_id": args.command_id}
    if args.command == "reload":
        return {**command, "bundle": args.bundle}
    values = {name: getattr(args, name) for name in ("decision", "pixel", "cascade")}
    return {**command, **{name: value for name, value in values.items() if value is not None}}


def password(args: argparse.Namespace) -> str | None:
    if args.password_file is not None:
        return args.password_file.read_text(encoding="utf-8").splitlines()[0]
    return args.password if args.password is not None else os.environ.get("MQTT_PASSWORD")


def default_command_id() -> str:
    return f"cmd-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--line", required=True, help="the station's line id")
    common.add_argument("--station", required=True, help="the station id")
    common.add_argument("--command-id", default=default_command_id(), help="idempotency key [A-Za-z0-9_.:-]{1,64}")
    common.add_argument("--timeout-s", type=float, default=900, help="how long to wait for the ack (default 900)")
    common.add_argument("--host", default=env("MQTT_HOST", "localhost"), help="broker host (env MQTT_HOST)")
    common.add_argument("--port", type=int, default=int(env("MQTT_PORT", "8883")), help="broker port (MQTT_PORT)")
    common.add_argument("--cafile", default=env("MQTT_CAFILE"), help="CA that signed the broker (MQTT_CAFILE)")
    common.add_argument("--certfile", default=env("MQTT_CERTFILE"), help="client certificate, mutual TLS")
    common.add_argument("--keyfile", default=env("MQTT_KEYFILE"), help="client key, mutual TLS")
    common.add_argument("--no-tls", action="store_true", help="plain TCP (a development broker only)")
    common.add_argument("--username", default=env("MQTT_USERNAME", "operator"), help="account (MQTT_USERNAME)")
    common.add_argument("--password", help="visible to other users in ps: prefer MQTT_PASSWORD or --password-file")
    common.add_argument("--password-file", type=Path, help="file whose first line is the password")
    common.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version (default 5)")
    common.add_argument("--prefix", default="pumpinspect", help="the station's mqtt.topic_prefix")
    parser = Parser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    reload = commands.add_parser("reload", parents=[common], help="run another model bundle")
    reload.add_argument("bundle", help="absolute bundle folder on the station, or a version/folder in its watch_dir")
    thresholds = commands.add_parser("thresholds", parents=[common], help="change decision thresholds")
    thresholds.add_argument("--decision", type=float, help="classifier threshold, 0.01 to 0.99")
    thresholds.add_argument("--pixel", type=float, help="segmenter pixel threshold, 0.01 to 0.99")
    thresholds.add_argument("--cascade", type=float, help="classifier score from which the segmenter looks")
    args = parser.parse_args(argv)
    if args.command == "thresholds" and all(getattr(args, n) is None for n in ("decision", "pixel", "cascade")):
        parser.error("thresholds: give --decision, --pixel and/or --cascade")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    return CommandSender(args, build_command(args)).run()


if __name__ == "__main__":
    sys.exit(main())
