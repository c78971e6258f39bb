"""Synthetic pump-part frames: determinism, labels that match the pixels, jitter bounds,
atomic set writing and the patch statistics the thesis relies on (small frames only)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pydantic
import pytest

from training.outputs import OutputExistsError
from training.synth import writer as synth_writer
from training.synth.config import DEFECT_KINDS, DefectKindWeights, SynthConfig
from training.synth.part import canonical_part
from training.synth.render import pose_matrix, render_frame
from training.synth.stats import random_patch_statistics
from training.synth.writer import write_synth_set

SMALL = {"width_px": 640, "height_px": 445}


def small_config(**changes) -> SynthConfig:
    return SynthConfig(**{**SMALL, **changes})


def only(kind: str) -> DefectKindWeights:
    return DefectKindWeights(**{name: float(name == kind) for name in DEFECT_KINDS})


def test_same_seed_and_index_give_identical_bytes_and_others_differ():
    config = small_config(defects_per_frame=3.0)
    first, again = render_frame(config, 7, 3), render_frame(config, 7, 3)
    assert first.image.tobytes() == again.image.tobytes()
    assert first.mask.tobytes() == again.mask.tobytes()
    assert first.defects == again.defects and first.pose == again.pose and first.lighting == again.lighting
    assert render_frame(config, 7, 4).image.tobytes() != first.image.tobytes()
    assert render_frame(config, 8, 3).image.tobytes() != first.image.tobytes()


def test_image_and_mask_are_gray_uint8_frames_and_the_mask_is_0_or_255():
    config = small_config(defects_per_frame=4.0)
    frame = render_frame(config, 0, 0)
    assert frame.image.shape == frame.mask.shape == (445, 640)
    assert frame.image.dtype == frame.mask.dtype == np.uint8
    assert set(np.unique(frame.mask)) <= {0, 255}
    assert frame.defects and np.any(frame.mask == 255)
    assert frame.image.std() > 20  # a part on a background, not a flat frame


def test_defect_records_match_the_mask():
    config = small_config(defects_per_frame=3.0)
    for index in range(8):
        frame = render_frame(config, 1, index)
        covered = np.zeros(frame.mask.shape, dtype=bool)
        for defect in frame.defects:
            x, y, w, h = defect.bbox
            assert w > 0 and h > 0 and defect.kind in DEFECT_KINDS
            box = frame.mask[y : y + h, x : x + w] == 255
            assert box.any(), defect
            assert 0 < defect.area_px <= w * h
            # the box is tight: its border rows and columns hold defect pixels
            assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
            covered[y : y + h, x : x + w] = True
        assert not np.any((frame.mask == 255) & ~covered), "mask pixels outside every defect box"
        if not frame.defects:
            assert not frame.mask.any()


def test_frames_without_defects_have_empty_masks_and_some_default_frames_have_none():
    empty = small_config(defects_per_frame=0.0)
    for index in range(3):
        frame = render_frame(empty, 0, index)
        assert frame.defects == [] and not frame.mask.any()
    counts = [len(render_frame(small_config(), 0, index).defects) for index in range(20)]
    assert 0 in counts and max(counts) > 0


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_kind_can_be_drawn_and_is_reported_as_that_kind(kind: str):
    config = small_config(defects_per_frame=4.0, kind_weights=only(kind))
    records = [defect for index in range(2) for defect in render_frame(config, 2, index).defects]
    assert records and {defect.kind for defect in records} == {kind}


def test_default_weights_produce_every_kind_over_a_handful_of_frames():
    config = small_config(defects_per_frame=4.0)
    kinds = {defect.kind for index in range(6) for defect in render_frame(config, 3, index).defects}
    assert kinds == set(DEFECT_KINDS)


def test_defects_lie_on_the_part_material():
    config = small_config(defects_per_frame=5.0)
    part = canonical_part(config.width_px, config.height_px)
    for index in range(4):
        frame = render_frame(config, 4, index)
        metal = cv2.warpAffine(part.metal, pose_matrix(frame.pose, part.center_xy), (config.width_px, config.height_px))
        defect = frame.mask == 255
        assert np.count_nonzero(defect & (metal < 128)) <= 0.02 * np.count_nonzero(defect)


def test_pose_and_lighting_jitter_stay_within_the_configured_bounds():
    config = small_config(position_jitter_px=12.0, rotation_jitter_deg=0.5, brightness_jitter=0.1, contrast_jitter=0.2)
    poses = [render_frame(config, 5, index) for index in range(10)]
    for frame in poses:
        assert abs(frame.pose.dx_px) <= 12.0 and abs(frame.pose.dy_px) <= 12.0
        assert abs(frame.pose.rotation_deg) <= 0.5
        assert 0.9 <= frame.lighting.brightness_gain <= 1.1
        assert 0.8 <= frame.lighting.contrast_gain <= 1.2
    assert len({frame.pose.dx_px for frame in poses}) == len(poses)  # it really jitters
    still = render_frame(small_config(position_jitter_px=0, rotation_jitter_deg=0), 5, 0).pose
    assert (still.dx_px, still.dy_px, still.rotation_deg) == (0.0, 0.0, 0.0)


def _bore_center(image: np.ndarray) -> np.ndarray:
    """Centroid of the largest dark component: the central bore."""
    _, _, stats, centroids = cv2.connectedComponentsWithStats((image < 30).astype(np.uint8))
    return centroids[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]


def test_the_part_moves_with_the_pose():
    flat = {
        "defects_per_frame": 0.0,
        "noise_sigma": 0.0,
        "vignetting": 0.0,
        "brightness_jitter": 0.0,
        "contrast_jitter": 0.0,
        "rotation_jitter_deg": 0.0,
    }
    reference = _bore_center(render_frame(small_config(position_jitter_px=0.0, **flat), 6, 0).image)
    config = small_config(position_jitter_px=40.0, **flat)
    for index in range(3):
        frame = render_frame(config, 6, index)
        shift = _bore_center(frame.image) - reference
        assert shift == pytest.approx([frame.pose.dx_px, frame.pose.dy_px], abs=0.5)


def test_config_is_strict():
    with pytest.raises(pydantic.ValidationError):
        SynthConfig(unknown_field=1)
    with pytest.raises(pydantic.ValidationError):
        SynthConfig(position_jitter_px=-1)
    with pytest.raises(pydantic.ValidationError):
        SynthConfig(kind_weights=DefectKindWeights(scratch=0, pit=0, chip=0, contamination=0))
    SynthConfig(defects_per_frame=0, kind_weights=DefectKindWeights(scratch=0, pit=0, chip=0, contamination=0))


def test_write_synth_set_writes_the_layout_and_the_frames_it_renders(tmp_path: Path):
    config = small_config(defects_per_frame=2.0)
    out = tmp_path / "set"
    summary = write_synth_set(out, config, frames=3, seed=11, progress=False)
    assert sorted(path.name for path in out.iterdir()) == ["frames.jsonl", "images", "masks", "synth.json"]
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [record["id"] for record in records] == ["frame_00000", "frame_00001", "frame_00002"]
    for index, record in enumerate(records):
        frame = render_frame(config, 11, index)
        image = cv2.imread(str(out / record["image"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(out / record["mask"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(image, frame.image) and np.array_equal(mask, frame.mask)
        assert (record["width"], record["height"]) == (640, 445)
        assert record["defects"] == [defect.to_dict() for defect in frame.defects]
        assert record["pose"] == frame.pose.to_dict()
    meta = json.loads((out / "synth.json").read_text())
    assert meta["command"] == "synth" and meta["seed"] == 11 and meta["config"]["width_px"] == 640
    assert meta["statistics"]["frames"] == 3 and "patch_statistics" in meta["statistics"]
    assert summary.frames == 3 and summary.patch_statistics.patches == 3 * 64
    assert sum(summary.defects_by_kind.values()) == sum(len(record["defects"]) for record in records)
    assert "defective patches" in summary.format()


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def failing_render(config, seed, index):
        if index == 2:
            raise RuntimeError("render failed on frame 2")
        return render_frame(config, seed, index)

    monkeypatch.setattr(synth_writer, "render_frame", failing_render)
    with pytest.raises(RuntimeError, match="frame 2"):
        write_synth_set(tmp_path / "set", small_config(), frames=4, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_set_is_only_replaced_with_overwrite(tmp_path: Path):
    out = tmp_path / "set"
    write_synth_set(out, small_config(), frames=1, seed=0, progress=False)
    with pytest.raises(OutputExistsError):
        write_synth_set(out, small_config(), frames=1, seed=0, progress=False)
    write_synth_set(out, small_config(), frames=2, seed=0, overwrite=True, progress=False)
    assert len((out / "frames.jsonl").read_text().splitlines()) == 2


def test_patch_statistics_on_hand_made_masks():
    # 600x500 frames, 400 px centre crop = one 400 px tile, resized (nearest) to 200 px patches.
    defective = np.zeros((500, 600), np.uint8)
    defective[200:240, 250:290] = 255  # 40x40 inside the crop (x 100..500, y 50..450): 20x20 in the patch
    empty = np.zeros((500, 600), np.uint8)
    stats = random_patch_statistics(
        [defective, empty], seed=0, crop_px=400, tile_px=400, patch_px=200, patches_per_frame=1
    )
    assert (stats.frames, stats.patches, stats.defective_patches) == (2, 2, 1)
    assert stats.defective_patch_share == pytest.approx(0.5)
    assert stats.mean_defect_fraction == pytest.approx(400 / 200**2)
    assert stats.median_defect_fraction == pytest.approx(400 / 200**2)
    assert stats.full_frame_defect_share == pytest.approx(1600 / (2 * 600 * 500))
    assert "defective patches" in stats.table()


def test_patch_statistics_ignore_defects_outside_the_crop_and_count_full_frames():
    mask = np.zeros((500, 600), np.uint8)
    mask[:, :50] = 255  # left of the 400 px centre crop
    stats = random_patch_statistics([mask], seed=3, crop_px=400, tile_px=100, patch_px=50, patches_per_frame=16)
    assert stats.patches == 16 and stats.defective_patches == 0 and stats.mean_defect_fraction == 0.0
    assert stats.full_frame_defect_share == pytest.approx(50 / 600)
    full = random_patch_statistics(
        [np.full((500, 600), 255, np.uint8)], seed=3, crop_px=400, tile_px=100, patch_px=50, patches_per_frame=16
    )
    assert full.defective_patch_share == 1.0 and full.mean_defect_fraction == 1.0


def test_scaled_down_frames_keep_the_thesis_patch_statistics():
    """At half size with the patch geometry halved too, the statistics match the thesis shape."""
    config = SynthConfig(width_px=1600, height_px=1112)
    masks = (render_frame(config, 1, index).mask for index in range(30))
    stats = random_patch_statistics(masks, seed=1, crop_px=960, tile_px=128, patch_px=64)
    assert 0.03 <= stats.defective_patch_share <= 0.075
    assert 0.012 <= stats.mean_defect_fraction <= 0.04
    assert stats.full_frame_defect_share < 0.0008
