"""Hot bundle reload and the command topics (``cmd/reload``, ``cmd/thresholds``, ``cmd/ack``) against Mosquitto.

A running station streams synthetic frames (backpressure ``block``, so none is skipped) while
an operator client sends commands; the MES-like collector of ``test_mqtt`` checks the results.
A "new version" is the threshold bundle of ``tests/edge/fixtures.py`` copied with another
version string in its manifest.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.backends import create_backend
from edge.publish.broker import MosquittoBroker, find_mosquitto
from edge.publish.watch import MessageCollector
from edge.runtime.station import EXIT_OK, Station
from shared.bundle import MANIFEST_NAME
from shared.messages import CommandAck, CommandOutcome, EventKind, EventMessage, StationState, Verdict, command_topic
from tests.integration.test_mqtt import broker, has_state, mes, results, station_config  # noqa: F401
from tests.integration.test_station import LINE, STATION, SlowBackend, bundles, settings_for  # noqa: F401

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs the mosquitto broker binary (apt-get install mosquitto; scripts/bootstrap.sh does it as root)",
    ),
]


def new_version(bundle: Path, target: Path, version: str) -> Path:
    """The same model re-exported as ``version`` (only the manifest's version string differs)."""
    shutil.copytree(bundle, target)
    manifest = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["version"] = version
    (target / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


class Operator:
    """An operator client: sends commands to the station, collects its acks."""

    def __init__(self, broker: MosquittoBroker, user: str | None = None) -> None:  # noqa: F811
        self.acks: list[CommandAck] = []
        self._subscribed = threading.Event()
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user or 'operator'}-test")
        if user is not None:
            self.client.username_pw_set(user, PASSWORDS[user])
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(command_topic("ack", LINE, STATION), qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        with self._cond:
            self.acks.append(CommandAck.model_validate_json(message.payload))
            self._cond.notify_all()

    def send(self, command: str, payload: dict) -> None:
        info = self.client.publish(command_topic(command, LINE, STATION), json.dumps(payload), qos=1)
        info.wait_for_publish(10)

    def ack(self, command_id: str, count: int = 1, timeout_s: float = 60) -> CommandAck:
        """The ``count``-th ack for ``command_id`` (waits for it)."""
        with self._cond:
            assert self._cond.wait_for(
                lambda: len([a for a in self.acks if a.command_id == command_id]) >= count, timeout_s
            ), f"no ack #{count} for {command_id}: {self.acks}"
            return [a for a in self.acks if a.command_id == command_id][count - 1]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Running:
    """A station running on synthetic frames in a thread until :meth:`stop`."""

    def __init__(self, settings, **kwargs) -> None:  # noqa: ANN001, ANN003
        self.station = Station(settings, **kwargs)
        self.codes: list[int] = []
        self.thread = threading.Thread(target=lambda: self.codes.append(self.station.run()))
        self.thread.start()

    def stop(self) -> int:
        self.station.request_stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "station did not stop"
        return self.codes[0]


def streaming(broker, tmp_path: Path, bundles, pipeline=None, backend_factory=None, **bundle_options) -> Running:  # noqa: F811, ANN001
    settings = settings_for(
        broker,
        tmp_path,
        bundles,
        "synthetic:512x384",
        pipeline={"backpressure": "block", "drain_timeout_s": 10, "queue_size": 2, **(pipeline or {})},
    )
    settings = settings.model_copy(update={"bundles": settings.bundles.model_copy(update=bundle_options)})
    return Running(settings, backend_factory=backend_factory)


def classifier_versions(collector) -> list[str]:  # noqa: ANN001
    return [r.models["classifier"].split("+")[0] for r in results(collector.messages("result"))]


def events(collector, kind: EventKind) -> list[EventMessage]:  # noqa: ANN001
    return [m.message for m in collector.messages("event") if m.message.kind == kind]


def check_every_frame_has_one_result_in_order(collector, running: Running) -> None:  # noqa: ANN001
    got = results(collector.messages("result"))
    assert [r.seq for r in got] == list(range(1, len(got) + 1))
    indices = [int(r.frame_id.rsplit("-", 1)[1]) for r in got]
    assert indices == list(range(indices[0], indices[0] + len(got)))  # no frame skipped between results
    assert running.station.queue.skipped == 0 and running.station.stats.frames_dropped == 0


def test_a_reload_while_frames_stream_switches_the_model_once_between_frames_and_loses_none(
    broker,  # noqa: F811
    tmp_path,
    bundles,  # noqa: F811
):
    v2 = new_version(bundles[0], tmp_path / "classifier-0.2.0", "0.2.0")
    collector, operator = mes(broker, tmp_path), Operator(broker)
    running = streaming(broker, tmp_path, bundles)
    try:
        assert collector.wait_for(lambda m: len(results(m)) >= 5, 60)
        operator.send("reload", {"command_id": "reload-1", "bundle": str(v2)})
        ack = operator.ack("reload-1")
        assert ack.outcome == CommandOutcome.ACCEPTED and not ack.repeated, ack.reason
        assert ack.models["classifier"].startswith("threshold-classifier@0.2.0+")
        assert collector.wait_for(lambda m: sum(v.endswith("0.2.0") for v in classifier_versions(collector)) >= 5, 60)
        operator.send("reload", {"command_id": "reload-1", "bundle": str(v2)})  # a redelivery: not applied again
        again = operator.ack("reload-1", count=2)
        assert again.repeated and again.outcome == CommandOutcome.ACCEPTED and again.models == ack.models
        count = len(results(collector.messages("result")))
        assert collector.wait_for(lambda m: len(results(m)) >= count + 5, 60)
    finally:
        code = running.stop()
        operator.close()
    assert code == EXIT_OK
    assert collector.wait_for(has_state(StationState.STOPPED), 10)
    check_every_frame_has_one_result_in_order(collector, running)
    versions = classifier_versions(collector)
    switch = versions.index("threshold-classifier@0.2.0")
    assert switch > 0 and set(versions[:switch]) == {"threshold-classifier@0.1.0"}
    assert set(versions[switch:]) == {"threshold-classifier@0.2.0"}  # switched exactly once
    reloaded = events(collector, EventKind.MODEL_RELOADED)
    assert len(reloaded) == 1 and "0.2.0" in reloaded[0].reason
    status = [m.message for m in collector.messages("status")][-1]
    assert status.models["classifier"].startswith("threshold-classifier@0.2.0+")
    collector.stop()


def test_a_corrupt_bundle_is_rejected_and_results_keep_coming_from_the_old_model(
    broker,  # noqa: F811
    tmp_path,
    bundles,  # noqa: F811
):
    bad = new_version(bundles[0], tmp_path / "classifier-0.3.0", "0.3.0")
    model = bad / "model.onnx"
    model.write_bytes(model.read_bytes()[:-7] + b"garbage")  # the manifest's sha256 no longer matches
    collector, operator = mes(broker, tmp_path), Operator(broker)
    running = streaming(broker, tmp_path, bundles)
    try:
        assert collector.wait_for(lambda m: len(results(m)) >= 3, 60)
        operator.send("reload", {"command_id": "bad-1", "bundle": str(bad)})
        ack = operator.ack("bad-1")
        assert ack.outcome == CommandOutcome.REJECTED and "sha256" in ack.reason.lower(), ack.reason
        assert ack.models["classifier"].startswith("threshold-classifier@0.1.0+")
        operator.send("reload", {"command_id": "missing-1", "bundle": "9.9.9"})
        assert "not found" in operator.ack("missing-1").reason
        operator.send("reload", {"bundle": str(bad)})  # no command id: rejected, nothing applied
        assert "command_id" in operator.ack("").reason
        count = len(results(collector.messages("result")))
        assert collector.wait_for(lambda m: len(results(m)) >= count + 5, 60)
    finally:
        code = running.stop()
        operator.close()
    assert code == EXIT_OK
    assert collector.wait_for(has_state(StationState.STOPPED), 10)
    check_every_frame_has_one_result_in_order(collector, running)
    assert set(classifier_versions(collector)) == {"threshold-classifier@0.1.0"}
    rejected = events(collector, EventKind.MODEL_REJECTED)
    assert len(rejected) == 2 and "sha256" in rejected[0].reason.lower()
    assert not events(collector, EventKind.MODEL_RELOADED)
    collector.stop()


def test_thresholds_in_range_apply_from_the_next_frame_and_out_of_range_are_rejected_with_the_reason(
    broker,  # noqa: F811
    tmp_path,
    bundles,  # noqa: F811
):
    collector, operator = mes(broker, tmp_path), Operator(broker)
    running = streaming(broker, tmp_path, bundles)
    try:
        assert collector.wait_for(lambda m: len(results(m)) >= 2, 60)
        operator.send("thresholds", {"command_id": "t-1", "decision": 0.7, "pixel": 0.6})
        ack = operator.ack("t-1")
        assert ack.outcome == CommandOutcome.ACCEPTED, ack.reason
        assert (ack.thresholds["decision"], ack.thresholds["pixel"]) == (0.7, 0.6)
        for command_id, payload, word in (
            ("t-2", {"decision": 1.5}, "decision"),
            ("t-3", {"pixel": 0.0}, "pixel"),
            ("t-4", {}, "nothing to change"),
            ("t-5", {"decision": "high"}, "decision"),
        ):
            operator.send("thresholds", {"command_id": command_id, **payload})
            rejected = operator.ack(command_id)
            assert rejected.outcome == CommandOutcome.REJECTED and word in rejected.reason, rejected.reason
            assert rejected.thresholds.get("decision", 0.7) == 0.7  # still the accepted value
        operator.send("thresholds", {"command_id": "t-1", "decision": 0.2})  # same id, other values: not applied
        assert operator.ack("t-1", count=2).repeated
        assert wait_for(lambda: running.station.thresholds.decision == 0.7, 10)
        count = len(results(collector.messages("result")))
        assert collector.wait_for(lambda m: len(results(m)) >= count + 3, 60)
    finally:
        code = running.stop()
        operator.close()
    assert code == EXIT_OK
    assert running.station.worker.inspector.thresholds.decision == 0.7
    check_every_frame_has_one_result_in_order(collector, running)
    assert len(events(collector, EventKind.MODEL_RELOADED)) == 1
    assert len(events(collector, EventKind.MODEL_REJECTED)) == 3  # the invalid payload never reached the station
    collector.stop()


def test_a_bundle_renamed_into_the_watched_folder_is_picked_up(broker, tmp_path, bundles):  # noqa: F811
    watch = tmp_path / "watch"
    watch.mkdir()
    collector = mes(broker, tmp_path)
    running = streaming(broker, tmp_path, bundles, watch_dir=watch, watch_interval_s=0.2)
    try:
        assert collector.wait_for(lambda m: len(results(m)) >= 3, 60)
        staged = new_version(bundles[0], watch / ".incoming", "0.4.0")  # ignored while it is being copied
        time.sleep(0.5)
        assert not events(collector, EventKind.MODEL_RELOADED)
        staged.rename(watch / "classifier-0.4.0")
        assert collector.wait_for(lambda m: "threshold-classifier@0.4.0" in classifier_versions(collector), 60)
        count = len(results(collector.messages("result")))
        assert collector.wait_for(lambda m: len(results(m)) >= count + 3, 60)
    finally:
        code = running.stop()
    assert code == EXIT_OK
    check_every_frame_has_one_result_in_order(collector, running)
    versions = classifier_versions(collector)
    switch = versions.index("threshold-classifier@0.4.0")
    assert set(versions[:switch]) == {"threshold-classifier@0.1.0"} and set(versions[switch:]) == {versions[-1]}
    assert len(events(collector, EventKind.MODEL_RELOADED)) == 1
    collector.stop()


def test_a_worker_the_watchdog_restarts_after_a_reload_runs_the_reloaded_bundle(
    broker,  # noqa: F811
    tmp_path,
    bundles,  # noqa: F811
):
    v2 = new_version(bundles[0], tmp_path / "classifier-0.2.0", "0.2.0")
    made: list[str] = []  # classifier versions the station created backends for, in order

    def reloaded_one_hangs(task, bundle, config):  # noqa: ANN001
        version = bundle.manifest.version
        hang = 3 if task == "classifier" and version == "0.2.0" and "0.2.0" not in made else None
        if task == "classifier":
            made.append(version)
        return SlowBackend(create_backend("onnxruntime", bundle, config), 0.0, hang_on_call=hang, hang_s=3.0)

    collector, operator = mes(broker, tmp_path), Operator(broker)
    pipeline = {"watchdog_timeout_s": 0.5, "restart_window_s": 60, "max_restarts": 2, "warmup": False}
    running = streaming(broker, tmp_path, bundles, pipeline=pipeline, backend_factory=reloaded_one_hangs)
    try:
        assert collector.wait_for(lambda m: len(results(m)) >= 3, 60)
        operator.send("reload", {"command_id": "reload-w", "bundle": str(v2)})
        assert operator.ack("reload-w").outcome == CommandOutcome.ACCEPTED
        assert wait_for(lambda: running.station.stats.worker_restarts == 1, 30)
        count = len(results(collector.messages("result")))
        assert collector.wait_for(lambda m: len(results(m)) >= count + 5, 60)
    finally:
        code = running.stop()
        operator.close()
    assert code == EXIT_OK
    assert made == ["0.1.0", "0.2.0", "0.2.0"]  # start-up, reload, the restarted worker: never 0.1.0 again
    got = results(collector.messages("result"))
    assert [r.seq for r in got] == list(range(1, len(got) + 1))
    assert [r.verdict for r in got].count(Verdict.ERROR) == 1  # the frame the stuck worker held
    versions = classifier_versions(collector)
    switch = versions.index("threshold-classifier@0.2.0")
    assert set(versions[:switch]) == {"threshold-classifier@0.1.0"}
    assert set(versions[switch:]) == {"threshold-classifier@0.2.0"}
    collector.stop()


# --- who may command: a broker with passwords and the least-privilege ACL of issue 13 §4 -------------------

PASSWORDS = {STATION: "station-pw", "operator": "operator-pw", "mes": "mes-pw"}
STATION_TOPICS = ("status", "result", "alert", "defect_map", "stats", "event", "cmd/ack")


def command_acl() -> str:
    """The station reads only its own cmd/# and writes its topics and cmd/ack; operator commands; mes reads."""
    lines = [f"user {STATION}", *(f"topic write pumpinspect/+/{STATION}/{kind}" for kind in STATION_TOPICS)]
    lines += [f"topic read pumpinspect/+/{STATION}/cmd/#"]
    lines += ["user operator", "topic write pumpinspect/+/+/cmd/#", "topic read pumpinspect/+/+/cmd/ack"]
    lines += ["user mes", "topic read pumpinspect/#"]
    return "\n".join([*lines, ""])


def test_a_command_from_an_account_without_the_right_is_refused_by_the_broker(tmp_path, bundles):  # noqa: F811
    acl = tmp_path / "acl"
    acl.write_text(command_acl())
    secured = MosquittoBroker(users=PASSWORDS, workdir=tmp_path / "acl-broker", extra_config=f"acl_file {acl}\n")
    secured.start()
    v2 = new_version(bundles[0], tmp_path / "classifier-0.2.0", "0.2.0")
    mes_config = station_config(secured, tmp_path, username="mes", password=PASSWORDS["mes"])
    collector = MessageCollector(mes_config, LINE, STATION, client_id="mes-acl", persistent=True).start()
    operator, intruder = Operator(secured, "operator"), Operator(secured, "mes")
    station_mqtt = station_config(secured, tmp_path, outbox_path=None, username=STATION, password=PASSWORDS[STATION])
    pipeline = {"backpressure": "block", "drain_timeout_s": 10}
    running = Running(
        settings_for(secured, tmp_path, bundles, "synthetic:512x384", pipeline=pipeline, mqtt=station_mqtt)
    )
    try:
        assert collector.wait_for(lambda m: len(results(m)) >= 3, 60)
        intruder.send("reload", {"command_id": "from-mes", "bundle": str(v2)})  # mes may not write cmd/#
        time.sleep(1.0)
        assert not intruder.acks and not operator.acks  # the broker dropped it: the station never saw it
        operator.send("reload", {"command_id": "from-operator", "bundle": str(v2)})
        assert operator.ack("from-operator").outcome == CommandOutcome.ACCEPTED
        intruder.ack("from-operator")  # mes may read acks (it arrives there a moment later) ...
        assert [ack.command_id for ack in intruder.acks] == ["from-operator"]  # ... but its own command got none
        assert collector.wait_for(lambda m: "threshold-classifier@0.2.0" in classifier_versions(collector), 60)
    finally:
        code = running.stop()
        operator.close()
        intruder.close()
        collector.stop()
        secured.stop()
    assert code == EXIT_OK
    assert len(events(collector, EventKind.MODEL_RELOADED)) == 1
    assert running.station.publisher.counters.rejected == 0  # every station topic, acks included, was allowed


def wait_for(condition, timeout_s: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
