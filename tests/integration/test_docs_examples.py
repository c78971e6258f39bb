"""The MES examples of docs/examples/ against a real Mosquitto with the deploy config, and the guides' links.

One broker per module runs deploy/mosquitto/{mosquitto.conf,acl} with development certificates
(``make_certificates`` and ``start_deployment`` of test_broker_accounts: accounts st1, st2, mes,
operator, dashboard). The examples run as subprocesses, as an MES developer runs them, with the
password in the environment. Results are published as the station account st1; commands are
answered by a real station (threshold bundles, an empty watched folder: it idles) logged in as st1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edge.publish.broker import MosquittoBroker, find_mosquitto
from edge.publish.config import MqttConfig
from edge.publish.watch import MessageCollector
from edge.runtime.station import EXIT_OK
from shared.messages import EventKind, PatchSummary, ResultMessage, StationState, Verdict
from tests.integration.test_broker_accounts import (
    HOST,
    NOT_AUTHORIZED,
    PASSWORDS,
    Account,
    Deployment,
    make_certificates,
    start_deployment,
    topic,
)
from tests.integration.test_hot_reload import Running, new_version
from tests.integration.test_mqtt import REPO, has_state, station_config
from tests.integration.test_station import bundles, settings_for  # noqa: F401 - bundles is a fixture

pytestmark = pytest.mark.integration
needs_broker = [
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs the mosquitto broker binary (apt-get install mosquitto; scripts/bootstrap.sh does it as root)",
    ),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (make-dev-ca.sh)"),
]
EXAMPLES = REPO / "docs" / "examples"
GUIDES = (REPO / "deploy" / "README.md", REPO / "docs" / "mqtt.md", EXAMPLES / "README.md")
STATION = "st1"  # the station's id is its broker account (deploy/mosquitto/acl)


def broker_test(function):  # noqa: ANN001, ANN201
    for mark in needs_broker:
        function = mark(function)
    return function


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MosquittoBroker, Deployment]]:
    certs = make_certificates(tmp_path_factory.mktemp("pki"))
    broker, deployment = start_deployment(tmp_path_factory.mktemp("deploy"), certs, mutual_tls=False)
    yield broker, deployment
    broker.close()


def example_env(deployment: Deployment, user: str) -> dict[str, str]:
    """What the examples' README tells a user to set: broker, CA, account; the password not on the command line."""
    return {
        **os.environ,
        "MQTT_HOST": HOST,
        "MQTT_PORT": str(deployment.tls_port),
        "MQTT_CAFILE": str(deployment.certs / "ca.crt"),
        "MQTT_USERNAME": user,
        "MQTT_PASSWORD": PASSWORDS[user],
    }


def station_account(deployment: Deployment) -> Account:
    account = Account(
        deployment.tls_port,
        user=STATION,
        password=PASSWORDS[STATION],
        tls={"ca_certs": str(deployment.certs / "ca.crt")},
    )
    assert account.connect() is not None and account.connected, account.connack
    return account


def result_payload(seq: int, session: int = 1) -> bytes:
    now = datetime.now(timezone.utc)
    return (
        ResultMessage(
            result_id=f"line1:{STATION}:{session}:{seq}",
            seq=seq,
            session=session,
            line="line1",
            station=STATION,
            frame_id=f"frame-{seq:05d}",
            source="synthetic",
            captured_at=now,
            processed_at=now,
            frame_width_px=640,
            frame_height_px=480,
            verdict=Verdict.OK,
            patches=PatchSummary(count=64, max_score=0.1, flagged=0),
            latency_ms=12.5,
        )
        .model_dump_json()
        .encode()
    )


def publish_results(station: Account, seqs: list[int]) -> None:
    for seq in seqs:
        assert station.publish(topic(STATION, "result"), result_payload(seq)) != NOT_AUTHORIZED


def run_example(name: str, args: list[str], env: dict[str, str], timeout_s: float = 30) -> subprocess.CompletedProcess:
    command = [sys.executable, str(EXAMPLES / name), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- mes_subscriber.py --------------------------------------------------------------------------------------


@broker_test
def test_the_mes_subscriber_reports_exactly_the_gap_and_handles_a_redelivered_result_once(deployed, tmp_path):
    _, deployment = deployed
    env = example_env(deployment, "mes")
    state = tmp_path / "mes-state.json"
    common = ["--client-id", "mes-docs-test", "--kinds", "result", "--state-file", str(state), "--timeout-s", "20"]
    station = station_account(deployment)
    try:
        # First run: sees seq 1 and 2, then exits; its persistent session stays on the broker.
        log = tmp_path / "first.log"
        with open(log, "w") as stderr:
            first = subprocess.Popen(
                [sys.executable, str(EXAMPLES / "mes_subscriber.py"), *common, "--max-messages", "2"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            deadline = time.monotonic() + 15
            while "subscribed" not in log.read_text() and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "subscribed" in log.read_text(), log.read_text()
            publish_results(station, [1, 2])
            out, _ = first.communicate(timeout=20)
        assert first.returncode == 0, log.read_text()
        assert [(line["type"], line["seq"]) for line in json_lines(out)] == [("result", 1), ("result", 2)]
        # While the MES is away: the station sends 2 again (its ack was lost), then 3, 5, 5 again, 6 (4 is lost).
        publish_results(station, [2, 3, 5, 5, 6])
    finally:
        station.close()
    second = run_example("mes_subscriber.py", [*common, "--max-messages", "5"], env)
    assert second.returncode == 0, second.stderr
    lines = json_lines(second.stdout)
    assert [(line["type"], line["seq"]) for line in lines if line["type"] != "gap"] == [
        ("duplicate", 2),
        ("result", 3),
        ("result", 5),
        ("duplicate", 5),
        ("result", 6),
    ]
    gaps = [line for line in lines if line["type"] == "gap"]
    assert gaps == [
        {
            "type": "gap",
            "level": "warning",
            "line": "line1",
            "station": STATION,
            "first_missing": 4,
            "last_missing": 4,
            "count": 1,
        }
    ]
    assert lines.index(gaps[0]) == 2  # reported right before the result after the gap
    assert lines[1]["payload"]["result_id"] == f"line1:{STATION}:1:3"


@broker_test
def test_the_mes_subscriber_exits_2_when_the_broker_refuses_its_login(deployed):
    _, deployment = deployed
    env = {**example_env(deployment, "mes"), "MQTT_PASSWORD": "wrong"}
    refused = run_example("mes_subscriber.py", ["--timeout-s", "10"], env)
    assert refused.returncode == 2, refused.stderr
    assert "refused the login" in refused.stderr


# --- send_command.py against a real station ------------------------------------------------------------------


@pytest.fixture(scope="module")
def station(deployed, bundles, tmp_path_factory) -> Iterator[tuple[Running, MessageCollector]]:  # noqa: F811
    broker, deployment = deployed
    tmp_path = tmp_path_factory.mktemp("station")
    tls = {"ca_file": deployment.certs / "ca.crt"}
    mes_mqtt = MqttConfig(host=HOST, port=deployment.tls_port, tls=tls, username="mes", password=PASSWORDS["mes"])
    collector = MessageCollector(mes_mqtt, "line1", STATION, kinds=["status", "event"]).start()
    mqtt = station_config(broker, tmp_path, outbox_path=None, username=STATION, password=PASSWORDS[STATION], tls=tls)
    (tmp_path / "frames").mkdir()
    settings = settings_for(
        broker,
        tmp_path,
        bundles,
        f"folder:{tmp_path / 'frames'}",
        station_id=STATION,
        mqtt=mqtt,
        source={"watch": True},
    )
    running = Running(settings)
    try:
        assert collector.wait_for(has_state(StationState.ONLINE), 60), "the station never came online"
        yield running, collector
    finally:
        code = running.stop()
        collector.stop()
    assert code == EXIT_OK


@broker_test
def test_send_command_exits_0_when_the_station_accepts_a_reload(deployed, station, bundles, tmp_path):  # noqa: F811
    _, deployment = deployed
    running, collector = station
    v2 = new_version(bundles[0], tmp_path / "classifier-0.2.0", "0.2.0")
    args = ["reload", str(v2), "--line", "line1", "--station", STATION, "--command-id", "docs-reload-1"]
    sent = run_example("send_command.py", [*args, "--timeout-s", "30"], example_env(deployment, "operator"))
    assert sent.returncode == 0, sent.stderr
    (ack,) = json_lines(sent.stdout)
    assert (ack["command_id"], ack["outcome"], ack["repeated"]) == ("docs-reload-1", "accepted", False)
    assert ack["models"]["classifier"].startswith("threshold-classifier@0.2.0+")
    assert collector.wait_for(
        lambda messages: any(m.kind == "event" and m.message.kind == EventKind.MODEL_RELOADED for m in messages), 20
    )
    again = run_example("send_command.py", [*args, "--timeout-s", "30"], example_env(deployment, "operator"))
    assert again.returncode == 0 and json_lines(again.stdout)[0]["repeated"] is True, again.stderr


@broker_test
def test_send_command_exits_1_when_the_station_rejects_out_of_range_thresholds(deployed, station):
    _, deployment = deployed
    args = ["thresholds", "--decision", "1.5", "--line", "line1", "--station", STATION, "--timeout-s", "30"]
    sent = run_example("send_command.py", args, example_env(deployment, "operator"))
    assert sent.returncode == 1, sent.stderr
    (ack,) = json_lines(sent.stdout)
    assert ack["outcome"] == "rejected" and "decision=1.5 outside" in ack["reason"], ack


@broker_test
def test_send_command_exits_2_when_no_station_answers(deployed):
    _, deployment = deployed
    args = ["thresholds", "--decision", "0.6", "--line", "line1", "--station", "st2", "--timeout-s", "1"]
    sent = run_example("send_command.py", args, example_env(deployment, "operator"))
    assert sent.returncode == 2, sent.stderr
    assert "send it again with --command-id" in sent.stderr and not sent.stdout


@broker_test
def test_send_command_exits_3_when_the_account_may_not_command(deployed):
    _, deployment = deployed
    args = ["thresholds", "--decision", "0.6", "--line", "line1", "--station", STATION, "--timeout-s", "10"]
    sent = run_example("send_command.py", args, example_env(deployment, "mes"))  # mes is read-only
    assert sent.returncode == 3, sent.stderr
    assert "Not authorized" in sent.stderr


# --- mosquitto_sub.sh ------------------------------------------------------------------------------------------


@broker_test
@pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None, reason="needs mosquitto_sub (apt-get install mosquitto-clients)"
)
def test_the_mosquitto_sub_line_receives_results_and_alerts_queued_in_its_persistent_session(deployed):
    _, deployment = deployed
    env = {**example_env(deployment, "mes"), "MQTT_CLIENT_ID": "mes-cli-docs-test"}
    script = [str(EXAMPLES / "mosquitto_sub.sh")]
    created = subprocess.run([*script, "-W", "1"], env=env, capture_output=True, text=True, timeout=20)
    assert (created.returncode, created.stderr) == (27, "Timed out\n"), created.stderr  # -W 1: subscribed, no message
    station = station_account(deployment)
    try:
        publish_results(station, [41])
        assert station.publish(topic(STATION, "alert"), b'{"seq": 41}') != NOT_AUTHORIZED
        assert station.publish(topic(STATION, "stats"), b"{}") != NOT_AUTHORIZED  # not subscribed
    finally:
        station.close()
    got = subprocess.run([*script, "-C", "2", "-W", "10"], env=env, capture_output=True, text=True, timeout=20)
    assert got.returncode == 0, got.stderr
    topics = [line.split(" ", 1)[0] for line in got.stdout.splitlines()]
    assert topics == [topic(STATION, "result"), topic(STATION, "alert")]


# --- the guides' links ---------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", markdown.read_text(encoding="utf-8"), flags=re.S)
    return {anchor(match) for match in re.findall(r"^#{1,6}\s+(.+)$", text, flags=re.M)}


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_of_the_guide_resolves_to_a_file_and_heading(guide):
    text = re.sub(r"```.*?```", "", guide.read_text(encoding="utf-8"), flags=re.S)
    links = LINK.findall(text)
    assert links, f"{guide} links nowhere"
    broken = []
    for target in links:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, file: ...
            continue
        path_part, _, fragment = target.partition("#")
        path = (guide.parent / path_part).resolve() if path_part else guide
        if not path.exists():
            broken.append(f"{target}: {path} does not exist")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{target}: no heading #{fragment} in {path.name}")
    assert not broken, "\n".join(broken)
