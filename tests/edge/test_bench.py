"""``pump-edge bench`` in quick mode on the tiny threshold bundles: the report is complete and sane.

Speed targets are never asserted here (they depend on the machine and its load); only that every
field is there and that the numbers can be true.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.bench import ROI_SIZES_PX, STAGES, BenchConfig, run_bench
from edge.cli import app
from edge.config import EdgeSettings
from edge.publish.broker import find_mosquitto
from edge.runtime.station import EXIT_OK, EXIT_OUTBOX_LEFT
from shared.config import GeometryConfig
from tests.edge.fixtures import make_threshold_bundles

pytestmark = pytest.mark.integration
GEOMETRY = GeometryConfig(crop_px=0, tile_px=128, patch_px=64)
FRAME_W, FRAME_H = 512, 384  # 4 x 3 tiles


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_threshold_bundles(tmp_path_factory.mktemp("bundles"), GEOMETRY)


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def test_quick_bench_reports_every_field(bundles, tmp_path):
    classifier, segmenter = bundles
    out = tmp_path / "bench.json"
    args = ["bench", "--classifier", str(classifier), "--segmenter", str(segmenter), "--quick"]
    args += ["--frames", "2", "--frame-size", f"{FRAME_W}x{FRAME_H}", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert '"schema_version"' in result.stdout
    report = json.loads(out.read_text())

    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["onnxruntime"]
    setup = report["setup"]
    assert setup["frames"] == 2 and setup["frame_size"] == [FRAME_W, FRAME_H] and setup["tiles_per_frame"] == 12
    assert setup["geometry"]["patch_px"] == 64  # the bundles' geometry, not the default 128
    assert set(setup["backends"]) == {"classifier", "segmenter"}
    assert all(d["backend"] == "onnxruntime" for d in setup["backends"].values())
    assert setup["providers"]["classifier"] == ["CPUExecutionProvider"]

    pipeline = report["pipeline"]
    assert pipeline["exit_code"] == (EXIT_OK if find_mosquitto() else EXIT_OUTBOX_LEFT)
    assert pipeline["frames"] == pipeline["frames_expected"] == 2 and pipeline["errors"] == 0
    assert pipeline["frames_ng"] == 2  # every synthetic frame carries bright defects
    assert _positive(pipeline["fps"]) and _positive(pipeline["seconds"])
    for key in ("latency_ms", "processing_ms"):
        assert 0 < pipeline[key]["p50"] <= pipeline[key]["p99"]
    for key in ("bare", "naive"):
        assert _positive(report[key]["fps"]) and report[key]["frames"] >= 1
    assert report["naive"]["patches"] == 12  # one frame in quick mode
    assert report["eager"]["status"] == "skipped" and report["eager"]["reason"] == "--quick"
    assert report["eager"]["fps"] is None

    assert list(report["stage_ms"]) == list(STAGES)
    assert all(ms >= 0 for ms in report["stage_ms"].values())
    assert report["stage_ms"]["decode"] > 0 and report["stage_ms"]["publish"] > 0
    memory = report["memory"]
    assert 10 < memory["pipeline_peak_rss_mb"] <= memory["process_peak_rss_mb"] < 64_000

    roi = report["roi_scaling"]
    assert [row["roi_px"] for row in roi["rois"]] == list(ROI_SIZES_PX)
    assert [row["tiles"] for row in roi["rois"]] == [15 * 15, 30 * 30]  # 128 px tiles, no overlap needed
    assert roi["tile_ratio"] == 4.0 and all(_positive(row["seconds"]) for row in roi["rois"])

    ratios = report["ratios"]
    assert _positive(ratios["pipeline_over_bare"]) and _positive(ratios["pipeline_over_naive"])
    assert ratios["pipeline_over_eager"] is None
    targets = {t["name"]: t for t in report["targets"]}
    assert len(targets) == 5
    assert all(t["passed"] in (True, False, None) and t["op"] in (">=", "<=") for t in targets.values())
    assert sum(t["passed"] is None for t in targets.values()) == 1  # only the eager one is skipped
    if find_mosquitto() is None:
        assert any("outbox" in note for note in report["notes"])


def test_without_broker_results_stay_in_the_outbox_and_the_report_says_so(bundles):
    classifier, segmenter = bundles
    settings = EdgeSettings(
        bundles={"classifier": classifier, "segmenter": segmenter, "follow_bundle_geometry": True},
        backend={"kind": "onnxruntime", "ort_provider": "cpu", "ort_threads": 1},
    )
    report = run_bench(BenchConfig(settings, frames=1, frame_size=(FRAME_W, FRAME_H), quick=True, broker=False))
    assert report["setup"]["broker"] == "none (outbox only)"
    assert report["pipeline"]["frames"] == 1 and report["pipeline"]["exit_code"] == EXIT_OUTBOX_LEFT
    assert any("outbox" in note for note in report["notes"])


def test_missing_bundles_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no demo-out/ here
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError) and "make demo" in str(result.exception)
