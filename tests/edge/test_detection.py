"""Frame-level detection of planted defects: pure matching, and the station's inspector on real bundles."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import EdgeSettings
from edge.detection import (
    PlantedFrame,
    evaluate_detection,
    inside,
    match_regions,
    read_planted_frames,
    report_table,
    score_result,
    summarize,
)
from edge.tiling import make_layout
from shared.config import GeometryConfig
from shared.messages import ResultMessage
from shared.tiling import Roi
from tests.edge.fixtures import make_threshold_bundles

GEOMETRY = GeometryConfig(crop_px=0, tile_px=128, patch_px=64)


def test_match_regions_counts_touching_boxes_within_the_margin():
    planted = [(10, 10, 5, 5), (100, 100, 10, 10), (300, 300, 4, 4)]
    found = [(12, 12, 2, 2), (113, 100, 3, 3), (500, 500, 5, 5)]
    planted_hit, found_hit = match_regions(planted, found, margin_px=4)
    assert planted_hit == [True, True, False]  # inside; 3 px right of the box (within 4); nothing near
    assert found_hit == [True, True, False]
    assert match_regions(planted, found, margin_px=0)[0] == [True, False, False]
    assert match_regions([], found) == ([], [False, False, False])


def test_a_planted_box_counts_only_when_its_centre_is_in_the_roi():
    roi = Roi(100, 100, 200, 200)
    assert inside((150, 150, 10, 10), roi)
    assert not inside((95, 150, 4, 4), roi)  # centre at x=97
    assert inside((95, 150, 12, 4), roi)  # centre at x=101


def _result(verdict: str, boxes: list[tuple[int, int, int, int]]) -> ResultMessage:
    now = "2026-01-01T00:00:00+00:00"
    defects = [
        {"box": dict(zip("xywh", box, strict=True)), "area_px": 9, "max_score": 0.8, "mean_score": 0.6} for box in boxes
    ]
    return ResultMessage.model_validate(
        {
            **{"result_id": "r", "seq": 1, "session": 1, "line": "l", "station": "s", "frame_id": "f-000001"},
            **{"source": "folder", "captured_at": now, "processed_at": now, "frame_width_px": 400},
            **{"frame_height_px": 300, "verdict": verdict, "defects": defects, "latency_ms": 12.5},
            "patches": {"count": 12, "max_score": 0.9, "flagged": 1},
        }
    )


def test_a_published_result_is_scored_against_the_planted_defects_like_an_inspection():
    roi = Roi(50, 0, 300, 300)
    planted = PlantedFrame(
        "f", Path("f.png"), (("pit", (60, 60, 6, 6)), ("chip", (200, 100, 8, 8)), ("pit", (5, 5, 4, 4)))
    )
    outcome = score_result(planted, _result("NG", [(62, 58, 4, 4), (300, 250, 5, 5)]), roi)
    assert [(p["kind"], p["found"]) for p in outcome.planted] == [("pit", True), ("chip", False)]
    assert outcome.outside_roi == 1  # the pit at x=5 lies left of the ROI
    assert [f["matched"] for f in outcome.found] == [True, False] and outcome.frame_ms == 12.5
    clean = score_result(PlantedFrame("c", Path("c.png"), ()), _result("OK", []), roi)
    report = summarize([outcome, clean])
    assert (report.frame_recall, report.false_ng_rate, report.region_recall) == (1.0, 0.0, 0.5)


def test_read_planted_frames_names_the_line_and_field(tmp_path: Path):
    (tmp_path / "frames.jsonl").write_text(
        json.dumps({"id": "a", "image": "a.png", "defects": [{"kind": "scratch", "bbox": [1, 2, 3, 4]}]})
        + "\n"
        + json.dumps({"id": "b", "image": "b.png", "defects": [{"bbox": [1, 2, 3]}]})
        + "\n"
    )
    with pytest.raises(ValueError, match=r"frames.jsonl line 2: .*bbox"):
        read_planted_frames(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        read_planted_frames(tmp_path / "missing")


def _write_planted(folder: Path) -> None:
    """Four 512x384 frames, dark with bright squares: what is drawn vs what frames.jsonl claims."""
    folder.mkdir(parents=True)
    frames = [
        ("drawn-and-listed", [(40, 40, 12, 12), (300, 200, 20, 8)], [(40, 40, 12, 12), (300, 200, 20, 8)]),
        ("listed-not-drawn", [], [(200, 100, 10, 10)]),  # the model cannot see it: a miss
        ("clean", [], []),
        ("clean-with-spot", [(400, 300, 10, 10)], []),  # nothing planted, but a bright spot: false NG
    ]
    with open(folder / "frames.jsonl", "w") as index:
        for frame_id, drawn, listed in frames:
            image = np.full((384, 512), 60, np.uint8)
            for x, y, w, h in drawn:
                image[y : y + h, x : x + w] = 250
            cv2.imwrite(str(folder / f"{frame_id}.png"), image)
            defects = [{"kind": "spot", "bbox": list(box)} for box in listed]
            index.write(json.dumps({"id": frame_id, "image": f"{frame_id}.png", "defects": defects}) + "\n")


@pytest.mark.parametrize("cascade", [False, True])
def test_evaluate_detection_scores_the_stations_own_inspector(tmp_path: Path, cascade: bool):
    classifier, segmenter = make_threshold_bundles(tmp_path / "bundles", GEOMETRY)
    _write_planted(tmp_path / "frames")
    settings = EdgeSettings(
        data_dir=tmp_path / "data",
        geometry=GEOMETRY,
        bundles={"classifier": classifier, "segmenter": segmenter},
        backend={"kind": "onnxruntime"},
        postprocess={"min_defect_area_px": 4},
    )
    report = evaluate_detection(settings, tmp_path / "frames", cascade=cascade)
    assert (report.frames, report.defect_frames, report.clean_frames) == (4, 2, 2)
    assert report.planted_regions == 3
    assert report.region_recall == pytest.approx(2 / 3, abs=1e-3)
    assert report.frame_recall == 0.5  # "listed-not-drawn" is judged OK
    assert report.false_ng_rate == 0.5  # the spot on a clean frame
    assert report.spurious_regions_per_frame == pytest.approx(0.25)
    by_id = {o.frame_id: o for o in report.outcomes}
    assert [p["found"] for p in by_id["drawn-and-listed"].planted] == [True, True]
    assert by_id["clean"].verdict == "OK" and by_id["clean-with-spot"].verdict == "NG"
    tiles = make_layout(512, 384, GEOMETRY).count
    if cascade:  # only the classifier's suspects: the 3 drawn squares' and the spot's tiles over 4 frames
        assert report.segmented_patches_per_frame < tiles / 2
    else:
        assert report.segmented_patches_per_frame == tiles
    assert report_table(report, per_frame=True)[1].row_count == 4
