"""The station's outgoing messages about frames and events, built from what one frame or event knows.

A result of an inspected frame and the ERROR result of a frame that could not be inspected share
every field but the outcome (verdict, defects or error, patch summary), so one builder makes both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from edge.runtime.inspector import Inspection
from edge.sources.base import Frame
from shared.messages import EVENT_SEVERITY, EventKind, EventMessage, PatchSummary, ResultMessage, Verdict

MAX_ERROR_CHARS = 1000


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class StationIdentity:
    """Who publishes: the publisher's session, the line and station ids, the models in force."""

    session: str
    line: str
    station: str
    models: dict[str, str]


def frame_result(frame: Frame, who: StationIdentity, seq: int, result_id: str, **outcome: object) -> ResultMessage:
    """A result for ``frame``; ``outcome`` holds verdict and defects/patches or error."""
    return ResultMessage(
        result_id=result_id,
        seq=seq,
        session=who.session,
        line=who.line,
        station=who.station,
        frame_id=frame.frame_id,
        source=frame.source,
        captured_at=frame.captured_at,
        processed_at=now(),
        frame_width_px=frame.width,
        frame_height_px=frame.height,
        latency_ms=max(0.0, 1000.0 * (time.monotonic() - frame.monotonic_s)),
        models=who.models,
        **outcome,
    )


def inspection_result(inspection: Inspection, who: StationIdentity, seq: int, result_id: str) -> ResultMessage:
    analysis = inspection.analysis
    return frame_result(
        inspection.frame,
        who,
        seq,
        result_id,
        verdict=analysis.verdict,
        defects=analysis.defect_messages(),
        patches=analysis.patch_summary(),
    )


def error_result(frame: Frame, who: StationIdentity, seq: int, result_id: str, reason: str) -> ResultMessage:
    return frame_result(
        frame,
        who,
        seq,
        result_id,
        verdict=Verdict.ERROR,
        error=reason[:MAX_ERROR_CHARS],
        patches=PatchSummary(count=0, max_score=None, flagged=0),
    )


def event_message(kind: EventKind, reason: str, *, line: str, station: str, source: str, ref: str = "") -> EventMessage:
    """An event with the severity the shared table gives its kind (what docs/mqtt.md lists)."""
    return EventMessage(
        line=line,
        station=station,
        time=now(),
        kind=kind.value,
        severity=EVENT_SEVERITY[kind].value,
        source=source,
        ref=ref,
        reason=reason,
    )
