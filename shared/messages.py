"""MQTT contract between a station and its consumers (MES, dashboards): topics and payloads.

Topics are ``{prefix}/{line}/{station}/{kind}`` with kind one of ``status``, ``result``,
``alert``, ``defect_map``, ``stats``, ``event`` (prefix ``pumpinspect`` by default). Payloads are JSON
(``defect_map`` is a PNG) and every JSON payload carries ``schema_version``: fields may be
added within a version, so consumers ignore unknown fields; a removed, renamed or re-meant
field bumps the version. ``docs/mqtt.md`` explains the contract to an MES developer and
``docs/schemas/*.json`` hold the JSON Schemas, regenerated with::

    python -m shared.messages docs/schemas
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import AwareDatetime, BaseModel, Field, model_validator

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "pumpinspect"
TOPIC_KINDS = ("status", "result", "alert", "defect_map", "stats", "event")
LEVEL_PATTERN = r"^[A-Za-z0-9_-]+$"
PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# --- topics -------------------------------------------------------------------------------


class TopicParts(NamedTuple):
    """A station topic taken apart."""

    line: str
    station: str
    kind: str


def _check_level(name: str, value: str, wildcard: bool = False) -> None:
    if wildcard and value == "+":
        return
    if not re.match(LEVEL_PATTERN, value):
        raise ValueError(f"{name} must be one MQTT topic level of [A-Za-z0-9_-], got {value!r}")


def _check_prefix(prefix: str) -> None:
    if not re.match(PREFIX_PATTERN, prefix):
        raise ValueError(f"topic prefix must be levels of [A-Za-z0-9_-] joined by '/', got {prefix!r}")


def station_topic(kind: str, line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``{prefix}/{line}/{station}/{kind}``; refuses wildcards and separators inside levels.

    >>> station_topic("result", "line1", "st2")
    'pumpinspect/line1/st2/result'
    """
    if kind not in TOPIC_KINDS:
        raise ValueError(f"unknown topic kind {kind!r}; one of {', '.join(TOPIC_KINDS)}")
    _check_prefix(prefix)
    _check_level("line", line)
    _check_level("station", station)
    return f"{prefix}/{line}/{station}/{kind}"


def status_topic(line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Retained station state (birth, changes, Last Will)."""
    return station_topic("status", line, station, prefix)


def result_topic(line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """One message per inspected frame."""
    return station_topic("result", line, station, prefix)


def alert_topic(line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """One message per NG frame: what an MES needs to act."""
    return station_topic("alert", line, station, prefix)


def defect_map_topic(line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """PNG defect maps (per the station's policy); ids in MQTT 5 user properties."""
    return station_topic("defect_map", line, station, prefix)


def stats_topic(line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Periodic throughput and health numbers."""
    return station_topic("stats", line, station, prefix)


def event_topic(line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Diagnostics the runtime survives (bad frame, source lost, worker restarted); best effort."""
    return station_topic("event", line, station, prefix)


def topic_filter(kind: str = "+", line: str = "+", station: str = "+", prefix: str = DEFAULT_PREFIX) -> str:
    """A subscription filter; ``+`` for any line, station or kind.

    >>> topic_filter("alert")
    'pumpinspect/+/+/alert'
    """
    if kind != "+" and kind not in TOPIC_KINDS:
        raise ValueError(f"unknown topic kind {kind!r}; one of {', '.join(TOPIC_KINDS)}")
    _check_prefix(prefix)
    _check_level("line", line, wildcard=True)
    _check_level("station", station, wildcard=True)
    return f"{prefix}/{line}/{station}/{kind}"


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> TopicParts | None:
    """(line, station, kind) of a station topic under ``prefix``; None for any other topic."""
    if not topic.startswith(prefix + "/"):
        return None
    levels = topic[len(prefix) + 1 :].split("/")
    if len(levels) != 3 or levels[2] not in TOPIC_KINDS:
        return None
    if not all(re.match(LEVEL_PATTERN, level) for level in levels[:2]):
        return None
    return TopicParts(*levels)


# --- payloads -----------------------------------------------------------------------------


class StationState(str, Enum):
    """Lifecycle of a station as its retained status shows it."""

    STARTING = "starting"
    BUILDING_ENGINE = "building-engine"
    ONLINE = "online"
    DEGRADED = "degraded"
    STOPPED = "stopped"
    OFFLINE = "offline"


class Verdict(str, Enum):
    """Frame verdict: OK (no defect found), NG (no good: at least one defect), or ERROR.

    ERROR means the frame was *not inspected* (the model failed on it, or its result could not
    be built); the result's ``error`` says why. A part with an ERROR verdict passed uninspected:
    an MES should route it to manual inspection, which is why ERROR results also raise an alert.
    """

    OK = "OK"
    NG = "NG"
    ERROR = "ERROR"


ModelRefs = dict[str, str]
_MODELS_DESCRIPTION = "Models that made the verdict: task -> 'name@version+sha256 prefix'."


class Box(BaseModel):
    """Axis-aligned box in frame pixels (origin top-left of the full camera frame, not the ROI)."""

    x: int = Field(ge=0, description="Left edge, px.")
    y: int = Field(ge=0, description="Top edge, px.")
    w: int = Field(gt=0, description="Width, px.")
    h: int = Field(gt=0, description="Height, px.")


class Defect(BaseModel):
    """One connected defect region of the stitched defect map."""

    box: Box = Field(description="Bounding box in frame pixels.")
    area_px: int = Field(gt=0, description="Defect pixels inside the region (frame resolution).")
    max_score: float = Field(ge=0, le=1, description="Highest defect probability in the region.")
    mean_score: float = Field(ge=0, le=1, description="Mean defect probability over the region's pixels.")


class PatchSummary(BaseModel):
    """What the patch classifier saw over all patches of the frame."""

    count: int = Field(ge=0, description="Patches inspected.")
    max_score: float | None = Field(ge=0, le=1, description="Highest classifier probability; null without patches.")
    flagged: int = Field(ge=0, description="Patches at or above the classifier's decision threshold.")


class StatusMessage(BaseModel):
    """Retained station state: birth on every (re)connect, changes, ``offline`` as the Last Will."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Payload format version.")
    line: str = Field(pattern=LEVEL_PATTERN, description="Production line id.")
    station: str = Field(pattern=LEVEL_PATTERN, description="Station id.")
    state: StationState = Field(description="starting | building-engine | online | degraded | stopped | offline.")
    software_version: str = Field(description="Version of the station software.")
    models: ModelRefs = Field(default_factory=dict, description=_MODELS_DESCRIPTION)
    config_hash: str = Field(description="sha256 prefix of the station's resolved settings (secrets masked).")
    session: int = Field(ge=1, description="Process-start counter, persisted; rises on every start.")
    timestamp: AwareDatetime = Field(description="When this state began (for the Will: when the connection opened).")
    problems: list[str] = Field(
        default_factory=list,
        description="Why the station is degraded (e.g. the broker refuses its results), for a human; empty if fine.",
    )
    heartbeat_at: AwareDatetime | None = Field(
        None, description="When this copy was published; the station re-publishes a live state as a heartbeat."
    )
    valid_until: AwareDatetime | None = Field(
        None,
        description="A live state (starting, building-engine, online, degraded) is true only until then unless a "
        "newer status arrives: past it, presume the station gone. Null for stopped/offline and without heartbeats.",
    )


class ResultMessage(BaseModel):
    """The verdict on one frame; published for every frame, delivered at least once, in order."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Payload format version.")
    result_id: str = Field(min_length=1, description="Idempotency key: a redelivered result has the same id.")
    seq: int = Field(ge=1, description="Per-station sequence number, persisted; a jump means a lost result.")
    session: int = Field(ge=1, description="Process-start counter of the station when it made this result.")
    line: str = Field(pattern=LEVEL_PATTERN, description="Production line id.")
    station: str = Field(pattern=LEVEL_PATTERN, description="Station id.")
    frame_id: str = Field(min_length=1, description="Frame id given by the source (camera, folder).")
    source: str = Field(description="Frame source name.")
    captured_at: AwareDatetime = Field(description="When the frame was captured.")
    processed_at: AwareDatetime = Field(description="When the verdict was made.")
    frame_width_px: int = Field(gt=0, description="Frame width; boxes are in this frame's pixels.")
    frame_height_px: int = Field(gt=0, description="Frame height.")
    verdict: Verdict = Field(description="OK, NG, or ERROR (not inspected; see error).")
    error: str | None = Field(
        None, description="Why the frame could not be inspected; set exactly when verdict is ERROR."
    )
    defects: list[Defect] = Field(default_factory=list, description="Defect regions, largest max_score first.")
    patches: PatchSummary = Field(description="Classifier summary over the frame's patches.")
    latency_ms: float = Field(ge=0, description="Capture to verdict, ms.")
    models: ModelRefs = Field(default_factory=dict, description=_MODELS_DESCRIPTION)

    @model_validator(mode="after")
    def _error_with_error_verdict(self) -> ResultMessage:
        if (self.verdict == Verdict.ERROR) != (self.error is not None):
            raise ValueError("error must be set exactly when verdict is ERROR")
        return self


class AlertMessage(BaseModel):
    """The small subset of an NG or ERROR result an MES needs to act (reject the part, stop the line).

    ``verdict`` ERROR means the part was not inspected (``reason`` says why): check it by hand.
    """

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Payload format version.")
    result_id: str = Field(min_length=1, description="Same id as the result it summarises.")
    seq: int = Field(ge=1, description="Sequence number of that result.")
    frame_id: str = Field(min_length=1, description="Frame id given by the source.")
    line: str = Field(pattern=LEVEL_PATTERN, description="Production line id.")
    station: str = Field(pattern=LEVEL_PATTERN, description="Station id.")
    time: AwareDatetime = Field(description="When the frame was captured.")
    defect_count: int = Field(ge=0, description="Number of defect regions.")
    worst_score: float = Field(ge=0, le=1, description="Highest defect probability of any region or patch.")
    boxes: list[Box] = Field(default_factory=list, description="Defect boxes in frame pixels.")
    verdict: Verdict = Field(Verdict.NG, description="NG (defects found) or ERROR (not inspected).")
    reason: str | None = Field(None, description="With verdict ERROR: why the frame was not inspected.")


class StatsMessage(BaseModel):
    """Throughput and health every ``stats_interval_s``; QoS 0, a missed one is not resent."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Payload format version.")
    line: str = Field(pattern=LEVEL_PATTERN, description="Production line id.")
    station: str = Field(pattern=LEVEL_PATTERN, description="Station id.")
    timestamp: AwareDatetime = Field(description="When the numbers were taken.")
    uptime_s: float = Field(ge=0, description="Seconds since the process started.")
    fps: float = Field(ge=0, description="Frames inspected per second over the last interval.")
    latency_p50_ms: float | None = Field(ge=0, description="Median capture-to-verdict latency; null without frames.")
    latency_p99_ms: float | None = Field(ge=0, description="99th percentile latency; null without frames.")
    queue_depths: dict[str, int] = Field(default_factory=dict, description="Items waiting per internal queue.")
    frames_skipped: int = Field(0, ge=0, description="Frames the source skipped because inference was busy (total).")
    frames_dropped: int = Field(0, ge=0, description="Frames dropped from full queues (total).")
    errors: int = Field(0, ge=0, description="Errors counted since start.")
    uncertain_logged: int = Field(0, ge=0, description="Uncertain patches written to the store (total).")
    outbox_depth: int = Field(0, ge=0, description="Messages waiting in the durable outbox for the broker.")
    outbox_dropped: int = Field(0, ge=0, description="Messages dropped because the outbox was full (total).")
    outbox_expired: int = Field(0, ge=0, description="Messages dropped after their message expiry (total).")
    outbox_refused: int = Field(
        0, ge=0, description="Messages the broker refused (e.g. not authorised), kept as dead letters (total)."
    )
    dead_letters: int = Field(0, ge=0, description="Refused messages kept in the station's dead-letter table now.")
    dead_letters_evicted: int = Field(
        0, ge=0, description="Dead letters deleted to stay within the dead-letter bound, oldest first (total)."
    )


class EventKind(str, Enum):
    """What happened; the runtime carries on after every one of these."""

    FRAME_ERROR = "frame-error"
    """An input frame was unusable (corrupt, truncated, empty, wrong size or type) and was skipped."""
    SOURCE_DISCONNECTED = "source-disconnected"
    """A frame source (camera, folder, stream) was lost; the runtime retries it."""
    SOURCE_CONNECTED = "source-connected"
    """A frame source (re)connected and delivers frames again."""
    WORKER_STUCK = "worker-stuck"
    """The watchdog found the inference worker making no progress (a restart follows)."""
    WORKER_RESTARTED = "worker-restarted"
    """The watchdog restarted the inference worker (after a crash or a hang)."""
    STORE_ERROR = "store-error"
    """Writing to the station's local store failed (disk full, I/O error); inspection goes on."""
    ENGINE_BUILDING = "engine-building"
    """Building the inference engine for this device began (first boot or after an upgrade)."""
    ENGINE_READY = "engine-ready"
    """The inference engine is built or loaded and ready."""
    FRAME_FAILED = "frame-failed"
    """A frame was read but the models could not judge it (e.g. NaN outputs); its result has verdict ERROR."""
    SOURCE_FAILED = "source-failed"
    """The frame source stopped on an unexpected error; it is restarted within a budget, else the station exits 1."""
    SOURCE_RESTARTED = "source-restarted"
    """The frame source was opened again after it failed."""
    PUBLISH_REFUSED = "publish-refused"
    """The broker refused messages to a topic (e.g. not authorised); they are kept as dead letters."""
    PUBLISH_ACCEPTED = "publish-accepted"
    """The broker accepts messages to a topic again after refusing some."""
    DOCTOR_PROBE = "doctor-probe"
    """``pump-edge doctor`` checking that the broker lets the station publish; ignore it."""
    MODEL_RELOADED = "model-reloaded"
    """A new bundle (or new thresholds) took over between two frames; ``reason`` names the versions."""
    MODEL_REJECTED = "model-rejected"
    """A new bundle or thresholds change was refused (``reason`` says why); the running models go on."""


class EventSeverity(str, Enum):
    """How much an operator should care: ``info`` (expected), ``warning`` (degraded), ``error`` (lost work)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


EVENT_SEVERITY: dict[EventKind, EventSeverity] = {
    EventKind.FRAME_ERROR: EventSeverity.WARNING,
    EventKind.SOURCE_DISCONNECTED: EventSeverity.ERROR,
    EventKind.SOURCE_CONNECTED: EventSeverity.INFO,
    EventKind.WORKER_STUCK: EventSeverity.ERROR,
    EventKind.WORKER_RESTARTED: EventSeverity.WARNING,
    EventKind.STORE_ERROR: EventSeverity.ERROR,
    EventKind.ENGINE_BUILDING: EventSeverity.INFO,
    EventKind.ENGINE_READY: EventSeverity.INFO,
    EventKind.PUBLISH_REFUSED: EventSeverity.ERROR,
    EventKind.PUBLISH_ACCEPTED: EventSeverity.INFO,
    EventKind.DOCTOR_PROBE: EventSeverity.INFO,
    EventKind.FRAME_FAILED: EventSeverity.ERROR,
    EventKind.SOURCE_FAILED: EventSeverity.ERROR,
    EventKind.SOURCE_RESTARTED: EventSeverity.WARNING,
    EventKind.MODEL_RELOADED: EventSeverity.INFO,
    EventKind.MODEL_REJECTED: EventSeverity.WARNING,
}
"""The usual severity of each event kind (what docs/mqtt.md lists); a sender may choose another."""


class EventMessage(BaseModel):
    """A diagnostic event; QoS 1, not retained, not durable: dropped (and counted) while disconnected."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Payload format version.")
    line: str = Field(pattern=LEVEL_PATTERN, description="Production line id.")
    station: str = Field(pattern=LEVEL_PATTERN, description="Station id.")
    time: AwareDatetime = Field(description="When it happened.")
    kind: EventKind = Field(
        description=" | ".join(kind.value for kind in EventKind) + " (docs/mqtt.md, deploy/README.md: what each means)."
    )
    severity: EventSeverity = Field(description="info | warning | error.")
    source: str = Field("", description="Frame source or component concerned (camera, folder, worker); may be empty.")
    ref: str = Field("", description="Frame id or file path concerned; may be empty.")
    reason: str = Field(description="What happened, for a human.")
    attempt: int | None = Field(None, ge=1, description="Retry or restart number, 1 for the first; null if none.")
    retry_in_s: float | None = Field(None, ge=0, description="Seconds until the next retry; null if none planned.")


# --- commands (operator/MES -> station) -----------------------------------------------------

COMMAND_KINDS = ("reload", "thresholds")
COMMAND_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


def command_topic(command: str, line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``{prefix}/{line}/{station}/cmd/{command}``, command one of ``reload``, ``thresholds``, ``ack``.

    >>> command_topic("reload", "line1", "st2")
    'pumpinspect/line1/st2/cmd/reload'
    """
    if command not in (*COMMAND_KINDS, "ack"):
        raise ValueError(f"unknown command {command!r}; one of {', '.join((*COMMAND_KINDS, 'ack'))}")
    _check_prefix(prefix)
    _check_level("line", line)
    _check_level("station", station)
    return f"{prefix}/{line}/{station}/cmd/{command}"


def command_filter(line: str, station: str, prefix: str = DEFAULT_PREFIX) -> str:
    """What a station subscribes to: its own ``cmd/#`` and nothing else."""
    _check_prefix(prefix)
    _check_level("line", line)
    _check_level("station", station)
    return f"{prefix}/{line}/{station}/cmd/#"


class ReloadCommand(BaseModel):
    """``cmd/reload``: run another bundle; QoS 1. Repeating a ``command_id`` never applies it twice."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Payload format version.")
    command_id: str = Field(pattern=COMMAND_ID_PATTERN, description="Idempotency key chosen by the sender.")
    bundle: str = Field(
        min_length=1,
        max_length=1000,
        description="Bundle folder on the station (absolute path), or a bundle version (or folder name) "
        "looked up in the station's bundles.watch_dir.",
    )


class ThresholdsCommand(BaseModel):
    """``cmd/thresholds``: new decision thresholds from the next frame on; QoS 1. Omitted fields keep their value."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Payload format version.")
    command_id: str = Field(pattern=COMMAND_ID_PATTERN, description="Idempotency key chosen by the sender.")
    decision: float | None = Field(
        None, description="Classifier: a patch is flagged when its probability >= decision; 0.01 to 0.99."
    )
    pixel: float | None = Field(
        None, description="Segmenter: a pixel is a defect when its probability > pixel; 0.01 to 0.99."
    )
    cascade: float | None = Field(
        None, description="Classifier probability from which the segmenter looks at a patch; 0.01 to 0.99."
    )


THRESHOLD_RANGE = (0.01, 0.99)
"""Bounds a thresholds command must stay within (a station checks them and names the field it refuses)."""


class CommandOutcome(str, Enum):
    """What a station did with a command."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class CommandAck(BaseModel):
    """``cmd/ack``: the station's answer to each command (again for a repeated id); QoS 1, not retained."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Payload format version.")
    command_id: str = Field(description="The id of the command answered (empty when the payload had none).")
    command: str = Field(description="reload | thresholds | the unknown command's topic level.")
    line: str = Field(pattern=LEVEL_PATTERN, description="Production line id.")
    station: str = Field(pattern=LEVEL_PATTERN, description="Station id.")
    time: AwareDatetime = Field(description="When the station answered.")
    outcome: CommandOutcome = Field(description="accepted | rejected.")
    reason: str = Field("", description="Why it was rejected, or what changed; for a human.")
    repeated: bool = Field(False, description="True when this id was seen before: answered again, not applied again.")
    models: ModelRefs = Field(default_factory=dict, description="Models in force after the command.")
    thresholds: dict[str, float | None] = Field(
        default_factory=dict, description="Thresholds in force after the command (decision, pixel, cascade)."
    )


COMMAND_MODELS: dict[str, type[BaseModel]] = {"reload": ReloadCommand, "thresholds": ThresholdsCommand}

MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    "status": StatusMessage,
    "result": ResultMessage,
    "alert": AlertMessage,
    "stats": StatsMessage,
    "event": EventMessage,
}
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    **MESSAGE_MODELS,
    "cmd_reload": ReloadCommand,
    "cmd_thresholds": ThresholdsCommand,
    "cmd_ack": CommandAck,
}
"""Every JSON payload with a schema file: ``docs/schemas/{key}.json`` (``cmd_x`` is topic ``cmd/x``)."""


def alert_from_result(result: ResultMessage) -> AlertMessage:
    """The alert for an NG or ERROR result (worst score: regions first, else the classifier's)."""
    scores = [defect.max_score for defect in result.defects]
    if result.patches.max_score is not None:
        scores.append(result.patches.max_score)
    return AlertMessage(
        result_id=result.result_id,
        seq=result.seq,
        frame_id=result.frame_id,
        line=result.line,
        station=result.station,
        time=result.captured_at,
        defect_count=len(result.defects),
        worst_score=max(scores, default=0.0),
        boxes=[defect.box for defect in result.defects],
        verdict=result.verdict,
        reason=result.error,
    )


def make_result_id(line: str, station: str, session: int, seq: int) -> str:
    """Idempotency key ``line:station:session:seq``, unique per station because seq never repeats."""
    return f"{line}:{station}:{session}:{seq}"


def model_ref(name: str, version: str, sha256: str) -> str:
    """``name@version+sha256[:12]``: names a model exactly, short enough for every message."""
    return f"{name}@{version}+{sha256[:12]}"


def config_hash(settings_json: dict[str, Any]) -> str:
    """sha256 prefix of settings dumped with ``model_dump(mode="json")`` (secrets already masked)."""
    canonical = json.dumps(settings_json, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_message(kind: str, payload: bytes | str) -> BaseModel:
    """A JSON payload of topic ``kind`` as its model; raises ``pydantic.ValidationError``."""
    if kind not in MESSAGE_MODELS:
        raise ValueError(f"no JSON model for topic kind {kind!r}; one of {', '.join(MESSAGE_MODELS)}")
    return MESSAGE_MODELS[kind].model_validate_json(payload)


# --- JSON Schema files --------------------------------------------------------------------


def schema_documents() -> dict[str, dict[str, Any]]:
    """JSON Schema of every JSON payload, keyed by topic kind (what ``docs/schemas`` holds)."""
    documents = {}
    for kind, model in SCHEMA_MODELS.items():
        schema = model.model_json_schema()
        documents[kind] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"{DEFAULT_PREFIX}/{kind.replace('cmd_', 'cmd/')}/v{SCHEMA_VERSION}",
            **schema,
        }
    return documents


def schema_text(document: dict[str, Any]) -> str:
    """The exact file text of a schema (stable key order, trailing newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write ``{kind}.json`` for every payload into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, document in schema_documents().items():
        path = out_dir / f"{kind}.json"
        path.write_text(schema_text(document), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.messages [OUT_DIR]``: regenerate the JSON Schema files."""
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else Path("docs/schemas")
    for path in write_schemas(out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
