"""The broker accounts of deploy/mosquitto (mosquitto.conf + acl) against a real Mosquitto.

One broker per module runs the deploy config with development certificates from
deploy/mosquitto/make-dev-ca.sh (ports and paths moved into a temp folder by test_mqtt's
``deploy_config``); a second one runs it with mutual TLS switched on. Each account's rights are
checked from the outside, as MQTT 5 clients see them: a refused QoS 1 publish comes back
"Not authorized" in its PUBACK, and a read that is not granted simply never arrives. "Nothing
arrives" is checked against a control message published after the forbidden one, which the same
subscriber must receive (one broker delivers to one client in order).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.publish.broker import MosquittoBroker, find_mosquitto, free_port, password_line
from edge.publish.client import MqttPublisher
from edge.publish.config import MqttConfig
from tests.integration.mqtt_station import make_result
from tests.integration.test_mqtt import REPO, deploy_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs the mosquitto broker binary (apt-get install mosquitto; scripts/bootstrap.sh does it as root)",
    ),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (make-dev-ca.sh)"),
]

LINE = "line1"
PASSWORDS = {"st1": "st1-pw", "st2": "st2-pw", "mes": "mes-pw", "operator": "operator-pw", "dashboard": "dash-pw"}
STATION_TOPICS = ("status", "result", "alert", "defect_map", "stats", "event", "cmd/ack")
HOST = "127.0.0.1"  # the broker certificate is valid for 127.0.0.1 (make-dev-ca.sh)
WAIT_S = 5.0
NOT_AUTHORIZED = "Not authorized"


def topic(station: str, kind: str) -> str:
    return f"pumpinspect/{LINE}/{station}/{kind}"


@dataclass(frozen=True)
class Deployment:
    """A running broker with the deploy config: its ports and the development PKI."""

    tls_port: int
    loopback_port: int
    certs: Path
    mutual_tls: bool


def make_certificates(out: Path, *clients: str) -> Path:
    script = REPO / "deploy" / "mosquitto" / "make-dev-ca.sh"
    subprocess.run([str(script), str(out), "localhost", *clients], check=True, capture_output=True, timeout=120)
    return out


def start_deployment(root: Path, certs: Path, mutual_tls: bool) -> tuple[MosquittoBroker, Deployment]:
    passwords = root / "passwd"
    passwords.write_text("".join(password_line(user, pw) + "\n" for user, pw in PASSWORDS.items()))
    tls_port, loopback_port = free_port(), free_port()
    text = deploy_config(certs, passwords, root, loopback_port, tls_port)
    if mutual_tls:
        for option in ("require_certificate true", "use_identity_as_username true"):
            assert f"#{option}" in text, option
            text = text.replace(f"#{option}", option)
    broker = MosquittoBroker(port=tls_port, config_text=text, workdir=root / "broker").start()
    return broker, Deployment(tls_port, loopback_port, certs, mutual_tls)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("pki"), "st1", "st2")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Deployment]:
    broker, deployed = start_deployment(tmp_path_factory.mktemp("deploy"), certs, mutual_tls=False)
    yield deployed
    broker.close()


@pytest.fixture(scope="module")
def mtls_deployment(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Deployment]:
    broker, deployed = start_deployment(tmp_path_factory.mktemp("deploy-mtls"), certs, mutual_tls=True)
    yield deployed
    broker.close()


class Account:
    """One MQTT 5 client: its CONNACK, the PUBACK of each QoS 1 publish and the topics it received."""

    def __init__(self, port: int, *, user: str | None = None, password: str | None = None, tls: dict | None = None):
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls is not None:
            self.client.tls_set(**tls)
        self.port = port
        self.connack: ReasonCode | None = None
        self.topics: list[str] = []
        self._connected = threading.Event()
        self._acks: dict[int, str] = {}
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: None

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self.connack = reason_code
        self._connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        with self._lock:
            self._acks[mid] = str(reason_code)

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        with self._lock:
            self.topics.append(message.topic)

    def connect(self) -> ReasonCode | None:
        """The CONNACK's reason code; None when the connection broke before one came (TLS refused)."""
        try:
            self.client.connect(HOST, self.port, keepalive=10)
        except (OSError, ssl.SSLError):
            return None
        self.client.loop_start()
        self._connected.wait(WAIT_S)
        return self.connack

    @property
    def connected(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str, payload: bytes = b"{}") -> str:
        """QoS 1 publish; the broker's verdict from the PUBACK ("Not authorized" when the ACL refuses)."""
        info = self.client.publish(topic, payload, qos=1)
        assert wait_until(lambda: info.mid in self._acks), f"no PUBACK for {topic}"
        return self._acks[info.mid]

    def subscribe(self, *topics: str) -> None:
        for name in topics:
            result, _ = self.client.subscribe(name, qos=1)
            assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.2)  # let the SUBACKs land before anything is published

    def received(self) -> list[str]:
        with self._lock:
            return list(self.topics)

    def wait_for(self, name: str) -> list[str]:
        """Everything received up to and including ``name`` (fails when it never arrives)."""
        assert wait_until(lambda: name in self.received()), f"{name} never arrived; got {self.received()}"
        topics = self.received()
        return topics[: topics.index(name) + 1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def connect(deployment: Deployment) -> Iterator[Callable[..., Account]]:
    """connect(user) -> a connected account on the TLS listener; connect(None, port=...) for anonymous."""
    opened: list[Account] = []

    def _connect(user: str | None, password: str | None = None, *, port: int | None = None) -> Account:
        tls = {"ca_certs": str(deployment.certs / "ca.crt")} if port is None else None
        password = PASSWORDS.get(user or "") if password is None else password
        account = Account(port or deployment.tls_port, user=user, password=password, tls=tls)
        opened.append(account)
        account.connect()
        return account

    yield _connect
    for account in opened:
        account.close()


# --- authentication ---------------------------------------------------------------------------------


def test_an_anonymous_client_is_refused_on_the_tls_listener(connect):
    anonymous = connect(None)
    assert anonymous.connack is not None and anonymous.connack.is_failure, anonymous.connack


def test_a_wrong_password_or_an_unknown_user_is_refused(connect):
    for user, password in (("st1", "st2-pw"), ("mes", "wrong"), ("ghost", "ghost-pw"), ("operator", "")):
        account = connect(user, password)
        assert account.connack is not None and account.connack.is_failure, (user, account.connack)
    assert connect("st1").connected


# --- the MES: reads, never writes -------------------------------------------------------------------


def test_the_mes_reads_every_station_but_cannot_publish_anything(connect):
    mes, station = connect("mes"), connect("st1")
    mes.subscribe("pumpinspect/#")
    forbidden = [
        topic("st1", "cmd/reload"),
        topic("st2", "cmd/thresholds"),
        topic("st1", "result"),
        topic("mes", "result"),  # the station patterns name no account: mes denies itself its own name
        topic("mes", "cmd/ack"),
        "pumpinspect/anything",
        "elsewhere/entirely",
    ]
    assert {name: mes.publish(name) for name in forbidden} == dict.fromkeys(forbidden, NOT_AUTHORIZED)
    assert station.publish(topic("st1", "result")) != NOT_AUTHORIZED
    assert mes.wait_for(topic("st1", "result")) == [topic("st1", "result")]


# --- stations: their own topics, their own commands -------------------------------------------------


def test_a_station_writes_its_six_topics_and_its_command_acks(connect):
    station = connect("st1")
    assert NOT_AUTHORIZED not in {station.publish(topic("st1", kind)) for kind in STATION_TOPICS}


def test_a_station_cannot_write_another_stations_topics_or_command_anyone(connect):
    station = connect("st1")
    forbidden = [topic("st2", kind) for kind in STATION_TOPICS]
    forbidden += [topic("st1", "cmd/reload"), topic("st2", "cmd/reload"), "pumpinspect/other/st1/x"]
    assert {name: station.publish(name) for name in forbidden} == dict.fromkeys(forbidden, NOT_AUTHORIZED)


def test_a_station_reads_only_its_own_commands(connect):
    station, operator = connect("st1"), connect("operator")
    station.subscribe(topic("st2", "cmd/#"), topic("st1", "cmd/#"), topic("st2", "result"), "pumpinspect/#")
    assert operator.publish(topic("st2", "cmd/reload")) != NOT_AUTHORIZED
    assert connect("st2").publish(topic("st2", "result")) != NOT_AUTHORIZED
    assert operator.publish(topic("st1", "cmd/reload")) != NOT_AUTHORIZED
    assert station.wait_for(topic("st1", "cmd/reload")) == [topic("st1", "cmd/reload")]


# --- operators: commands and their acks -------------------------------------------------------------


def test_the_operator_commands_any_station_and_reads_the_acks(connect):
    operator, st1, st2 = connect("operator"), connect("st1"), connect("st2")
    st1.subscribe(topic("st1", "cmd/#"))
    st2.subscribe(topic("st2", "cmd/#"))
    operator.subscribe("pumpinspect/+/+/cmd/ack")
    assert operator.publish(topic("st1", "cmd/reload")) != NOT_AUTHORIZED
    assert operator.publish(topic("st2", "cmd/thresholds")) != NOT_AUTHORIZED
    st1.wait_for(topic("st1", "cmd/reload"))
    st2.wait_for(topic("st2", "cmd/thresholds"))
    assert st1.publish(topic("st1", "cmd/ack")) != NOT_AUTHORIZED
    assert operator.wait_for(topic("st1", "cmd/ack")) == [topic("st1", "cmd/ack")]


def test_the_operator_neither_writes_nor_reads_results(connect):
    operator, station = connect("operator"), connect("st1")
    operator.subscribe("pumpinspect/#")
    forbidden = [topic("st1", "result"), topic("st1", "status"), topic("operator", "result")]
    assert {name: operator.publish(name) for name in forbidden} == dict.fromkeys(forbidden, NOT_AUTHORIZED)
    for kind in ("result", "alert", "defect_map", "stats", "status"):
        station.publish(topic("st1", kind))
    assert operator.wait_for(topic("st1", "status")) == [topic("st1", "status")]


def test_the_dashboard_reads_statuses_and_alerts_and_publishes_nothing(connect):
    dashboard, station = connect("dashboard"), connect("st1")
    dashboard.subscribe("pumpinspect/#")
    forbidden = [topic("st1", "cmd/reload"), topic("st1", "status"), topic("dashboard", "status")]
    assert {name: dashboard.publish(name) for name in forbidden} == dict.fromkeys(forbidden, NOT_AUTHORIZED)
    for kind in ("result", "alert"):
        station.publish(topic("st1", kind))
    assert dashboard.wait_for(topic("st1", "alert")) == [topic("st1", "alert")]


# --- the loopback listener: a health check, nothing more --------------------------------------------


def test_loopback_anonymous_clients_read_sys_and_nothing_else(connect, deployment):
    health = connect(None, port=deployment.loopback_port)
    assert health.connected, health.connack
    health.subscribe("$SYS/broker/uptime", "pumpinspect/#")
    assert health.wait_for("$SYS/broker/uptime")
    forbidden = [topic("st1", "cmd/reload"), topic("st1", "result"), "$SYS/broker/uptime", "anything"]
    assert {name: health.publish(name) for name in forbidden} == dict.fromkeys(forbidden, NOT_AUTHORIZED)
    assert connect("st1").publish(topic("st1", "result")) != NOT_AUTHORIZED
    time.sleep(0.3)
    assert not [name for name in health.received() if name.startswith("pumpinspect/")]


def test_loopback_refuses_an_account_name_without_its_password(connect, deployment):
    for user, password in (("operator", ""), ("operator", "guess"), ("mes", "st1-pw")):
        impostor = connect(user, password, port=deployment.loopback_port)
        assert impostor.connack is not None and impostor.connack.is_failure, (user, impostor.connack)


# --- mutual TLS (the commented option of mosquitto.conf, switched on) -------------------------------


def mtls_account(deployment: Deployment, cert: str | None, ca: Path | None = None) -> Account:
    tls = {"ca_certs": str(deployment.certs / "ca.crt")}
    if cert is not None:
        folder = ca or deployment.certs
        tls |= {"certfile": str(folder / f"{cert}.crt"), "keyfile": str(folder / f"{cert}.key")}
    account = Account(deployment.tls_port, tls=tls)
    account.connect()
    return account


def test_with_mutual_tls_the_certificate_cn_is_the_station_account(mtls_deployment):
    station = mtls_account(mtls_deployment, "st1")
    try:
        assert station.connected, station.connack
        assert station.publish(topic("st1", "result")) != NOT_AUTHORIZED
        assert station.publish(topic("st2", "result")) == NOT_AUTHORIZED
        assert station.publish(topic("st1", "cmd/reload")) == NOT_AUTHORIZED
    finally:
        station.close()


def test_with_mutual_tls_a_station_publisher_delivers_without_a_password(mtls_deployment, tmp_path):
    certs = mtls_deployment.certs
    tls = {"ca_file": certs / "ca.crt", "cert_file": certs / "st2.crt", "key_file": certs / "st2.key"}
    config = MqttConfig(host=HOST, port=mtls_deployment.tls_port, tls=tls, outbox_path=tmp_path / "outbox.db")
    publisher = MqttPublisher(config, line=LINE, station="st2", software_version="t", config_hash="h")
    publisher.start()
    publisher.publish_result(make_result(publisher, 1))
    assert publisher.stop(timeout_s=5) and publisher.counters.acked == 1 and publisher.counters.rejected == 0


def test_with_mutual_tls_a_client_without_a_certificate_is_refused(mtls_deployment):
    bare = mtls_account(mtls_deployment, None)
    try:
        assert not bare.connected, bare.connack
    finally:
        bare.close()


def test_with_mutual_tls_a_certificate_from_another_ca_is_refused(mtls_deployment, tmp_path):
    rogue = make_certificates(tmp_path / "rogue-ca", "st1")
    impostor = mtls_account(mtls_deployment, "st1", ca=rogue)
    try:
        assert not impostor.connected, impostor.connack
    finally:
        impostor.close()
