"""MQTT pieces that need no broker: settings, identity, properties, defect-map fitting, the watch view."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError
from rich.console import Console
from typer.testing import CliRunner

from edge.cli import app
from edge.config import EdgeSettings
from edge.publish import broker
from edge.publish.client import MqttPublisher
from edge.publish.config import MqttConfig
from edge.publish.connection import (
    client_id_for,
    connect_properties,
    publish_properties,
    read_password,
    will_properties,
)
from edge.publish.defect_map import encode_png, fit_png
from edge.publish.outbox import Outbox, OutboxMessage
from edge.publish.refusals import RefusalTracker, describe
from edge.publish.status import StatusBoard
from edge.publish.watch import Received, SeqTracker, WatchView
from shared.config import ConfigError, load_settings
from shared.messages import (
    Box,
    Defect,
    EventKind,
    EventMessage,
    PatchSummary,
    ResultMessage,
    StationState,
    StatsMessage,
    StatusMessage,
    Verdict,
    alert_from_result,
    make_result_id,
    result_topic,
)

NOW = datetime(2025, 3, 4, 9, 15, 2, tzinfo=timezone.utc)


def result(seq: int, station: str = "st1", verdict: str = "OK") -> ResultMessage:
    return ResultMessage(
        result_id=make_result_id("l1", station, 1, seq),
        seq=seq,
        session=1,
        line="l1",
        station=station,
        frame_id=f"f{seq}",
        source="synthetic",
        captured_at=NOW,
        processed_at=NOW,
        frame_width_px=64,
        frame_height_px=48,
        verdict=verdict,
        defects=[Defect(box=Box(x=1, y=2, w=3, h=4), area_px=9, max_score=0.9, mean_score=0.8)]
        if verdict == "NG"
        else [],
        patches=PatchSummary(count=4, max_score=0.2, flagged=0),
        latency_ms=5.0,
    )


def test_mqtt_settings_come_from_the_environment_and_hide_the_password(monkeypatch):
    monkeypatch.setenv("PUMP_MQTT__HOST", "broker.plant")
    monkeypatch.setenv("PUMP_MQTT__PROTOCOL", "3.1.1")
    monkeypatch.setenv("PUMP_MQTT__PASSWORD", "hunter2-secret")
    monkeypatch.setenv("PUMP_MQTT__USERNAME", "st1")
    settings = load_settings(EdgeSettings)
    assert settings.mqtt.host == "broker.plant" and not settings.mqtt.mqtt5
    assert read_password(settings.mqtt) == "hunter2-secret"
    for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert "hunter2-secret" not in text


def test_mqtt_settings_refuse_typos_and_contradictions():
    with pytest.raises(ValidationError, match="extra"):
        MqttConfig(hots="x")
    with pytest.raises(ValidationError, match="not both"):
        MqttConfig(password="a", password_file="/run/secrets/mqtt")
    with pytest.raises(ValidationError, match="go together"):
        MqttConfig(tls={"cert_file": "client.crt"})
    with pytest.raises(ValidationError):
        MqttConfig(qos=2)
    with pytest.raises(ValidationError):
        MqttConfig(topic_prefix="a/+/b")
    with pytest.raises(ValidationError, match="reconnect_max_s"):
        MqttConfig(reconnect_min_s=5, reconnect_max_s=1)
    assert MqttConfig(protocol=5).protocol == "5"


def test_a_bad_mqtt_value_names_the_field_and_its_source(monkeypatch):
    monkeypatch.setenv("PUMP_MQTT__DEFECT_MAP_POLICY", "sometimes")
    with pytest.raises(
        ConfigError, match=r"mqtt\.defect_map_policy \(from environment variable PUMP_MQTT__DEFECT_MAP_POLICY\)"
    ):
        load_settings(EdgeSettings)


@pytest.mark.parametrize(
    "section, old, new, value",
    [("mqtt", "defect_map", "defect_map_policy", "ng"), ("postprocess", "defect_map", "defect_map_style", "overlay")],
)
def test_a_renamed_defect_map_setting_is_refused_naming_its_new_name(tmp_path, section, old, new, value):
    config = tmp_path / "edge.toml"
    config.write_text(f'[{section}]\n{old} = "{value}"\n')
    with pytest.raises(ConfigError, match=f"{section} \\(from config file {config}\\): .*'{old}' was renamed '{new}'"):
        load_settings(EdgeSettings, config)
    config.write_text(f'[{section}]\n{new} = "{value}"\n')
    assert getattr(getattr(load_settings(EdgeSettings, config), section), new) == value


def test_the_defect_map_policy_is_decided_by_one_rule():
    wanted = {
        policy: [MqttConfig(defect_map_policy=policy).publishes_defect_map(verdict) for verdict in Verdict]
        for policy in ("never", "ng", "all")
    }
    assert wanted["never"] == [False] * len(Verdict) and wanted["all"] == [True] * len(Verdict)
    assert wanted["ng"] == [verdict == Verdict.NG for verdict in Verdict]


def test_a_defect_map_rendered_smaller_than_the_frame_reports_its_scale_to_the_frame(tmp_path):
    config = MqttConfig(host="127.0.0.1", port=broker.free_port(), outbox_path=tmp_path / "o.db")
    publisher = MqttPublisher(config, line="l1", station="st1", software_version="1")
    publisher.start()
    try:
        seq, _ = publisher.next_result_ids()
        picture = np.zeros((12, 16), np.uint8)  # the station drew the 64 x 48 frame's map at a quarter
        publisher.publish_result(result(seq, verdict="NG"), picture, map_scale=0.25)
        publisher.publish_result(result(seq + 1, verdict="OK"), picture, map_scale=0.25)  # policy ng: no map
    finally:
        publisher.stop(timeout_s=0.1)
    with Outbox(tmp_path / "o.db") as outbox:
        maps = [row.message for row in outbox.pending() if row.message.kind == "defect_map"]
    assert len(maps) == 1 and dict(maps[0].user_properties)["scale"] == "0.25"
    assert cv2.imdecode(np.frombuffer(maps[0].payload, np.uint8), cv2.IMREAD_UNCHANGED).shape == (12, 16)


def test_the_outbox_lives_in_the_data_folder_unless_configured(tmp_path):
    assert MqttConfig().resolved_outbox_path(tmp_path) == tmp_path / "mqtt" / "outbox.sqlite3"
    assert MqttConfig(outbox_path="/var/x.db").resolved_outbox_path(tmp_path) == Path("/var/x.db")
    with pytest.raises(ValueError, match="outbox_path"):
        MqttPublisher(MqttConfig(host="h"), line="l", station="s", software_version="1")


def test_the_password_file_gives_its_first_line(tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text("pa55 \nignored\n")
    assert read_password(MqttConfig(password_file=secret)) == "pa55"
    assert read_password(MqttConfig()) is None
    with pytest.raises(FileNotFoundError, match="password_file"):
        read_password(MqttConfig(password_file=tmp_path / "missing"))


def test_client_ids_are_derived_from_line_and_station_and_validated():
    assert client_id_for("pumpinspect", "line1", "st1") == "pumpinspect-line1-st1"
    assert client_id_for("plant/a", "l", "s", "watch") == "plant-a-l-s-watch"
    with pytest.raises(ValueError, match="client id"):
        client_id_for("p", "l", "s" * 200)
    with pytest.raises(ValueError, match="topic level"):
        MqttPublisher(MqttConfig(host="h"), line="l/1", station="s", software_version="1", data_dir=Path("."))


def test_mqtt5_properties_carry_will_delay_session_expiry_content_type_and_user_properties():
    config = MqttConfig(will_delay_s=7)
    assert connect_properties(config).SessionExpiryInterval == 7
    assert will_properties(config).WillDelayInterval == 7
    properties = publish_properties(config, "image/png", [("frame_id", "f1")], expiry_s=30)
    assert properties.ContentType == "image/png" and properties.PayloadFormatIndicator == 0
    assert properties.UserProperty == [("frame_id", "f1")] and properties.MessageExpiryInterval == 30
    assert publish_properties(config, "application/json").PayloadFormatIndicator == 1
    legacy = MqttConfig(protocol="3.1.1")
    assert connect_properties(legacy) is None and publish_properties(legacy, "image/png") is None
    assert connect_properties(MqttConfig(will_delay_s=0)) is None


def test_a_publisher_refuses_results_of_other_stations_and_falling_seqs(tmp_path):
    publisher = MqttPublisher(
        MqttConfig(host="127.0.0.1", port=broker.free_port(), outbox_path=tmp_path / "o.db"),
        line="l1",
        station="st1",
        software_version="1",
    )
    with pytest.raises(RuntimeError, match="not started"):
        publisher.publish_result(result(1))
    publisher.start()
    try:
        seq, result_id = publisher.next_result_ids()
        assert (seq, result_id) == (1, "l1:st1:1:1")
        publisher.publish_result(result(seq))
        with pytest.raises(ValueError, match="seq must rise"):
            publisher.publish_result(result(seq))
        with pytest.raises(ValueError, match="given to l1/st1"):
            publisher.publish_result(result(2, station="st2"))
        assert publisher.outbox_depth == 1
    finally:
        publisher.stop(timeout_s=0.1)


def test_events_are_dropped_and_counted_without_a_connection(tmp_path):
    publisher = MqttPublisher(
        MqttConfig(host="127.0.0.1", port=broker.free_port(), outbox_path=tmp_path / "o.db"),
        line="l1",
        station="st1",
        software_version="1",
    )
    event = EventMessage(line="l1", station="st1", time=NOW, kind="source-disconnected", severity="error", reason="x")
    assert publisher.topics["event"] == "pumpinspect/l1/st1/event"
    assert publisher.publish_event(event) is False  # before start: no link, never raises
    publisher.start()
    try:
        assert publisher.publish_event(event) is False  # nothing listens on that port
        with pytest.raises(ValueError, match="given to l1/st1"):
            publisher.publish_event(event.model_copy(update={"station": "st2"}))
        assert publisher.counters.events_skipped == 2 and publisher.outbox_depth == 0
    finally:
        publisher.stop(timeout_s=0.1)


def test_a_defect_map_within_the_limit_is_left_alone():
    image = np.zeros((40, 60), np.uint8)
    fitted = fit_png(encode_png(image), 10_000)
    assert fitted.scale == 1.0 and (fitted.width_px, fitted.height_px) == (60, 40)
    assert fit_png(image, 10_000).png == fitted.png


def test_an_oversized_defect_map_is_downscaled_until_it_fits():
    noise = np.random.default_rng(1).integers(0, 256, (300, 500), dtype=np.uint8)
    fitted = fit_png(noise, 8_000)
    assert len(fitted.png) <= 8_000 and fitted.scale < 1
    decoded = cv2.imdecode(np.frombuffer(fitted.png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (fitted.height_px, fitted.width_px)
    assert abs(decoded.shape[1] / decoded.shape[0] - 500 / 300) < 0.1  # aspect kept
    with pytest.raises(ValueError, match="not a readable PNG"):
        fit_png(b"not a png", 8_000)


def test_the_seq_tracker_drops_redeliveries_and_counts_gaps():
    tracker = SeqTracker()
    outcomes = [tracker.see(result(seq)) for seq in (1, 2, 2, 5, 3, 6)]
    assert outcomes == ["new", "new", "duplicate", "gap", "new", "new"]
    assert tracker.duplicates == 1 and tracker.missing == 2
    assert tracker.see(result(1, station="st2")) == "new"  # per station


def test_the_watch_view_shows_states_results_and_alerts():
    view = WatchView(max_rows=5)
    status = StatusMessage(
        line="l1", station="st1", state="online", software_version="1", config_hash="h", session=2, timestamp=NOW
    )
    ng = result(1, verdict="NG")
    for message in (status, ng, alert_from_result(ng), result(3)):
        view.add(Received(result_topic("l1", "st1"), "x", "l1", "st1", b"", False, 1, None, {}, message))
    console = Console(width=160, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "online" in text and "ALERT" in text and "gap" in text
    assert "results 2 (NG 1), alerts 1" in text and "missing 1" in text


def test_the_watch_view_shows_each_stations_stats_and_the_events_as_rows():
    view = WatchView()
    stats = StatsMessage(
        line="l1",
        station="st1",
        timestamp=NOW,
        uptime_s=60,
        fps=2.5,
        latency_p50_ms=80,
        latency_p99_ms=140,
        outbox_depth=7,
        dead_letters=3,
    )
    event = EventMessage(
        line="l1",
        station="st1",
        time=NOW,
        kind=EventKind.MODEL_REJECTED,
        severity="warning",
        reason="bundle '0.2.0' is ambiguous [a, b]",
        ref="",
    )
    for kind, message in (("stats", stats), ("event", event)):
        view.add(Received("t", kind, "l1", "st1", b"", False, 1, None, {}, message))
    console = Console(width=220, record=True)
    console.print(view.render())
    text = console.export_text()
    station_row = next(line for line in text.splitlines() if line.strip().startswith("l1/st1") and "2.5" in line)
    assert "140" in station_row and " 7 " in station_row and " 3" in station_row
    assert "model-rejected: bundle '0.2.0' is ambiguous [a, b]" in text  # escaped, not read as markup
    assert view.counts["event"] == 1 and "events 1" in text


def test_the_watch_view_flags_a_degraded_station_and_one_whose_lease_ran_out():
    view = WatchView()
    common = dict(software_version="1", config_hash="h", session=1, timestamp=NOW)
    degraded = StatusMessage(
        line="l1", station="st1", state="degraded", problems=["broker refuses p/l1/st1/result"], **common
    )
    lapsed = StatusMessage(line="l1", station="st2", state="online", valid_until=NOW, **common)  # 2025: long past
    for message in (degraded, lapsed):
        view.add(Received("t", "status", "l1", message.station, b"", True, 1, None, {}, message))
    console = Console(width=200, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "degraded: broker refuses p/l1/st1/result" in text
    assert "gone? (online, lease ran out" in text


def test_a_missing_mosquitto_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(broker, "find_mosquitto", lambda: None)
    with pytest.raises(broker.MosquittoNotFound, match="apt-get install mosquitto"):
        broker.MosquittoBroker().start()
    config, embedded = broker.ensure_broker(MqttConfig(host="broker.plant"))
    assert embedded is None and config.host == "broker.plant"  # an external broker needs no binary


def test_password_lines_use_mosquittos_pbkdf2_format():
    user, rest = broker.password_line("station", "pw").split(":", 1)
    _, kind, iterations, salt, digest = rest.split("$")
    assert (user, kind, iterations) == ("station", "7", "101")
    expected = hashlib.pbkdf2_hmac("sha512", b"pw", base64.b64decode(salt), 101)
    assert base64.b64decode(digest) == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_burst_gives_one_notice_then_summaries_not_one_per_message():
    clock = FakeClock()
    tracker = RefusalTracker(summary_interval_s=60, clock=clock)
    first = tracker.refused("p/l/s/result", "Not authorized")
    assert first is not None and (first.kind, first.count, first.since) == ("refused", 1, 1000.0)
    assert all(tracker.refused("p/l/s/result", "Not authorized") is None for _ in range(499))
    assert tracker.due() == []  # nothing before the interval
    clock.now += 60
    (summary,) = tracker.due()
    assert (summary.kind, summary.count, summary.total) == ("summary", 499, 500)
    clock.now += 60
    assert tracker.due() == []  # nothing new: no summary
    assert tracker.problems() == [
        "the broker refuses messages to p/l/s/result (Not authorized); they are kept as dead letters"
    ]
    assert tracker.refused("p/l/s/result", "Quota exceeded").kind == "refused"  # a new reason: a new burst
    assert tracker.accepted("p/l/s/alert") is None  # no burst there
    ended = tracker.accepted("p/l/s/result")
    assert (ended.kind, ended.total, ended.reason) == ("accepted", 1, "Quota exceeded")
    assert tracker.problems() == [] and tracker.since() is None
    kinds = [describe(notice)[0] for notice in (first, summary, ended)]
    assert kinds == [EventKind.PUBLISH_REFUSED, EventKind.PUBLISH_REFUSED, EventKind.PUBLISH_ACCEPTED]
    assert "p/l/s/result" in describe(first)[2] and "Not authorized" in describe(first)[2]


def test_online_shows_as_degraded_while_a_burst_is_open_and_live_states_carry_a_lease():
    board = StatusBoard(lease_s=30, summary_interval_s=60)
    board.set(StationState.ONLINE)
    shown = board.shown()
    assert (shown.state, shown.problems, shown.expiry_s) == (StationState.ONLINE, [], 30)
    assert (shown.valid_until - shown.heartbeat_at).total_seconds() == 30
    board.refusals.refused("p/l/s/result", "Not authorized")
    shown = board.shown()
    assert shown.state == StationState.DEGRADED and len(shown.problems) == 1 and shown.since >= NOW
    assert board.state == StationState.ONLINE  # what the runtime set is unchanged
    board.set(StationState.STOPPED)
    stopped = board.shown()
    assert stopped.state == StationState.STOPPED and stopped.problems  # why it stopped degraded
    assert (stopped.valid_until, stopped.expiry_s) == (None, None)  # final: no lease
    assert not StatusBoard(lease_s=None, summary_interval_s=1).heartbeat_due()
    board.set(StationState.ONLINE)
    assert not board.heartbeat_due()  # nothing published yet
    board.published()
    assert not board.heartbeat_due()  # next one a third of the lease later


def test_the_status_payload_carries_the_lease_and_the_will_does_not(tmp_path):
    config = MqttConfig(host="h", outbox_path=tmp_path / "o.db", status_expiry_s=45)
    publisher = MqttPublisher(config, line="l1", station="st1", software_version="1")
    publisher.set_status("online")  # not started: nothing sent, state kept
    status = publisher.status_message()
    assert status.state == StationState.ONLINE and status.valid_until is not None
    assert (status.valid_until - status.heartbeat_at).total_seconds() == 45
    will = publisher.status_message(StationState.OFFLINE)
    assert (will.valid_until, will.heartbeat_at, will.problems) == (None, None, [])
    no_lease = config.model_copy(update={"status_expiry_s": None})
    assert MqttPublisher(no_lease, line="l1", station="s", software_version="1").status_message().valid_until is None


def test_dead_letter_settings_default_to_a_tenth_of_the_outbox_and_stay_below_it():
    assert MqttConfig().dead_letter_limit == 10_000
    assert MqttConfig(outbox_max_rows=50).dead_letter_limit == 5
    assert MqttConfig(outbox_max_rows=50, dead_letter_max_rows=49).dead_letter_limit == 49
    with pytest.raises(ValidationError, match="below outbox_max_rows"):
        MqttConfig(outbox_max_rows=50, dead_letter_max_rows=50)
    with pytest.raises(ValidationError):
        MqttConfig(status_expiry_s=1)


def test_pump_edge_outbox_lists_requeues_and_purges_dead_letters(tmp_path):
    path = tmp_path / "data" / "mqtt" / "outbox.sqlite3"
    runner = CliRunner()
    missing = runner.invoke(app, ["outbox", "--data-dir", str(tmp_path / "data")])
    assert missing.exit_code == 2 and "no outbox" in missing.output
    with Outbox(path) as outbox:
        ids = outbox.append(
            [OutboxMessage(f"pumpinspect/l1/st1/{kind}", b"{}", 1, kind, seq=1) for kind in ("result", "alert")]
        )
        for row_id in ids:
            outbox.refuse(row_id, "Not authorized")
    table = runner.invoke(app, ["outbox", "--dead-letters", "--data-dir", str(tmp_path / "data")])
    assert table.exit_code == 0 and "dead letters (2)" in table.output, table.output
    listed = runner.invoke(app, ["outbox", "--dead-letters", "--json", "--data-dir", str(tmp_path / "data")])
    report = json.loads(listed.output)
    assert (report["depth"], report["dead_letters"], report["counters"]["refused"]) == (0, 2, 2)
    assert [(x["topic"], x["reason"]) for x in report["dead_letter_list"]] == [
        ("pumpinspect/l1/st1/result", "Not authorized"),
        ("pumpinspect/l1/st1/alert", "Not authorized"),
    ]
    requeued = runner.invoke(app, ["outbox", "--requeue", "--data-dir", str(tmp_path / "data")])
    assert requeued.exit_code == 0 and "2 dead letter(s) back in the outbox" in requeued.output
    with Outbox(path) as outbox:
        assert (outbox.depth, outbox.dead_letter_depth) == (2, 0)
        outbox.refuse(outbox.pending()[0].id, "Not authorized")
    purged = runner.invoke(app, ["outbox", "--purge", "--data-dir", str(tmp_path / "data")])
    assert purged.exit_code == 0 and "1 dead letter(s) deleted" in purged.output
    with Outbox(path, lock=True):  # a running station: purging is refused, requeue is only asked for
        busy = runner.invoke(app, ["outbox", "--purge", "--data-dir", str(tmp_path / "data")])
        assert busy.exit_code == 2 and "in use" in busy.output
