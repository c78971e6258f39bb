"""The MQTT half of the edge runtime against a real Mosquitto broker started by each test."""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from edge.publish import dead_letters
from edge.publish.broker import MosquittoBroker, ensure_broker, find_mosquitto, free_port, password_line
from edge.publish.client import LinkState, MqttPublisher
from edge.publish.config import MqttConfig
from edge.publish.watch import LoginRefused, MessageCollector, Received, SeqTracker, watch
from shared.messages import (
    AlertMessage,
    EventMessage,
    ResultMessage,
    StationState,
    StatsMessage,
    alert_from_result,
)
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


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def outbox_rows(path: Path) -> int:
    """Messages a (running) station's outbox holds, read as another process may."""
    with closing(sqlite3.connect(path, timeout=5)) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def kill_hard(process: subprocess.Popen[str]) -> None:
    """SIGKILL by PID: no clean disconnect, no flush, like a power cut of the process."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(5)
    close_pipes(process)


def test_results_and_alerts_arrive_in_order_with_their_content(broker, tmp_path):
    config = station_config(broker, tmp_path, defect_map_policy="ng")
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


def retained_status(broker: MosquittoBroker, tmp_path: Path, config: MqttConfig | None = None) -> Received:
    """What a subscriber arriving now gets first on the station's status topic."""
    with MessageCollector(config or station_config(broker, tmp_path), LINE, STATION, kinds=["status"]) as late:
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
        assert wait_until(lambda: outbox_rows(outbox) == 0, 5)  # the station has seen the acks too (under load)
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
    config = station_config(broker, tmp_path, defect_map_policy="all", defect_map_max_bytes=20_000)
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


def test_a_watcher_whose_login_is_refused_says_so_at_once_not_after_a_timeout(tmp_path):
    with MosquittoBroker(users={"dashboard": "right"}, workdir=tmp_path / "broker") as secured:
        wrong = station_config(secured, tmp_path, username="dashboard", password="wrong")
        started = time.monotonic()
        with pytest.raises(LoginRefused, match="refused the login of 'dashboard'"):
            MessageCollector(wrong).start(timeout_s=30)
        assert time.monotonic() - started < 10  # answered by the broker, not the 30 s timeout


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
        # The same user posing as another station: the ACL refuses, the outbox keeps it as a dead letter.
        other = station.model_copy(update={"outbox_path": tmp_path / "b.db"})
        impostor = MqttPublisher(other, line=LINE, station="st2", software_version="t", config_hash="h")
        impostor.start()
        impostor.publish_result(make_result(impostor, 1))
        assert impostor.flush(5) and impostor.counters.rejected == 1 and impostor.dead_letter_depth == 1
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
    event = EventMessage(
        line=LINE,
        station=STATION,
        time=datetime.now(timezone.utc),
        kind="model-reloaded",
        severity="info",
        reason="classifier: a@0.1.0 -> a@0.1.1",
    )

    def feed() -> None:
        for i in range(3):
            publisher.publish_result(make_result(publisher, i))
        publisher.publish_event(event)

    feeder = threading.Timer(0.6, feed)
    feeder.start()
    view = watch(config.model_copy(update={"host": None}), LINE, STATION, duration_s=2.0, console=console)
    feeder.join()
    publisher.stop(timeout_s=2)
    assert view.counts == {"result": 3, "alert": 1, "NG": 1, "event": 1}
    assert view.statuses[f"{LINE}/{STATION}"].state == StationState.ONLINE
    text = console.export_text()
    assert "ALERT" in text and "model-reloaded: classifier: a@0.1.0 -> a@0.1.1" in text


# --- refused publishes: dead letters, events, degraded (issue 8, item 3) ---------------------------

PASSWORDS = {"st1": "st1-pw", "st2": "st2-pw", "mes": "mes-pw"}


def acl_text(station_writes: str) -> str:
    """User st1 writes ``station_writes`` topics of station st1 (any line); st2 may write nothing; mes reads all."""
    lines = ["user st1", *(f"topic write pumpinspect/+/st1/{kind}" for kind in station_writes.split())]
    return "\n".join([*lines, "user mes", "topic read pumpinspect/#", ""])


DENY_RESULTS = "status event stats"  # a station account whose ACL forgot result, alert and defect_map
ALLOW_ALL = "status event stats result alert defect_map"


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, Path]]:
    """A broker with passwords and a topic ACL (file rewritten + SIGHUP to change it)."""
    acl = tmp_path / "acl"
    acl.write_text(acl_text(DENY_RESULTS))
    instance = MosquittoBroker(users=PASSWORDS, workdir=tmp_path / "acl-broker", extra_config=f"acl_file {acl}\n")
    instance.start()
    yield instance, acl
    instance.stop()


def as_user(broker: MosquittoBroker, tmp_path: Path, user: str, **overrides: object) -> MqttConfig:
    return station_config(broker, tmp_path, **{"username": user, "password": PASSWORDS[user], **overrides})


def kinds_of(collector: MessageCollector, kind: str) -> list:
    return [m.message for m in collector.messages(kind)]


def test_refused_results_become_dead_letters_one_event_per_burst_and_a_degraded_status(acl_broker, tmp_path):
    broker, acl = acl_broker
    mes_config = as_user(broker, tmp_path, "mes")
    watcher = MessageCollector(mes_config, LINE, STATION, client_id="mes-acl", persistent=True).start()
    publisher = MqttPublisher(as_user(broker, tmp_path, "st1"), line=LINE, station=STATION, software_version="t")
    publisher.start()
    publisher.set_status("online")
    sent = [make_result(publisher, index) for index in range(6)]  # frames 0 and 3 are NG: 6 results + 2 alerts
    for result in sent:
        publisher.publish_result(result)
    assert publisher.flush(5)  # the outbox empties: refused messages left it for the dead letters
    assert (publisher.counters.rejected, publisher.dead_letter_depth, publisher.counters.acked) == (8, 8, 0)
    degraded = has_state(StationState.DEGRADED)
    assert watcher.wait_for(lambda m: degraded(m) and len(kinds_of(watcher, "event")) >= 2, 5), watcher.messages()
    time.sleep(0.3)  # nothing more may come: one event per refused topic, not one per message
    events = kinds_of(watcher, "event")
    topics = {kind: f"pumpinspect/{LINE}/{STATION}/{kind}" for kind in ("result", "alert")}
    assert sorted((e.kind.value, e.severity.value, e.ref) for e in events) == [
        ("publish-refused", "error", topics["alert"]),
        ("publish-refused", "error", topics["result"]),
    ]
    assert all("Not authorized" in e.reason and "dead letter" in e.reason for e in events)
    status = retained_status(broker, tmp_path / "late", config=mes_config).message
    assert status.state == StationState.DEGRADED and len(status.problems) == 2
    assert any(topics["result"] in p and "Not authorized" in p for p in status.problems)
    assert publisher.state == StationState.ONLINE  # what the runtime set; the status shows degraded over it
    assert not watcher.messages("result") and not watcher.messages("alert")
    stats_at = len(watcher.messages("stats"))
    now = datetime.now(timezone.utc)
    no_latency = {"latency_p50_ms": None, "latency_p99_ms": None}
    stats = StatsMessage(line=LINE, station=STATION, timestamp=now, uptime_s=1, fps=0, **no_latency)
    assert publisher.publish_stats(stats)
    assert watcher.wait_for(lambda m: len([x for x in m if x.kind == "stats"]) > stats_at, 3)
    published = kinds_of(watcher, "stats")[-1]
    assert (published.outbox_refused, published.dead_letters, published.errors) == (8, 8, 8)

    # The ACL is fixed: the broker accepts again, the status says online, one event per topic says so.
    acl.write_text(acl_text(ALLOW_ALL))
    os.kill(broker.pid, signal.SIGHUP)  # mosquitto re-reads its ACL file
    time.sleep(0.5)
    publisher.publish_result(make_result(publisher, 6))  # NG: a result and an alert, both accepted now
    assert publisher.flush(5) and publisher.counters.acked == 2

    def accepted(messages: list[Received]) -> bool:
        return sum(x.kind == "event" and x.message.kind.value == "publish-accepted" for x in messages) == 2

    assert watcher.wait_for(accepted, 5), kinds_of(watcher, "event")
    assert watcher.wait_for(lambda m: m[-1].kind != "status" or m[-1].message.state == StationState.ONLINE, 3)
    assert retained_status(broker, tmp_path / "late", config=mes_config).message.state == StationState.ONLINE

    # An operator replays the dead letters while the station runs (`pump-edge outbox --requeue`): nothing is lost.
    moved, said = dead_letters.requeue(publisher.outbox_path, wait_s=8)
    assert moved == 8 and "running station" in said, said
    assert publisher.flush(5) and publisher.counters.acked == 10 and publisher.dead_letter_depth == 0
    assert publisher.stop(timeout_s=3)
    assert watcher.wait_for(lambda m: len(first_arrivals(watcher)) == 7, 5)
    watcher.stop()
    assert first_arrivals(watcher) == [7, 1, 2, 3, 4, 5, 6]  # the replayed ones late: the gap closes


def test_a_long_refusal_burst_is_summed_up_every_interval(acl_broker, tmp_path):
    broker, _ = acl_broker
    watcher = MessageCollector(as_user(broker, tmp_path, "mes"), LINE, STATION, kinds=["event"]).start()
    config = as_user(broker, tmp_path, "st1", refusal_summary_s=0.5, defect_map_policy="never")
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t")
    publisher.start()
    for index in (1, 2, 4, 5, 7, 8, 10, 11):  # OK frames only: one topic
        publisher.publish_result(make_result(publisher, index))
        time.sleep(0.15)
    assert publisher.flush(5)
    assert watcher.wait_for(lambda m: sum("more message" in x.message.reason for x in m) >= 1, 3)
    time.sleep(0.8)
    publisher.stop(timeout_s=2)
    watcher.stop()
    events = kinds_of(watcher, "event")
    assert "refused a message" in events[0].reason
    summaries = [e for e in events[1:] if "more message" in e.reason]
    assert len(events) == 1 + len(summaries) and 1 <= len(summaries) <= 3  # not 8 events for 8 refusals
    counted = [int(e.reason.split("refused ")[1].split(" more")[0]) for e in summaries]
    assert 1 + sum(counted) == 8  # every refusal is accounted for


def test_under_mqtt_3_1_1_a_refused_result_is_lost_silently_as_documented(acl_broker, tmp_path):
    broker, _ = acl_broker
    config = as_user(broker, tmp_path, "st1", protocol="3.1.1")
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t")
    publisher.start()
    publisher.publish_result(make_result(publisher, 1))
    assert publisher.flush(5)
    assert (publisher.counters.acked, publisher.counters.rejected, publisher.dead_letter_depth) == (1, 0, 0)
    publisher.stop(timeout_s=2)


def test_doctor_checks_the_acl_with_a_test_publish(acl_broker, tmp_path):
    from edge.doctor import FAIL, OK, WARN, probe_broker

    broker, _ = acl_broker
    watcher = MessageCollector(as_user(broker, tmp_path, "mes"), LINE, "+", kinds=["event", "status"]).start()
    status, detail = probe_broker(as_user(broker, tmp_path, "st1"), LINE, "st1", 3)
    assert status == OK and "test publish" in detail and "accepted" in detail, detail
    status, detail = probe_broker(as_user(broker, tmp_path, "st2"), LINE, "st2", 3)
    assert status == FAIL and "refused a test publish" in detail and "Not authorized" in detail, detail
    wrong = as_user(broker, tmp_path, "st1", password="nope")
    status, detail = probe_broker(wrong, LINE, "st1", 3)
    assert status == FAIL and "refused the connection" in detail, detail
    legacy = as_user(broker, tmp_path, "st2", protocol="3.1.1")
    status, detail = probe_broker(legacy, LINE, "st2", 3)
    assert status == WARN and "not checked" in detail, detail
    assert watcher.wait_for(lambda m: bool(m), 3)
    time.sleep(0.3)
    watcher.stop()
    (probe,) = watcher.messages()  # st1's probe; the retained status was never touched
    assert probe.kind == "event" and not probe.retain and probe.message.kind.value == "doctor-probe"


def test_pump_edge_run_once_exits_5_when_the_broker_refused_results(acl_broker, tmp_path):
    from edge.config import EdgeSettings
    from edge.runtime.station import EXIT_REFUSED, Station
    from shared.config import GeometryConfig
    from tests.edge.fixtures import make_threshold_bundles

    broker, _ = acl_broker
    geometry = GeometryConfig(crop_px=0, tile_px=128, patch_px=64)
    classifier, segmenter = make_threshold_bundles(tmp_path / "bundles", geometry)
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        cv2.imwrite(str(frames / f"f{index}.png"), np.full((256, 256), 90, np.uint8))
    settings = EdgeSettings(
        line_id=LINE,
        station_id="st1",
        data_dir=tmp_path / "data",
        geometry=geometry,
        bundles={"classifier": classifier, "segmenter": segmenter},
        source={"spec": f"folder:{frames}"},
        backend={"kind": "onnxruntime", "ort_threads": 1},
        mqtt=as_user(broker, tmp_path, "st1", outbox_path=None),
    )
    station = Station(settings, once=True)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(station.run()))
    thread.start()
    thread.join(60)
    assert codes == [EXIT_REFUSED] == [5]
    assert station.publisher.counters.rejected == 2 and station.publisher.dead_letter_depth == 2


# --- a retained status that tells the truth (issue 8, item 8) -------------------------------------


def retained_statuses(broker: MosquittoBroker, tmp_path: Path, wait_s: float = 2.0) -> list[Received]:
    """The retained status a subscriber arriving now gets (waiting up to ``wait_s``; none: an empty list)."""
    with MessageCollector(station_config(broker, tmp_path), LINE, STATION, kinds=["status"]) as late:
        if late.wait_for(lambda m: bool(m), wait_s):
            time.sleep(0.2)
        return [m for m in late.messages() if m.retain]


@pytest.mark.parametrize("lease_s", [0, 3], ids=["without-lease-the-reported-failure", "with-lease"])
def test_a_station_killed_while_the_broker_was_down_does_not_stay_online(tmp_path, lease_s):
    crashed = MosquittoBroker(persistence=True, workdir=tmp_path / "broker", extra_config="autosave_interval 1\n")
    crashed.start()
    station = spawn_station(crashed, tmp_path / "outbox.sqlite3", "--hold", "--status-expiry", str(lease_s))
    try:
        read_until(station, "holding")
        assert retained_status(crashed, tmp_path).message.state == StationState.ONLINE
        seen_online_at, database = time.time(), crashed.workdir / "mosquitto.db"

        def saved() -> bool:  # the broker saved its database (autosave_interval 1 s), retained online included
            return database.is_file() and database.stat().st_mtime > seen_online_at + 0.1

        assert wait_until(saved, 5)
        crashed.kill()  # broker crash: the station's session, and its Will, die with it
        kill_hard(station)  # the station dies while the broker is down: it never registers a Will again
        crashed.start()  # same port, same persistence file
        (restored,) = retained_statuses(crashed, tmp_path)
        assert restored.message.state == StationState.ONLINE  # the broker restored the online it had saved
        if lease_s == 0:  # the reported failure, still what a status without a lease does
            time.sleep(lease_s + 3.5)
            (still,) = retained_statuses(crashed, tmp_path)
            assert still.message.state == StationState.ONLINE and still.message.valid_until is None
            return
        valid_until = restored.message.valid_until
        assert valid_until is not None and 0 < restored.message_expiry_s <= lease_s
        assert valid_until <= datetime.now(timezone.utc) + timedelta(seconds=lease_s)
        time.sleep(max(0.0, (valid_until - datetime.now(timezone.utc)).total_seconds()) + 0.5)
        assert retained_statuses(crashed, tmp_path) == []  # expired on the broker: the MES presumes it gone
    finally:
        kill_hard(station)
        crashed.close()


def test_after_a_broker_crash_the_station_publishes_its_birth_again_and_its_will_still_works(broker, tmp_path):
    station = spawn_station(broker, tmp_path / "outbox.sqlite3", "--hold", "--will-delay", "1")
    try:
        read_until(station, "holding")
        assert retained_status(broker, tmp_path).message.state == StationState.ONLINE
        broker.kill()
        crashed_at = datetime.now(timezone.utc)
        time.sleep(0.5)
        broker.start()
        watcher = MessageCollector(station_config(broker, tmp_path), LINE, STATION, kinds=["status"]).start()

        def reborn(messages: list[Received]) -> bool:
            return any(x.message.state == StationState.ONLINE and x.message.heartbeat_at > crashed_at for x in messages)

        assert watcher.wait_for(reborn, 8), [m.message for m in watcher.messages()]
        birth = retained_status(broker, tmp_path).message
        assert birth.state == StationState.ONLINE and birth.heartbeat_at > crashed_at and birth.session == 1
        kill_hard(station)
        assert watcher.wait_for(has_state(StationState.OFFLINE), 6), [m.message for m in watcher.messages()]
        watcher.stop()
        will = retained_status(broker, tmp_path).message
        assert will.state == StationState.OFFLINE and will.valid_until is None  # the Will of the new connection
    finally:
        kill_hard(station)


def test_a_live_status_is_renewed_as_a_heartbeat_with_a_message_expiry_and_a_final_one_has_none(broker, tmp_path):
    watcher = MessageCollector(station_config(broker, tmp_path), LINE, STATION, kinds=["status"]).start()
    config = station_config(broker, tmp_path, status_expiry_s=3)
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="t")
    publisher.start()
    publisher.set_status("online")

    def online(messages: list[Received]) -> list[Received]:
        return [x for x in messages if x.message.state == StationState.ONLINE]

    assert watcher.wait_for(lambda m: len(online(m)) >= 3, 5)  # birth/state change + heartbeats every 1 s
    publisher.stop(timeout_s=2)
    assert watcher.wait_for(has_state(StationState.STOPPED), 3)
    watcher.stop()
    beats = online(watcher.messages())
    assert [b.message.timestamp for b in beats] == [beats[0].message.timestamp] * len(beats)  # same state...
    stamps = [b.message.heartbeat_at for b in beats]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # ...renewed
    assert all(0 < b.message_expiry_s <= 3 and b.message.valid_until > b.message.heartbeat_at for b in beats)
    stopped = watcher.messages()[-1]
    assert stopped.message.state == StationState.STOPPED
    assert (stopped.message_expiry_s, stopped.message.valid_until) == (None, None)
