"""The README's main command, end to end on small synthetic frames."""

import json
from pathlib import Path

import pytest

from edge.publish.broker import find_mosquitto
from shared.bundle import load_bundle
from training.config import TrainSettings
from training.pipeline import run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_chain_runs_from_synthetic_frames_to_verified_bundles(tmp_path: Path):
    settings = TrainSettings(
        synth={"width_px": 1100, "height_px": 800, "defects_per_frame": 4.0}, paste={"per_defect": 2}
    )
    lines = run_demo(tmp_path / "demo", settings, frames=8, progress=False, gan_kimg=0.064)
    assert {"synth", "import", "patches", "paste", "show", "gan", "classifier", "segmenter", "export"} <= set(lines)
    assert (tmp_path / "demo" / "gan" / "checkpoints").is_dir() and "grid_gan.png" in lines["gan"]
    for name in ("grid_real.png", "grid_pasted.png", "grid_gan.png", "demo.json"):
        assert (tmp_path / "demo" / name).stat().st_size > 0
    for task in ("classifier", "segmenter"):
        bundle = load_bundle(tmp_path / "demo" / "bundles" / task)
        assert bundle.manifest.task == task
        assert bundle.manifest.geometry.tile_px == 256 and bundle.manifest.geometry.patch_px == 128
    recorded = json.loads((tmp_path / "demo" / "classifier" / "config.json").read_text())
    assert recorded["config"]["drawn"]["pasted"] > 0, "the demo classifier trains with pasted patches"
    if find_mosquitto() is None:
        assert lines["edge"].startswith("skipped: "), lines["edge"]
        pytest.skip("the edge stage needs mosquitto (apt-get install mosquitto); the rest of the chain passed")
    results = [json.loads(line) for line in (tmp_path / "demo" / "edge-results.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in results] == [1, 2, 3, 4], lines["edge"]
    assert {r["verdict"] for r in results} <= {"OK", "NG"} and all(r["patches"]["count"] > 0 for r in results)
