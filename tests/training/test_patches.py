from collections import defaultdict
from pathlib import Path

import pytest

from shared.config import GeometryConfig
from shared.masks import MASK_DEFECT, MASK_IGNORE, defect_fraction
from shared.tiling import center_roi, grid_tiles
from tests.conftest import write_folder_source
from training.data.importers import ImportOptions, get_importer, run_import
from training.data.patches import PatchMode, PatchOptions, make_patches
from training.data.patchset import load_patchset
from training.data.splits import assign_splits, resample_validation


def test_patch_manifest_rows_match_the_pixels_on_disk(small_patchset):
    ids = [r.id for r in small_patchset.records]
    assert len(ids) == len(set(ids))
    for record in small_patchset.records:
        image, mask = small_patchset.read_image(record), small_patchset.read_mask(record)
        assert image.shape == mask.shape == (32, 32)
        assert record.has_defect == bool((mask == MASK_DEFECT).any())
        assert record.defect_fraction == pytest.approx(defect_fraction(mask), abs=1e-6)
        assert record.mean_intensity == pytest.approx(float(image[mask != MASK_IGNORE].mean()), abs=1e-4)
        assert record.origin == "real" and record.crop_px == 64 and record.patch_px == 32
    assert any(r.has_defect for r in small_patchset.records)


def test_grid_patches_use_the_edge_geometry_exactly(small_patchset, small_dataset):
    by_image = defaultdict(list)
    for record in small_patchset.records:
        by_image[record.source_image].append((record.x, record.y))
    image = small_dataset.records[0]
    roi = center_roi(image.width, image.height, 256, 256)
    assert by_image[image.id] == [(b.x, b.y) for b in grid_tiles(roi, 64)]


def test_splits_never_share_a_group_and_validation_is_a_fifth_of_train(small_patchset):
    split_of_group = defaultdict(set)
    for record in small_patchset.records:
        split_of_group[record.group].add(record.split)
    assert all(len(splits) == 1 for splits in split_of_group.values())
    counts = defaultdict(int)
    for splits in split_of_group.values():
        counts[next(iter(splits))] += 1
    assert counts["test"] == 4 and counts["val"] == 2 and counts["train"] == 6  # 2 classes x (6 groups)


def test_validation_can_be_redrawn_by_seed_without_touching_test():
    groups = {f"g{i}": ("defect" if i % 3 == 0 else "good") for i in range(40)}
    first = assign_splits(groups, 0.25, 0.2, split_seed=1, val_seed=1)
    redrawn = resample_validation(first, groups, 0.2, val_seed=2)
    assert {g for g, s in first.items() if s == "test"} == {g for g, s in redrawn.items() if s == "test"}
    assert {g for g, s in first.items() if s == "val"} != {g for g, s in redrawn.items() if s == "val"}
    for split in (first, redrawn):
        for label in ("defect", "good"):
            members = [g for g in groups if groups[g] == label]
            assert any(split[g] == "test" for g in members), "stratified: every class reaches test"


def test_random_mode_is_deterministic_per_seed_and_draws_the_requested_count(small_dataset, tmp_path: Path):
    options = PatchOptions(mode=PatchMode.RANDOM, patches_per_image=10)
    geometry = GeometryConfig(crop_px=256, tile_px=64, patch_px=32)
    make_patches(small_dataset, tmp_path / "a", geometry, options, seed=3, progress=False)
    make_patches(small_dataset, tmp_path / "b", geometry, options, seed=3, progress=False)
    make_patches(small_dataset, tmp_path / "c", geometry, options, seed=4, progress=False)
    a, b, c = (load_patchset(tmp_path / name).records for name in "abc")
    assert [(r.x, r.y) for r in a] == [(r.x, r.y) for r in b]
    assert [(r.x, r.y) for r in a] != [(r.x, r.y) for r in c]
    assert len(a) == 12 * 10


def test_images_smaller_than_the_crop_and_tile_are_padded_and_marked(tmp_path: Path):
    src = write_folder_source(tmp_path / "src", count=4, width=130, height=150)
    run_import(get_importer("folder"), src, tmp_path / "ds", ImportOptions(), progress=False)
    from training.data.dataset import load_dataset

    summary = make_patches(
        load_dataset(tmp_path / "ds"),
        tmp_path / "p",
        GeometryConfig(),
        PatchOptions(mode=PatchMode.GRID),
        seed=0,
        progress=False,
    )
    patchset = load_patchset(tmp_path / "p")
    assert summary["patches"] == 4 and summary["padded_patches"] == 4
    record = patchset.records[0]
    assert record.valid_fraction == pytest.approx(130 * 150 / 256**2)
    mask = patchset.read_mask(record)
    assert (mask[:, 65:] == MASK_IGNORE).all() and (mask[:75, :65] != MASK_IGNORE).all()
    with pytest.raises(ValueError, match="mostly padding"):
        make_patches(
            load_dataset(tmp_path / "ds"),
            tmp_path / "p2",
            GeometryConfig(),
            PatchOptions(mode=PatchMode.GRID, min_valid_fraction=0.5),
            seed=0,
            progress=False,
        )
    assert not (tmp_path / "p2").exists()


def test_declared_test_split_is_kept(tmp_path: Path):
    from tests.training.test_importers import _write_mvtec
    from training.data.dataset import load_dataset

    run_import(get_importer("mvtec"), _write_mvtec(tmp_path / "m"), tmp_path / "ds", ImportOptions(), progress=False)
    make_patches(
        load_dataset(tmp_path / "ds"),
        tmp_path / "p",
        GeometryConfig(crop_px=0, tile_px=32, patch_px=32),
        PatchOptions(mode=PatchMode.GRID),
        seed=0,
        progress=False,
    )
    splits = {r.source_image: r.split for r in load_patchset(tmp_path / "p").records}
    assert splits["screw-test-scratch-000"] == "test" and splits["screw-test-good-000"] == "test"
    assert splits["screw-train-good-000"] in ("train", "val")
