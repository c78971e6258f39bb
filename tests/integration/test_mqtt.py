"""The MQTT half of the edge runtime against a real Mosquitto broker started by each test."""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from edge.publish.broker import MosquittoBroker, ensure_broker, find_mosquitto, free_port, password_line
from edge.publish.client import LinkState, MqttPublisher
from edge.publish.config import MqttConfig
from edge.publish.watch import MessageCollector, Received, SeqTracker, watch
from shared.messages import AlertMessage, EventMessage, ResultMessage, StationState, alert_from_result
from tests.integration.mqtt_station import LINE, STATION, make_result

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs the mosquitto broker binary (apt-get install mosquitto; scripts/bootstrap.sh does it as root)",
    ),
]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A persistent broker, like a deployment's: consumers' sessions and queues survive its restart."""
    instance = MosquittoBroker(persistence=True, workdir=tmp_path / "broker").start()
    yield instance
    instance.stop()


def station_config(broker: MosquittoBroker, tmp_path: Path, **overrides: object) -> MqttConfig:
    values = {
        "host": broker.host,
        "port": broker.port,
        "outbox_path": tmp_path / "outbox.sqlite3",
        "will_delay_s": 1,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
    }
    return MqttConfig(**{**values, **overrides})


def mes(broker: MosquittoBroker, tmp_path: Path, **kwargs: object) -> MessageCollector:
    """An MES-like consumer with a persistent session (QoS 1 queue on the broker while it is away)."""
    config = station_config(broker, tmp_path)
    return MessageCollector(config, client_id="mes-test", persistent=True, **kwargs).start()


def results(messages: list[Received]) -> list[ResultMessage]:
    return [m.message for m in messages if isinstance(m.message, ResultMessage)]


def first_arrivals(collector: MessageCollector) -> list[int]:
    """Seqs in arrival order with redeliveries (same result_id) removed, as an MES sees them."""
    tracker = SeqTracker()
    return [r.seq for r in results(collector.messages("result")) if tracker.see(r) != "duplicate"]


def has_state(state: StationState) -> Callable[[list[Received]], bool]:
    return lambda messages: any(m.kind == "status" and m.message.state == state for m in messages)


def spawn_station(broker: MosquittoBroker, outbox: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.integration.mqtt_station", "--port", str(broker.port)]
    command += ["--outbox", str(outbox), *args]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(command, cwd=REPO, text=True, **pipes)


def read_until(process: subprocess.Popen[str], marker: str, timeout_s: float = 8.0) -> list[str]:
    """Lines the station printed up to and including the first one starting with ``marker``."""
    lines, deadline = [], time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline().strip()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if line.startswith(marker):
            return lines
    raise AssertionError(f"station never printed {marker!r}; got {lines}; stderr: {process.stderr.read()}")


def close_pipes(process: subprocess.Popen[str]) -> None:
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def kill_hard(process: subprocess.Popen[str]) -> None:
    """SIGKILL by PID: no clean disconnect, no flush, like a power cut of the process."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(5)
    close_pipes(process)


def test_results_and_alerts_arrive_in_order_with_their_content(broker, tmp_path):
    config = station_config(broker, tmp_path, defect_map="ng")
    collector = mes(broker, tmp_path)
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t", config_hash="h")
    publisher.start()
    sent = [make_result(publisher, index) for index in range(12)]
    defect_map = np.zeros((48, 64), np.uint8)
    for result in sent:
        publisher.publish_result(result, defect_map=defect_map)
    assert publisher.stop(timeout_s=5)
    assert collector.wait_for(lambda m: len([x for x in m if x.kind == "defect_map"]) == 4, 5)
    collector.stop()

    received = collector.messages("result")
    assert [r.message for r in received] == sent
    assert {r.content_type for r in received} == {"application/json"}
    alerts = [m.message for m in collector.messages("alert")]
    assert alerts == [alert_from_result(r) for r in sent if r.verdict.value == "NG"]
    assert all(isinstance(a, AlertMessage) and a.boxes for a in alerts)
    maps = collector.messages("defect_map")
    assert [m.user_properties["result_id"] for m in maps] == [a.result_id for a in alerts]
    assert [m.user_properties["frame_id"] for m in maps] == [a.frame_id for a in alerts]
    assert {m.content_type for m in maps} == {"image/png"}
    assert cv2.imdecode(np.frombuffer(maps[0].payload, np.uint8), cv2.IMREAD_UNCHANGED).shape == (48, 64)


def test_an_event_arrives_on_the_event_topic_with_its_content(broker, tmp_path):
    collector = MessageCollector(station_config(broker, tmp_path), LINE, STATION, kinds=["event"]).start()
    publisher = MqttPublisher(station_config(broker, tmp_path), line=LINE, station=STATION, software_version="t")
    publisher.start()
    deadline = time.monotonic() + 5
    while not publisher.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    event = EventMessage(
        line=LINE,
        station=STATION,
        time=datetime.now(timezone.utc),
        kind="worker-restarted",
        severity="warning",
        source="worker",
        reason="no progress for 10 s",
        attempt=2,
        retry_in_s=1.5,
    )
    assert publisher.publish_event(event)
    assert collector.wait_for(lambda m: bool(m), 5)
    publisher.stop(timeout_s=2)
    collector.stop()
    (received,) = collector.messages()
    assert received.topic == f"pumpinspect/{LINE}/{STATION}/event" and received.message == event
    assert (received.qos, received.retain, received.content_type) == (1, False, "application/json")
    assert publisher.counters.events_skipped == 0


def retained_status(broker: MosquittoBroker, tmp_path: Path) -> Received:
    """What a subscriber arriving now gets first on the station's status topic."""
    with MessageCollector(station_config(broker, tmp_path), LINE, STATION, kinds=["status"]) as late:
        assert late.wait_for(lambda m: bool(m), 3)
        return late.messages()[0]


def test_status_birth_is_retained_and_the_will_reports_offline_after_its_delay(broker, tmp_path):
    station = spawn_station(broker, tmp_path / "outbox.sqlite3", "--hold", "--will-delay", "2")
    try:
        read_until(station, "holding")
        watcher = MessageCollector(station_config(broker, tmp_path), LINE, STATION, kinds=["status"]).start()
        assert watcher.wait_for(has_state(StationState.ONLINE), 5), [m.message for m in watcher.messages()]
        birth = retained_status(broker, tmp_path)
        assert birth.retain and birth.message.state == StationState.ONLINE and birth.message.session == 1
        kill_hard(station)
        killed_at = time.monotonic()
        assert not watcher.wait_for(has_state(StationState.OFFLINE), 1.0), "offline before the Will delay"
        assert watcher.wait_for(has_state(StationState.OFFLINE), 6.0), [m.message for m in watcher.messages()]
        assert time.monotonic() - killed_at >= 1.5
        watcher.stop()
        will = retained_status(broker, tmp_path)
        assert will.retain and will.message.state == StationState.OFFLINE and will.message.session == 1
    finally:
        kill_hard(station)


def test_a_quick_restart_within_the_will_delay_does_not_flash_offline(broker, tmp_path):
    watcher = MessageCollector(station_config(broker, tmp_path), LINE, STATION, kinds=["status"]).start()
    outbox = tmp_path / "outbox.sqlite3"
    first = spawn_station(broker, outbox, "--hold", "--will-delay", "3")
    try:
        read_until(first, "holding")
        assert watcher.wait_for(has_state(StationState.ONLINE), 5)
    finally:
        kill_hard(first)
    second = spawn_station(broker, outbox, "--hold", "--will-delay", "3")
    try:
        read_until(second, "holding")
        assert watcher.wait_for(lambda m: sum(x.message.state == StationState.ONLINE for x in m) == 2, 5)
        time.sleep(3.5 - 0.5)  # past the first connection's Will delay
        # a birth sent before the station finished starting says "starting" (a loaded machine connects first)
        states = [(m.message.state, m.message.session) for m in watcher.messages()]
        settled = [(state, session) for state, session in states if state != StationState.STARTING]
        assert settled == [(StationState.ONLINE, 1), (StationState.ONLINE, 2)], states  # no offline: Will taken over
    finally:
        kill_hard(second)
        watcher.stop()


def test_a_broker_outage_mid_stream_loses_nothing_and_keeps_the_order(broker, tmp_path):
    collector = mes(broker, tmp_path)
    config = station_config(broker, tmp_path)
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t", config_hash="h")
    publisher.start()
    index = 0

    def publish_for(seconds: float) -> None:
        nonlocal index
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            publisher.publish_result(make_result(publisher, index))
            index += 1
            time.sleep(0.05)

    publish_for(1.0)
    broker.stop()
    publish_for(3.0)  # the line keeps running while the broker is away
    assert not publisher.connected and publisher.outbox_depth > 0
    broker.start()
    publish_for(1.0)
    assert publisher.stop(timeout_s=6)
    assert collector.wait_for(lambda m: len(first_arrivals(collector)) >= index, 6)
    collector.stop()
    assert first_arrivals(collector) == list(range(1, index + 1))
    assert publisher.counters.disconnects >= 1


def test_a_station_killed_while_the_broker_is_down_delivers_its_backlog_after_restart(broker, tmp_path):
    collector = mes(broker, tmp_path)
    outbox = tmp_path / "outbox.sqlite3"
    station = spawn_station(broker, outbox, "--count", "4", "--hold")
    try:
        read_until(station, "holding")
        assert collector.wait_for(lambda m: len(first_arrivals(collector)) == 4, 5)
        broker.stop()
        station.stdin.write("publish 6\n")
        station.stdin.flush()
        assert sum(line.startswith("enqueued") for line in read_until(station, "done")) == 6
    finally:
        kill_hard(station)  # dies with 6 results only in its outbox
    broker.start()
    restarted = spawn_station(broker, outbox, "--count", "2", "--start-index", "10")
    assert read_until(restarted, "stopped")[-1] == "stopped True"
    restarted.wait(5)
    backlog = 6 + sum(index % 3 == 0 for index in range(4, 10))  # 6 results + the alerts of the NG frames
    assert f"{backlog} message(s) in the outbox" in restarted.stderr.read()  # what the killed process left
    close_pipes(restarted)
    assert collector.wait_for(lambda m: len(first_arrivals(collector)) >= 12, 6)
    collector.stop()
    assert first_arrivals(collector) == list(range(1, 13))
    got = {r.seq: r for r in results(collector.messages("result"))}
    assert [got[seq].session for seq in (1, 10, 11, 12)] == [1, 1, 2, 2]  # session counter persisted too
    assert [got[seq].frame_id for seq in (5, 10)] == ["frame-00004", "frame-00009"]


def test_an_oversized_defect_map_is_downscaled_to_fit_not_dropped(broker, tmp_path):
    config = station_config(broker, tmp_path, defect_map="all", defect_map_max_bytes=20_000)
    collector = mes(broker, tmp_path, kinds=["defect_map"])
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t", config_hash="h")
    publisher.start()
    noise = np.random.default_rng(0).integers(0, 256, (400, 400), dtype=np.uint8)
    png = cv2.imencode(".png", noise)[1].tobytes()
    assert len(png) > 100_000
    publisher.publish_result(make_result(publisher, 1), defect_map=png)  # an OK frame: policy 'all'
    assert publisher.stop(timeout_s=5)
    assert collector.wait_for(lambda m: len(m) == 1, 5)
    collector.stop()
    received = collector.messages()[0]
    assert len(received.payload) <= 20_000
    image = cv2.imdecode(np.frombuffer(received.payload, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape[0] < 400 and image.shape[0] == image.shape[1]
    assert float(received.user_properties["scale"]) == pytest.approx(image.shape[1] / 400, abs=1e-3)


def test_credentials_are_never_logged(tmp_path, caplog):
    password = "s3cret-Pa55word"
    with MosquittoBroker(users={"station": password}, workdir=tmp_path / "broker") as secured:
        password_file = tmp_path / "mqtt-password"
        password_file.write_text(password + "\n")
        caplog.set_level(logging.DEBUG)
        good = station_config(secured, tmp_path, username="station", password_file=password_file)
        publisher = MqttPublisher(good, line=LINE, station=STATION, software_version="t", config_hash="h")
        publisher.start()
        publisher.publish_result(make_result(publisher, 1))
        assert publisher.flush(5) and publisher.counters.acked == 1
        assert publisher.stop(timeout_s=3)

        wrong = station_config(
            secured, tmp_path / "wrong", username="station", password="wrong-" + password, reconnect_min_s=0.05
        )
        refused = MqttPublisher(wrong, line=LINE, station="st2", software_version="t", config_hash="h")
        refused.start()
        deadline = time.monotonic() + 5
        while refused.link != LinkState.REFUSED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused.link == LinkState.REFUSED and not refused.connected
        refused.stop(timeout_s=0.5)

    shown = [repr(wrong), str(wrong), wrong.model_dump_json(), str(wrong.model_dump())]
    assert caplog.records and any("refused" in r.getMessage() for r in caplog.records)
    assert password not in caplog.text and all(password not in text for text in shown)


def test_an_unreachable_broker_logs_one_line_not_one_per_retry_and_never_blocks(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge.publish")
    config = MqttConfig(
        host="127.0.0.1",
        port=free_port(),
        outbox_path=tmp_path / "outbox.sqlite3",
        reconnect_min_s=0.05,
        reconnect_max_s=0.1,
    )
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t", config_hash="h")
    started = time.monotonic()
    publisher.start()
    publisher.publish_result(make_result(publisher, 1))  # an OK frame: one message
    assert time.monotonic() - started < 1.0
    time.sleep(1.5)
    assert publisher.counters.connect_failures >= 5
    assert publisher.outbox_depth == 1
    assert not publisher.stop(timeout_s=0.2)  # not flushed: the result stays on disk for the next start
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("edge.publish")]
    assert sum(line.startswith("mqtt: unreachable") for line in lines) == 1, lines
    assert len(lines) <= 4, lines


def test_mqtt_3_1_1_delivers_results_too(broker, tmp_path):
    config = station_config(broker, tmp_path, protocol="3.1.1")
    collector = MessageCollector(config, LINE, STATION, kinds=["result", "status"]).start()
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t", config_hash="h")
    publisher.start()
    sent = [make_result(publisher, index) for index in range(3)]
    for result in sent:
        publisher.publish_result(result)
    assert publisher.stop(timeout_s=5)
    assert collector.wait_for(has_state(StationState.STOPPED), 5)
    collector.stop()
    assert [m.message for m in collector.messages("result")] == sent


def test_the_embedded_broker_starts_when_no_host_is_set_and_stops_by_pid(tmp_path):
    config, embedded = ensure_broker(MqttConfig(port=0))
    assert embedded is not None and embedded.running and config.host == "127.0.0.1"
    pid = embedded.pid
    collector = MessageCollector(config, LINE, STATION, kinds=["status"]).start()
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t", data_dir=tmp_path)
    publisher.start()
    publisher.set_status("online")
    assert collector.wait_for(has_state(StationState.ONLINE), 5)
    assert (tmp_path / "mqtt" / "outbox.sqlite3").is_file()
    publisher.stop(timeout_s=2)
    collector.stop()
    embedded.close()
    assert not embedded.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def deploy_config(certs: Path, passwords: Path, state: Path, plain_port: int, tls_port: int) -> str:
    """deploy/mosquitto/mosquitto.conf with its paths and ports moved into the test's folders."""
    text = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    for old, new in {
        "/etc/mosquitto/certs/": f"{certs}/",
        "/etc/mosquitto/passwd": str(passwords),
        "/etc/mosquitto/acl": str(REPO / "deploy" / "mosquitto" / "acl"),
        "/var/lib/mosquitto/": f"{state}/",
        "listener 1883 127.0.0.1": f"listener {plain_port} 127.0.0.1",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    return text + f"user {getpass.getuser()}\n"  # as root, mosquitto would switch to a user without access


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (make-dev-ca.sh)")
def test_the_deploy_config_serves_tls_with_passwords_and_the_station_acl(tmp_path):
    certs = tmp_path / "certs"
    script = REPO / "deploy" / "mosquitto" / "make-dev-ca.sh"
    subprocess.run([str(script), str(certs), "localhost", "st1"], check=True, capture_output=True, timeout=60)
    passwords = tmp_path / "passwd"
    passwords.write_text(password_line("st1", "station-pw") + "\n" + password_line("mes", "mes-pw") + "\n")
    tls_port = free_port()
    text = deploy_config(certs, passwords, tmp_path, free_port(), tls_port)
    with MosquittoBroker(port=tls_port, config_text=text, workdir=tmp_path / "broker"):
        tls = {"ca_file": certs / "ca.crt", "cert_file": certs / "st1.crt", "key_file": certs / "st1.key"}
        common = {"host": "localhost", "port": tls_port, "tls": tls, "reconnect_min_s": 0.1, "reconnect_max_s": 0.3}
        collector = MessageCollector(MqttConfig(**common, username="mes", password="mes-pw"), kinds=["result"])
        collector.start()
        station = MqttConfig(**common, username="st1", password="station-pw", outbox_path=tmp_path / "a.db")
        own = MqttPublisher(station, line=LINE, station="st1", software_version="t", config_hash="h")
        own.start()
        own.publish_result(make_result(own, 1))
        assert own.stop(timeout_s=5) and own.counters.acked == 1
        # The same user posing as another station: the ACL refuses, the outbox drops and counts it.
        other = station.model_copy(update={"outbox_path": tmp_path / "b.db"})
        impostor = MqttPublisher(other, line=LINE, station="st2", software_version="t", config_hash="h")
        impostor.start()
        impostor.publish_result(make_result(impostor, 1))
        assert impostor.flush(5) and impostor.counters.rejected == 1
        impostor.stop(timeout_s=1)
        assert collector.wait_for(lambda m: len(m) >= 1, 3)
        time.sleep(0.2)
        collector.stop()
    assert [(m.station, m.message.seq) for m in collector.messages()] == [("st1", 1)]


def test_watch_shows_what_a_station_publishes(broker, tmp_path):
    config = station_config(broker, tmp_path)
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t", config_hash="h")
    publisher.start()
    publisher.set_status("online")
    console = Console(width=160, record=True, force_terminal=False)
    feeder = threading.Timer(0.6, lambda: [publisher.publish_result(make_result(publisher, i)) for i in range(3)])
    feeder.start()
    view = watch(config.model_copy(update={"host": None}), LINE, STATION, duration_s=2.0, console=console)
    feeder.join()
    publisher.stop(timeout_s=2)
    assert view.counts == {"result": 3, "alert": 1, "NG": 1}
    assert view.statuses[f"{LINE}/{STATION}"].state == StationState.ONLINE
    assert "ALERT" in console.export_text()
