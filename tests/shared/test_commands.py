"""The command half of the MQTT contract: topics, payloads, acks, and the examples in the MES guide."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.messages import (
    COMMAND_MODELS,
    CommandAck,
    CommandOutcome,
    ReloadCommand,
    ThresholdsCommand,
    command_filter,
    command_topic,
    parse_topic,
)

REPO = Path(__file__).resolve().parents[2]


def test_command_topics_are_the_stations_own_cmd_levels_and_refuse_wildcards():
    assert command_topic("reload", "line1", "st2") == "pumpinspect/line1/st2/cmd/reload"
    assert command_topic("ack", "line1", "st2", prefix="plant/a") == "plant/a/line1/st2/cmd/ack"
    assert command_filter("line1", "st2") == "pumpinspect/line1/st2/cmd/#"
    for bad in (("reboot", "l", "s"), ("reload", "+", "s"), ("reload", "l", "a/b")):
        with pytest.raises(ValueError):
            command_topic(*bad)
    with pytest.raises(ValueError):
        command_filter("+", "st2")
    assert parse_topic(command_topic("reload", "l", "s")) is None  # not a publish topic of a station


def test_commands_need_an_id_of_safe_characters():
    assert ReloadCommand(command_id="a.b:c-1_2", bundle="0.2.0").schema_version == 1
    for payload in ({"bundle": "x"}, {"command_id": "", "bundle": "x"}, {"command_id": "a b", "bundle": "x"}):
        with pytest.raises(ValidationError):
            ReloadCommand.model_validate(payload)
    with pytest.raises(ValidationError):
        ReloadCommand(command_id="x" * 65, bundle="x")
    with pytest.raises(ValidationError):
        ReloadCommand(command_id="r1", bundle="")
    assert ThresholdsCommand(command_id="t1", decision=0.7).pixel is None
    assert set(COMMAND_MODELS) == {"reload", "thresholds"}


def test_command_examples_in_the_mes_guide_are_valid_payloads():
    guide = (REPO / "docs" / "mqtt.md").read_text(encoding="utf-8")
    examples = dict(re.findall(r"<!-- command example: (\w+) -->\s*```json\n(.*?)```", guide, flags=re.S))
    assert sorted(examples) == ["ack", "reload", "thresholds"]
    models = {**COMMAND_MODELS, "ack": CommandAck}
    for kind, text in examples.items():
        fields, known = set(json.loads(text)), set(models[kind].model_fields)
        models[kind].model_validate_json(text)
        assert fields <= known and (fields == known or kind == "thresholds"), f"{kind} example lacks or adds fields"
    assert CommandAck.model_validate_json(examples["ack"]).outcome == CommandOutcome.ACCEPTED
