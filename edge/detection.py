"""Frame-level detection of planted defects: does the station find what was put there?

Patch metrics (IoU, F1) say how a model does on patches; a line cares about frames. Given
frames whose defects are known (the synthetic renderer's ``frames.jsonl``: one record per
frame with ``image`` and ``defects[].bbox = [x, y, w, h]`` in frame pixels), this runs the
station's own :class:`~edge.runtime.inspector.Inspector` on each frame and scores:

- **region recall**: planted defects inside the inspected ROI that a found defect region
  touches (boxes intersect after growing the planted box by ``margin_px``);
- **frame recall**: frames with a planted defect that are judged NG;
- **false NG**: clean frames (nothing planted inside the ROI) judged NG;
- **spurious regions**: found regions that touch no planted defect.

The matching is pure (:func:`match_regions`), so tests and the demo use it directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.backends import create_backend
from edge.config import EdgeSettings
from edge.postprocess import Thresholds
from edge.runtime.inspector import Inspector, open_inspector
from edge.runtime.station import load_station_bundles
from edge.sources.base import Frame, utc_now
from edge.sources.decode import read_image_file
from edge.tiling import FrameTiler
from shared.messages import ResultMessage, Verdict
from shared.pixels import normalize_pixels
from shared.tiling import Roi

DEFAULT_MARGIN_PX = 8  # a found box this close to a planted one counts (stitching blurs edges by a pixel or two)

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels


def _touch(a: Box, b: Box, margin_px: int) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return (
        ax - margin_px < bx + bw and bx < ax + aw + margin_px and ay - margin_px < by + bh and by < ay + ah + margin_px
    )


def inside(box: Box, roi: Roi) -> bool:
    """Whether a box's centre lies in the ROI (a defect the station is meant to see)."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return roi.x <= cx < roi.x + roi.width and roi.y <= cy < roi.y + roi.height


def match_regions(
    planted: Sequence[Box], found: Sequence[Box], margin_px: int = DEFAULT_MARGIN_PX
) -> tuple[list[bool], list[bool]]:
    """(for each planted box: found?, for each found box: matches a planted one?)."""
    planted_hit = [any(_touch(p, f, margin_px) for f in found) for p in planted]
    found_hit = [any(_touch(p, f, margin_px) for p in planted) for f in found]
    return planted_hit, found_hit


@dataclass(frozen=True)
class PlantedFrame:
    """One frame with its planted defects (``kind`` and box per defect)."""

    frame_id: str
    image: Path
    defects: tuple[tuple[str, Box], ...]


def read_planted_frames(folder: Path) -> list[PlantedFrame]:
    """Frames and planted defects from ``folder/frames.jsonl``; a bad line names its number and field."""
    folder = Path(folder)
    index = folder / "frames.jsonl"
    if not index.is_file():
        raise ValueError(f"{index}: not found (expected the synthetic renderer's frames.jsonl)")
    frames = []
    for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            defects = tuple(
                (str(d.get("kind", "defect")), tuple(int(v) for v in d["bbox"])) for d in record.get("defects", [])
            )
            if any(len(box) != 4 for _, box in defects):
                raise ValueError("defects[].bbox must be [x, y, w, h]")
            frames.append(PlantedFrame(str(record["id"]), folder / record["image"], defects))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{index} line {number}: {error!r} (expected id, image and defects[].bbox)") from None
    if not frames:
        raise ValueError(f"{index}: no frames listed")
    return frames


@dataclass
class FrameOutcome:
    """What the station concluded on one planted frame."""

    frame_id: str
    verdict: str
    planted: list[dict[str, Any]]  # kind, box, found
    found: list[dict[str, Any]]  # box, area_px, max_score, matched
    outside_roi: int  # planted defects the ROI does not cover (not counted)
    segment_ms: float
    frame_ms: float

    @property
    def clean(self) -> bool:
        return not self.planted


@dataclass
class DetectionReport:
    """Frame-level figures over a set of planted frames."""

    frames: int
    defect_frames: int
    clean_frames: int
    planted_regions: int
    found_regions: int
    region_recall: float | None
    frame_recall: float | None
    false_ng_rate: float | None
    spurious_regions_per_frame: float
    recall_by_kind: dict[str, float]
    mean_frame_ms: float
    mean_segment_ms: float
    segmented_patches_per_frame: float
    outcomes: list[FrameOutcome] = field(default_factory=list)

    def to_dict(self, with_frames: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_frames:
            data.pop("outcomes")
        return data


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def summarize(outcomes: list[FrameOutcome], segmented_patches: float = 0.0) -> DetectionReport:
    """The report's figures from per-frame outcomes (pure)."""
    planted = [p for o in outcomes for p in o.planted]
    found = [f for o in outcomes for f in o.found]
    defect_frames = [o for o in outcomes if not o.clean]
    clean_frames = [o for o in outcomes if o.clean]
    kinds = sorted({p["kind"] for p in planted})
    by_kind = {
        kind: _share(sum(p["found"] for p in planted if p["kind"] == kind), sum(p["kind"] == kind for p in planted))
        for kind in kinds
    }
    frames = len(outcomes) or 1
    return DetectionReport(
        frames=len(outcomes),
        defect_frames=len(defect_frames),
        clean_frames=len(clean_frames),
        planted_regions=len(planted),
        found_regions=len(found),
        region_recall=_share(sum(p["found"] for p in planted), len(planted)),
        frame_recall=_share(sum(o.verdict == "NG" for o in defect_frames), len(defect_frames)),
        false_ng_rate=_share(sum(o.verdict == "NG" for o in clean_frames), len(clean_frames)),
        spurious_regions_per_frame=round(sum(not f["matched"] for f in found) / frames, 3),
        recall_by_kind=by_kind,
        mean_frame_ms=round(sum(o.frame_ms for o in outcomes) / frames, 2),
        mean_segment_ms=round(sum(o.segment_ms for o in outcomes) / frames, 2),
        segmented_patches_per_frame=round(segmented_patches, 2),
        outcomes=outcomes,
    )


def _outcome(
    frame: PlantedFrame,
    roi: Roi,
    verdict: str,
    regions: Sequence[tuple[Box, int, float]],
    margin_px: int,
    segment_ms: float,
    frame_ms: float,
) -> FrameOutcome:
    """Planted defects inside ``roi`` matched against found regions given as (box, area_px, max_score)."""
    counted = [(kind, box) for kind, box in frame.defects if inside(box, roi)]
    found_boxes = [box for box, _, _ in regions]
    planted_hit, found_hit = match_regions([box for _, box in counted], found_boxes, margin_px)
    return FrameOutcome(
        frame_id=frame.frame_id,
        verdict=verdict,
        planted=[{"kind": k, "box": list(b), "found": hit} for (k, b), hit in zip(counted, planted_hit, strict=True)],
        found=[
            {"box": list(box), "area_px": area_px, "max_score": round(max_score, 4), "matched": hit}
            for (box, area_px, max_score), hit in zip(regions, found_hit, strict=True)
        ],
        outside_roi=len(frame.defects) - len(counted),
        segment_ms=segment_ms,
        frame_ms=frame_ms,
    )


def score_frame(frame: PlantedFrame, inspection, margin_px: int = DEFAULT_MARGIN_PX) -> FrameOutcome:  # noqa: ANN001
    """Match one inspection's defect regions against the frame's planted defects."""
    regions = [((r.x, r.y, r.w, r.h), r.area_px, r.max_score) for r in inspection.analysis.defects]
    return _outcome(
        frame,
        inspection.layout.roi,
        Verdict(inspection.analysis.verdict).value,
        regions,
        margin_px,
        segment_ms=round(1000 * inspection.seconds.get("segment", 0.0), 2),
        frame_ms=round(1000 * sum(inspection.seconds.values()), 2),
    )


def score_result(
    frame: PlantedFrame, result: ResultMessage, roi: Roi, margin_px: int = DEFAULT_MARGIN_PX
) -> FrameOutcome:
    """Match a station's published result (what an MES receives) against the frame's planted defects.

    The same scoring as :func:`score_frame`, for a station that ran elsewhere: ``roi`` is the
    station's inspected box (``shared.tiling.crop_roi`` of the frame size and ``geometry.crop_px``,
    or its fixed ``roi``); ``frame_ms`` is the result's capture-to-verdict latency.

    Example:
        >>> from datetime import datetime, timezone
        >>> now = datetime.now(timezone.utc)
        >>> result = ResultMessage(
        ...     result_id="r1", seq=1, session=1, line="l", station="s", frame_id="f-000001", source="folder",
        ...     captured_at=now, processed_at=now, frame_width_px=100, frame_height_px=100, verdict="NG",
        ...     defects=[{"box": {"x": 12, "y": 10, "w": 5, "h": 5}, "area_px": 20, "max_score": 0.9,
        ...               "mean_score": 0.7}], patches={"count": 4, "max_score": 0.8, "flagged": 1}, latency_ms=5.0)
        >>> planted = PlantedFrame("f", Path("f.png"), (("pit", (10, 10, 6, 6)), ("scratch", (60, 60, 20, 2))))
        >>> outcome = score_result(planted, result, Roi(0, 0, 100, 100))
        >>> [p["found"] for p in outcome.planted], outcome.verdict
        ([True, False], 'NG')
    """
    regions = [((d.box.x, d.box.y, d.box.w, d.box.h), d.area_px, d.max_score) for d in result.defects]
    verdict = Verdict(result.verdict).value
    return _outcome(frame, roi, verdict, regions, margin_px, segment_ms=0.0, frame_ms=round(result.latency_ms, 2))


def evaluate_detection(
    settings: EdgeSettings,
    frames_dir: Path,
    *,
    cascade: bool | None = None,
    limit: int | None = None,
    margin_px: int = DEFAULT_MARGIN_PX,
) -> DetectionReport:
    """Run the station's inspector (its bundles, backend, thresholds) on planted frames and score them.

    ``cascade`` None follows ``pipeline.cascade``; frames are read with the source's pixel budget.
    """
    frames = read_planted_frames(frames_dir)[:limit]
    bundles, geometry = load_station_bundles(settings)
    manifests = {task: bundle.manifest for task, bundle in bundles.items()}
    thresholds = Thresholds.from_bundles(manifests.get("classifier"), manifests.get("segmenter"), settings.postprocess)
    tiler = FrameTiler(geometry, next(iter(bundles.values())).manifest.input, settings.roi)
    use_cascade = settings.pipeline.cascade if cascade is None else cascade
    inspector: Inspector = open_inspector(
        tiler,
        thresholds,
        settings.postprocess,
        bundles,
        lambda task, bundle: create_backend(None, bundle, settings.backend),
        cascade=use_cascade,
    )
    outcomes, segmented = [], 0
    try:
        for number, planted in enumerate(frames):
            decoded = read_image_file(planted.image, settings.source.max_frame_pixels)
            if isinstance(decoded, str):
                raise ValueError(f"{planted.image}: {decoded}")
            image = normalize_pixels(decoded.image, settings.source.color, settings.source.depth, None)
            frame = Frame(planted.frame_id, "planted", number, utc_now(), image, planted.image)
            inspection = inspector.inspect(frame)
            segmented += len(inspection.analysis.segmented_patches)
            outcomes.append(score_frame(planted, inspection, margin_px))
    finally:
        inspector.close()
    return summarize(outcomes, segmented / max(1, len(outcomes)))


def report_table(report: DetectionReport, per_frame: bool = False) -> list[Any]:
    """Rich tables: the summary, and optionally planted vs found per frame."""
    from rich.table import Table

    summary = Table(title=f"frame-level detection ({report.frames} frames, {report.planted_regions} planted defects)")
    for column in (
        "region recall",
        "frame recall",
        "false NG (clean)",
        "spurious / frame",
        "ms / frame",
        "recall by kind",
    ):
        summary.add_column(column)
    summary.add_row(
        _fmt(report.region_recall),
        _fmt(report.frame_recall),
        f"{_fmt(report.false_ng_rate)} of {report.clean_frames}",
        f"{report.spurious_regions_per_frame:.2f}",
        f"{report.mean_frame_ms:.0f}",
        ", ".join(f"{kind} {_fmt(value)}" for kind, value in report.recall_by_kind.items()) or "-",
    )
    tables = [summary]
    if per_frame:
        tables.append(outcome_table(report.outcomes))
    return tables


def outcome_table(
    outcomes: list[FrameOutcome], title: str = "planted vs found", overlays: dict[str, str] | None = None
):  # noqa: ANN201
    """One row per frame: planted defects (kind @ box, found or missed), found regions, verdict."""
    from rich.table import Table

    table = Table(title=title)
    for column in (
        "frame",
        "planted (kind x,y,w,h)",
        "found",
        "spurious",
        "verdict",
        *(("defect map",) if overlays else ()),
    ):
        table.add_column(column)
    for outcome in outcomes:
        planted = "; ".join(
            f"{p['kind']} {','.join(map(str, p['box']))} {'FOUND' if p['found'] else 'MISSED'}" for p in outcome.planted
        )
        found = sum(p["found"] for p in outcome.planted)
        spurious = sum(not f["matched"] for f in outcome.found)
        row = [
            outcome.frame_id,
            planted or "(clean)",
            f"{found}/{len(outcome.planted)}",
            str(spurious),
            outcome.verdict,
        ]
        if overlays:
            row.append(overlays.get(outcome.frame_id, "-"))
        table.add_row(*row)
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
