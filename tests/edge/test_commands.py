"""The station's command desk without a broker: parse, apply once per id, answer every command."""

from __future__ import annotations

import json
from pathlib import Path

from edge.publish.commands import CommandDesk, CommandResult
from shared.messages import CommandAck, CommandOutcome


def make_desk(applied: list[str], journal: Path | None = None) -> tuple[CommandDesk, list[CommandAck]]:
    def reload(command) -> CommandResult:  # noqa: ANN001
        applied.append(command.bundle)
        ok = command.bundle != "bad"
        return CommandResult(ok, "loaded" if ok else "sha256 mismatch", {"classifier": f"c@{command.bundle}+x"})

    def thresholds(command) -> CommandResult:  # noqa: ANN001
        applied.append(f"decision={command.decision}")
        return CommandResult(True, "ok", {}, {"decision": command.decision})

    sent: list[CommandAck] = []
    handlers = {"reload": reload, "thresholds": thresholds}
    return CommandDesk("l1", "s1", handlers, sent.append, remember=2, journal=journal), sent


def payload(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_repeated_command_id_is_answered_again_but_applied_once():
    applied: list[str] = []
    desk, _ = make_desk(applied)
    first = desk.handle("reload", payload(command_id="r1", bundle="0.2.0"))
    again = desk.handle("reload", payload(command_id="r1", bundle="0.3.0"))
    assert applied == ["0.2.0"]
    assert (first.outcome, first.repeated, again.outcome, again.repeated) == (
        CommandOutcome.ACCEPTED,
        False,
        CommandOutcome.ACCEPTED,
        True,
    )
    assert again.models == first.models == {"classifier": "c@0.2.0+x"}
    rejected = desk.handle("reload", payload(command_id="r2", bundle="bad"))
    assert rejected.outcome == CommandOutcome.REJECTED and rejected.reason == "sha256 mismatch"
    assert desk.handle("reload", payload(command_id="r2", bundle="bad")).repeated  # a rejection is remembered too
    assert applied == ["0.2.0", "bad"]


def test_only_the_last_ids_are_remembered():
    applied: list[str] = []
    desk, _ = make_desk(applied)
    for command_id in ("a", "b", "c"):
        desk.handle("thresholds", payload(command_id=command_id, decision=0.6))
    desk.handle("thresholds", payload(command_id="a", decision=0.6))  # forgotten (remember=2): applied again
    assert len(applied) == 4


def test_invalid_and_unknown_commands_are_rejected_with_the_field_named_and_nothing_applied():
    applied: list[str] = []
    desk, _ = make_desk(applied)
    no_id = desk.handle("reload", payload(bundle="0.2.0"))
    assert (no_id.command_id, no_id.outcome) == ("", CommandOutcome.REJECTED) and "command_id" in no_id.reason
    bad_value = desk.handle("thresholds", payload(command_id="t1", decision="high"))
    assert bad_value.command_id == "t1" and "decision" in bad_value.reason
    assert desk.handle("reload", b"not json").outcome == CommandOutcome.REJECTED
    unknown = desk.handle("reboot", payload(command_id="x1"))
    assert unknown.outcome == CommandOutcome.REJECTED and "unknown command" in unknown.reason
    assert applied == []


def test_the_desk_thread_answers_queued_commands_in_order():
    applied: list[str] = []
    desk, sent = make_desk(applied)
    desk.start()
    for index in range(3):
        desk.submit("reload", payload(command_id=f"r{index}", bundle=f"0.{index}.0"))
    desk.stop()
    assert [ack.command_id for ack in sent] == ["r0", "r1", "r2"] and applied == ["0.0.0", "0.1.0", "0.2.0"]


def test_the_journal_keeps_answered_ids_across_a_restart_and_survives_a_torn_line(tmp_path: Path):
    journal = tmp_path / "data" / "commands.jsonl"
    applied: list[str] = []
    desk, _ = make_desk(applied, journal)
    desk.handle("reload", payload(command_id="r1", bundle="0.2.0"))
    desk.handle("thresholds", payload(command_id="t1", decision=0.6))
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write('{"schema_version": 1, "command_id": "torn')  # power cut mid-line
    restarted, _ = make_desk(applied, journal)  # a new process: memory is empty, the journal is not
    again = restarted.handle("reload", payload(command_id="r1", bundle="0.2.0"))
    assert again.repeated and applied == ["0.2.0", "decision=0.6"], "a redelivered command is not applied again"
    restarted.handle("reload", payload(command_id="r3", bundle="0.3.0"))
    assert applied[-1] == "0.3.0"


def test_the_journal_is_compacted_to_the_ids_it_remembers(tmp_path: Path):
    journal = tmp_path / "commands.jsonl"
    desk, _ = make_desk([], journal)
    for index in range(9):  # remember=2: compacted whenever it holds 4 lines
        desk.handle("thresholds", payload(command_id=f"c{index}", decision=0.6))
    lines = journal.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 4 and [json.loads(line)["command_id"] for line in lines][-1] == "c8"
    assert not list(tmp_path.glob(".commands.jsonl.tmp-*"))
