from pathlib import Path

import numpy as np
import pytest

from shared.masks import MASK_DEFECT, MASK_IGNORE
from shared.patching import cut_tile, resize_image_tile
from shared.tiling import TileBox
from tests.training.conftest import SMALL_GEOMETRY
from training.data.blend import BlendMode, paste_defect, paste_region
from training.data.paste import PasteLocation, PasteOptions, make_pasted
from training.data.patches import image_roi
from training.data.patchset import load_patchset


def _pasted(patchset, tmp_path: Path, **options):
    summary = make_pasted(patchset, tmp_path / "pasted", PasteOptions(**options), seed=0, progress=False)
    return summary, load_patchset(tmp_path / "pasted")


def test_fixed_location_paste_lands_the_defect_where_it_was_on_a_close_brightness_part(
    small_patchset, small_dataset, tmp_path
):
    summary, pasted = _pasted(
        small_patchset, tmp_path, location="fixed", per_defect=2, location_tolerance_px=3, brightness_tolerance=8
    )
    sources = small_patchset.by_id()
    images = {r.id: r for r in small_dataset.records}
    split_of_group = {r.group: r.split for r in small_patchset.records}
    assert summary["location"] == "fixed" and summary["pasted"] == len(pasted.records) > 0
    for record in pasted.records:
        source = sources[record.source_patch]
        assert record.origin == "pasted" and record.split == "train" and record.has_defect
        assert source.split != "test" and split_of_group[record.group] != "test"
        assert record.group != source.group, "destination comes from another part"
        assert abs(record.x - source.x) <= 3 and abs(record.y - source.y) <= 3
        source_mask, mask = small_patchset.read_mask(source), pasted.read_mask(record)
        assert np.array_equal(mask == MASK_DEFECT, source_mask == MASK_DEFECT), "mask lands at the same place"
        defect = source_mask == MASK_DEFECT
        assert np.array_equal(pasted.read_image(record)[defect], small_patchset.read_image(source)[defect])
        dest_image = images[record.source_image]
        destination = resize_image_tile(
            cut_tile(
                small_dataset.read_image(dest_image),
                TileBox(record.x, record.y, record.crop_px),
                image_roi(dest_image, SMALL_GEOMETRY),
            ),
            record.patch_px,
        )
        assert abs(float(destination.mean()) - source.mean_intensity) <= 8, "brightness rule"
        assert record.dest_patch == f"{record.source_image}@{record.x},{record.y}"


def test_free_location_paste_uses_good_patches_of_other_parts(small_patchset, tmp_path):
    summary, pasted = _pasted(
        small_patchset, tmp_path, location=PasteLocation.FREE, per_defect=3, brightness_tolerance=6
    )
    sources = small_patchset.by_id()
    assert summary["location"] == "free" and summary["sources_short_of_target"] == 0
    assert len(pasted.records) == 3 * summary["sources"]
    for record in pasted.records:
        source, destination = sources[record.source_patch], sources[record.dest_patch]
        assert not destination.has_defect and destination.origin == "real" and destination.split != "test"
        assert destination.group != source.group
        assert abs(destination.mean_intensity - source.mean_intensity) <= 6
        assert np.array_equal(pasted.read_mask(record) == MASK_DEFECT, small_patchset.read_mask(source) == MASK_DEFECT)


def test_auto_location_follows_the_dataset_structure(small_patchset, tmp_path):
    summary, _ = _pasted(small_patchset, tmp_path, per_defect=1)
    assert summary["location"] == "free", "a folder import declares no fixed structure"


def _pair():
    rng = np.random.default_rng(0)
    source = rng.integers(100, 120, (32, 32), dtype=np.uint8)
    destination = rng.integers(60, 80, (32, 32), dtype=np.uint8)
    source[10:14, 10:20] = 250
    mask = np.zeros((32, 32), np.uint8)
    mask[10:14, 10:20] = MASK_DEFECT
    return source, mask, destination


def test_alpha_blend_keeps_the_defect_and_leaves_the_rest_of_the_destination_alone():
    source, mask, destination = _pair()
    destination_mask = np.zeros_like(mask)
    destination_mask[:, 30:] = MASK_IGNORE
    pasted, pasted_mask = paste_defect(source, mask, destination, destination_mask, dilate_px=2, feather_px=1.0)
    assert (pasted[mask == MASK_DEFECT] == 250).all()
    far = ~paste_region(mask, 2 + 4)
    assert np.array_equal(pasted[far], destination[far])
    assert (pasted_mask[mask == MASK_DEFECT] == MASK_DEFECT).all() and (pasted_mask[:, 30:] == MASK_IGNORE).all()


def test_seamless_blend_keeps_the_mask_and_the_defect_visible():
    source, mask, destination = _pair()
    pasted, pasted_mask = paste_defect(source, mask, destination, np.zeros_like(mask), mode=BlendMode.SEAMLESS)
    assert np.array_equal(pasted_mask, mask)
    inside, around = pasted[mask == MASK_DEFECT].mean(), pasted[25:, 25:].mean()
    assert inside > around + 15, "the bright defect still stands out (Poisson blending smooths thin defects)"


def test_paste_without_defects_is_a_clear_error(small_patchset, tmp_path):
    with pytest.raises(ValueError, match="no defect pixels"):
        paste_defect(*_pair()[::2], np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8))
    _, mask, _ = _pair()
    empty = small_patchset.records[0]
    no_defects = type(small_patchset)(
        root=small_patchset.root,
        meta=small_patchset.meta,
        records=tuple(r for r in small_patchset.records if not r.has_defect),
    )
    with pytest.raises(ValueError, match="no real defect patches"):
        make_pasted(no_defects, tmp_path / "x", PasteOptions(), seed=0, progress=False)
    assert empty is not None
