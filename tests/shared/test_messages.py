"""MQTT contract: topic names, payload models, and the checked-in schemas and docs that describe them."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.messages import (
    EVENT_SEVERITY,
    MESSAGE_MODELS,
    SCHEMA_VERSION,
    Box,
    Defect,
    EventKind,
    EventMessage,
    EventSeverity,
    PatchSummary,
    ResultMessage,
    StationState,
    StatsMessage,
    StatusMessage,
    alert_from_result,
    alert_topic,
    config_hash,
    defect_map_topic,
    event_topic,
    main,
    make_result_id,
    model_ref,
    parse_message,
    parse_topic,
    result_topic,
    schema_documents,
    schema_text,
    station_topic,
    stats_topic,
    status_topic,
    topic_filter,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 4, 9, 15, 2, tzinfo=timezone.utc)


def result(verdict: str = "NG", defects: int = 2, patch_max: float | None = 0.6) -> ResultMessage:
    return ResultMessage(
        result_id=make_result_id("line1", "st1", 2, 7),
        seq=7,
        session=2,
        line="line1",
        station="st1",
        frame_id="f7",
        source="synthetic",
        captured_at=NOW,
        processed_at=NOW,
        frame_width_px=640,
        frame_height_px=480,
        verdict=verdict,
        defects=[
            Defect(box=Box(x=i, y=2 * i, w=5, h=6), area_px=20, max_score=0.5 + 0.2 * i, mean_score=0.4)
            for i in range(defects)
        ],
        patches=PatchSummary(count=64, max_score=patch_max, flagged=1),
        latency_ms=12.0,
    )


def _status() -> dict:
    return dict(line="l", station="s", state="online", software_version="1", config_hash="h", session=1, timestamp=NOW)


def test_station_topics_follow_prefix_line_station_kind():
    assert status_topic("line1", "st1") == "pumpinspect/line1/st1/status"
    assert result_topic("l", "s", "plant/a") == "plant/a/l/s/result"
    assert alert_topic("l", "s") == "pumpinspect/l/s/alert"
    assert defect_map_topic("l", "s") == "pumpinspect/l/s/defect_map"
    assert stats_topic("l", "s") == "pumpinspect/l/s/stats"
    assert event_topic("l", "s", "plant/a") == "plant/a/l/s/event"
    assert topic_filter("alert") == "pumpinspect/+/+/alert"
    assert topic_filter(line="line1") == "pumpinspect/line1/+/+"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "st 1"])
def test_topics_refuse_levels_that_would_change_the_topic_tree(bad):
    with pytest.raises(ValueError, match="topic level"):
        station_topic("result", "line1", bad)
    with pytest.raises(ValueError, match="topic level"):
        result_topic(bad, "st1")


def test_topics_refuse_unknown_kinds_and_bad_prefixes():
    with pytest.raises(ValueError, match="unknown topic kind"):
        station_topic("results", "l", "s")
    with pytest.raises(ValueError, match="prefix"):
        station_topic("result", "l", "s", "a//b")
    with pytest.raises(ValueError, match="prefix"):
        topic_filter("result", prefix="#")


def test_parse_topic_inverts_station_topic_and_ignores_others():
    assert parse_topic(station_topic("alert", "l1", "s-2", "x/y"), "x/y") == ("l1", "s-2", "alert")
    assert parse_topic("pumpinspect/l1/s1/cmd") is None
    assert parse_topic("other/l1/s1/result") is None
    assert parse_topic("pumpinspect/l1/s1/x/result") is None


def test_every_payload_carries_the_schema_version():
    for model in MESSAGE_MODELS.values():
        assert model.model_fields["schema_version"].default == SCHEMA_VERSION
    payload = json.loads(result().model_dump_json())
    assert payload["schema_version"] == SCHEMA_VERSION
    payload["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ValidationError):
        parse_message("result", json.dumps(payload))


def test_results_round_trip_through_json_and_ignore_unknown_fields():
    original = result()
    payload = json.loads(original.model_dump_json())
    assert payload["captured_at"].endswith("Z") and payload["verdict"] == "NG"
    payload["added_in_a_later_minor_release"] = 1
    assert parse_message("result", json.dumps(payload)) == original


def test_payloads_refuse_naive_times_bad_scores_and_bad_ids():
    with pytest.raises(ValidationError, match="timezone"):
        StatusMessage.model_validate({**_status(), "timestamp": datetime(2025, 1, 1)})
    with pytest.raises(ValidationError):
        Defect(box=Box(x=0, y=0, w=1, h=1), area_px=1, max_score=1.5, mean_score=0.5)
    with pytest.raises(ValidationError):
        ResultMessage.model_validate(result().model_dump() | {"seq": 0})
    with pytest.raises(ValidationError):
        ResultMessage.model_validate(result().model_dump() | {"station": "st/1"})
    with pytest.raises(ValidationError):
        StatusMessage.model_validate({**_status(), "state": "rebooting"})


def test_station_states_are_the_six_the_mes_knows():
    states = ["starting", "building-engine", "online", "degraded", "stopped", "offline"]
    assert [s.value for s in StationState] == states


def test_a_status_may_carry_problems_and_a_lease_and_old_payloads_stay_valid():
    old = parse_message("status", json.dumps(_status() | {"timestamp": NOW.isoformat()}))
    assert (old.problems, old.heartbeat_at, old.valid_until) == ([], None, None)
    degraded = StatusMessage(
        **_status() | {"state": "degraded"},
        problems=["the broker refuses messages to p/l/s/result (Not authorized)"],
        heartbeat_at=NOW,
        valid_until=NOW.replace(minute=16),
    )
    payload = json.loads(degraded.model_dump_json())
    assert payload["state"] == "degraded" and payload["valid_until"] == "2025-03-04T09:16:02Z"
    assert parse_message("status", degraded.model_dump_json()) == degraded
    with pytest.raises(ValidationError, match="timezone"):
        StatusMessage(**_status(), valid_until=datetime(2025, 1, 1))


def test_stats_count_refused_messages_and_dead_letters_defaulting_to_zero():
    base = dict(line="l", station="s", timestamp=NOW, uptime_s=1, fps=0, latency_p50_ms=None, latency_p99_ms=None)
    stats = StatsMessage(**base)
    assert (stats.outbox_refused, stats.dead_letters, stats.dead_letters_evicted) == (0, 0, 0)
    with pytest.raises(ValidationError):
        StatsMessage(**base, dead_letters=-1)


def test_an_alert_is_the_small_subset_of_its_result():
    ng = result()
    alert = alert_from_result(ng)
    assert (alert.result_id, alert.seq, alert.frame_id, alert.time) == (ng.result_id, 7, "f7", NOW)
    assert alert.defect_count == 2 and alert.boxes == [d.box for d in ng.defects]
    assert alert.worst_score == pytest.approx(0.7)
    assert alert_from_result(result(defects=0, patch_max=0.93)).worst_score == pytest.approx(0.93)
    assert alert_from_result(result(defects=0, patch_max=None)).worst_score == 0.0


def test_events_carry_kind_severity_and_optional_context():
    event = EventMessage(
        line="l1", station="st1", time=NOW, kind="frame-error", severity="warning", reason="truncated PNG"
    )
    assert (event.kind, event.severity) == (EventKind.FRAME_ERROR, EventSeverity.WARNING)
    assert (event.source, event.ref, event.attempt, event.retry_in_s) == ("", "", None, None)
    payload = json.loads(event.model_dump_json())
    assert payload["kind"] == "frame-error" and payload["time"].endswith("Z") and payload["attempt"] is None
    assert parse_message("event", json.dumps(payload | {"later_field": 1})) == event
    assert parse_topic(event_topic("l1", "st1")) == ("l1", "st1", "event")
    assert [k.value for k in EventKind] == [
        "frame-error",
        "source-disconnected",
        "source-connected",
        "worker-stuck",
        "worker-restarted",
        "store-error",
        "engine-building",
        "engine-ready",
        "frame-failed",
        "source-failed",
        "source-restarted",
        "publish-refused",
        "publish-accepted",
        "doctor-probe",
        "model-reloaded",
        "model-rejected",
    ]
    assert EVENT_SEVERITY[EventKind.PUBLISH_REFUSED] == EventSeverity.ERROR
    assert [s.value for s in EventSeverity] == ["info", "warning", "error"]
    assert set(EVENT_SEVERITY) == set(EventKind)
    good = payload | {"kind": "worker-restarted", "source": "worker", "attempt": 2, "retry_in_s": 0.5}
    assert parse_message("event", json.dumps(good)).attempt == 2
    for bad in ({"kind": "reboot"}, {"severity": "fatal"}, {"attempt": 0}, {"retry_in_s": -1}, {"station": "a/b"}):
        with pytest.raises(ValidationError):
            parse_message("event", json.dumps(payload | bad))
    with pytest.raises(ValidationError, match="timezone"):
        EventMessage.model_validate(event.model_dump() | {"time": datetime(2025, 1, 1)})


def test_ids_hashes_and_model_refs_are_stable_and_distinct():
    assert make_result_id("l", "s", 3, 41) == "l:s:3:41" != make_result_id("l", "s", 3, 42)
    assert model_ref("cls", "1.2.0", "ab" * 32) == "cls@1.2.0+abababababab"
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2}) and len(config_hash({})) == 16


def test_checked_in_schema_files_equal_what_the_models_generate():
    documents = schema_documents()
    assert set(documents) == {"status", "result", "alert", "stats", "event", "cmd_reload", "cmd_thresholds", "cmd_ack"}
    checked_in = sorted(path.stem for path in (REPO / "docs" / "schemas").glob("*.json"))
    assert checked_in == sorted(documents)
    for kind, document in documents.items():
        text = (REPO / "docs" / "schemas" / f"{kind}.json").read_text(encoding="utf-8")
        assert text == schema_text(document), f"stale {kind}.json: python -m shared.messages docs/schemas"


def test_the_regenerate_command_writes_every_schema(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == [
        "alert.json",
        "cmd_ack.json",
        "cmd_reload.json",
        "cmd_thresholds.json",
        "event.json",
        "result.json",
        "stats.json",
        "status.json",
    ]
    assert json.loads((tmp_path / "result.json").read_text())["$id"] == "pumpinspect/result/v1"
    assert "result.json" in capsys.readouterr().out


def test_examples_in_the_mes_guide_are_valid_payloads():
    guide = (REPO / "docs" / "mqtt.md").read_text(encoding="utf-8")
    examples = re.findall(r"<!-- example: (\w+) -->\s*```json\n(.*?)```", guide, flags=re.S)
    assert sorted(kind for kind, _ in examples) == ["alert", "event", "result", "stats", "status"]
    for kind, text in examples:
        parsed = parse_message(kind, text)
        assert set(json.loads(text)) == set(type(parsed).model_fields), f"{kind} example lacks or adds fields"
    guide_result = parse_message("result", dict(examples)["result"])
    assert alert_from_result(guide_result) == parse_message("alert", dict(examples)["alert"])
