"""Commands to one station (``cmd/reload``, ``cmd/thresholds``): parse, apply once, acknowledge, log.

The publisher's network thread only queues a command here; one thread of this desk applies
them in arrival order, so a reload that builds a TensorRT engine for minutes never blocks
MQTT, and two commands never race. Every command is answered on ``cmd/ack``. Command ids make
commands idempotent: a repeated id is answered again (``repeated: true``) with the first
answer, never applied twice. The ids remembered are the last ``remember`` ones; with a
``journal`` (the station's ``<data_dir>/commands.jsonl``) every answer is appended and fsynced
before it is sent, and read back at start-up, so an id stays answered across a restart too (a
QoS 1 command redelivered after a crash is not applied again). A torn last line (power cut) is
skipped; the journal is rewritten (temp file, then rename) when it holds twice ``remember`` lines.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ValidationError

from shared.messages import COMMAND_MODELS, CommandAck, CommandOutcome

log = logging.getLogger("pump.edge.commands")
COMMAND_JOURNAL_NAME = "commands.jsonl"  # in the station's data_dir


@dataclass(frozen=True)
class CommandResult:
    """What a handler did with a command: accepted or not, why, and what is in force afterwards."""

    accepted: bool
    reason: str
    models: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float | None] = field(default_factory=dict)


Handler = Callable[[BaseModel], CommandResult]


class CommandDesk:
    """Applies a station's commands one at a time and answers each on ``cmd/ack``."""

    def __init__(
        self,
        line: str,
        station: str,
        handlers: dict[str, Handler],
        send_ack: Callable[[CommandAck], object],
        remember: int = 1000,
        journal: Path | None = None,
    ) -> None:
        self.line, self.station = line, station
        self._handlers, self._send_ack = handlers, send_ack
        self._remember = remember
        self._answers: OrderedDict[str, CommandAck] = OrderedDict()
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._journal = Path(journal) if journal is not None else None
        self._journal_lines = 0
        if self._journal is not None:
            self._load_journal()

    def _load_journal(self) -> None:
        """The answers of earlier runs (the last ``remember``); a line that does not parse is skipped and logged."""
        if not self._journal.is_file():
            return
        lines = self._journal.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                ack = CommandAck.model_validate_json(line)
            except ValidationError:
                log.warning("%s: line %d is not a command answer (a torn write?); skipped", self._journal, number)
                continue
            self._answers[ack.command_id] = ack
            self._answers.move_to_end(ack.command_id)
        while len(self._answers) > self._remember:
            self._answers.popitem(last=False)
        self._journal_lines = len(lines)
        log.info("%s: %d command ids remembered from earlier runs", self._journal, len(self._answers))

    def _record(self, ack: CommandAck) -> None:
        """Append one answer, durably, before it is sent; compact when the journal has grown."""
        if self._journal is None:
            return
        self._journal.parent.mkdir(parents=True, exist_ok=True)
        if self._journal_lines >= 2 * self._remember:
            tmp = self._journal.with_name(f".{self._journal.name}.tmp-{os.getpid()}")
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.writelines(answer.model_dump_json() + "\n" for answer in self._answers.values())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._journal)
            self._journal_lines = len(self._answers)
            return
        with open(self._journal, "a", encoding="utf-8") as handle:
            handle.write(ack.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._journal_lines += 1

    def submit(self, command: str, payload: bytes) -> None:
        """Queue one command (called from the MQTT network thread: never blocks)."""
        self._queue.put((command, payload))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="commands", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the command in progress (a reload may be building), then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._send_ack(self.handle(*item))
            except Exception:  # noqa: BLE001 - a bad command must never stop the desk
                log.exception("command %s failed", item[0])

    def handle(self, command: str, payload: bytes) -> CommandAck:
        """Parse, apply (once per id) and return the ack for one command; logs what it did."""
        model = COMMAND_MODELS.get(command)
        if model is None:
            return self._reject(command, "", f"unknown command {command!r}; one of {', '.join(COMMAND_MODELS)}")
        try:
            parsed = model.model_validate_json(payload)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "payload"
            return self._reject(command, _command_id(payload), f"invalid payload: {where}: {first['msg']}")
        command_id = parsed.command_id  # type: ignore[attr-defined]
        if command_id in self._answers:
            ack = self._answers[command_id].model_copy(update={"repeated": True, "time": _now()})
            log.info("command %s %s repeated: answered again (%s), not applied", command, command_id, ack.outcome.value)
            return ack
        result = self._handlers[command](parsed)
        ack = self._ack(command, command_id, result)
        self._answers[command_id] = ack
        while len(self._answers) > self._remember:
            self._answers.popitem(last=False)
        try:
            self._record(ack)
        except OSError as error:  # a full disk must not stop the desk: the id is still remembered in memory
            log.error("command journal %s: %s (the id is remembered until the station restarts)", self._journal, error)
        log.log(
            logging.INFO if result.accepted else logging.WARNING,
            "command %s %s %s: %s",
            command,
            command_id,
            ack.outcome.value,
            result.reason,
        )
        return ack

    def _ack(self, command: str, command_id: str, result: CommandResult) -> CommandAck:
        return CommandAck(
            command_id=command_id,
            command=command,
            line=self.line,
            station=self.station,
            time=_now(),
            outcome=CommandOutcome.ACCEPTED if result.accepted else CommandOutcome.REJECTED,
            reason=result.reason[:1000],
            models=result.models,
            thresholds=result.thresholds,
        )

    def _reject(self, command: str, command_id: str, reason: str) -> CommandAck:
        log.warning("command %s %s rejected: %s", command[:64], command_id or "(no id)", reason)
        return self._ack(command[:64], command_id, CommandResult(False, reason))


def _command_id(payload: bytes) -> str:
    """The id of an invalid command, when one can be read (so the sender can match the rejection)."""
    try:
        value = json.loads(payload).get("command_id", "")
    except (ValueError, AttributeError):
        return ""
    return value[:64] if isinstance(value, str) else ""


def _now() -> datetime:
    return datetime.now(timezone.utc)
