import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.masks import MASK_DEFECT, MASK_IGNORE, defect_fraction
from shared.patching import cut_mask_tile, cut_tile, extract_mask_patches, extract_patches, stitch
from shared.tiling import Roi, TileBox, center_roi, grid_tiles


def test_a_tile_past_a_small_image_is_reflected_and_its_mask_marked_ignore():
    image = np.arange(100 * 60, dtype=np.uint16).reshape(60, 100).astype(np.uint8)
    mask = np.zeros((60, 100), np.uint8)
    roi = Roi(0, 0, 100, 60)
    tile = cut_tile(image, TileBox(0, 0, 128), roi)
    mask_tile = cut_mask_tile(mask, TileBox(0, 0, 128), roi)
    assert tile.shape == (128, 128) and mask_tile.shape == (128, 128)
    assert np.array_equal(tile[:60, :100], image)
    assert np.array_equal(tile[60, :100], image[58]), "row 60 mirrors row 58 (reflection)"
    assert (mask_tile[60:, :] == MASK_IGNORE).all() and (mask_tile[:, 100:] == MASK_IGNORE).all()
    assert (mask_tile[:60, :100] == 0).all()


def test_area_resize_of_256_to_128_is_the_2x2_block_mean():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 256), dtype=np.uint8)
    patch = extract_patches(image, [TileBox(0, 0, 256)], Roi(0, 0, 256, 256), 128)[0]
    block = image.reshape(128, 2, 128, 2).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(patch.astype(np.float64) - block).max() <= 1.0


def test_mask_patches_keep_only_label_values():
    mask = np.zeros((300, 300), np.uint8)
    mask[100:140, 100:140] = MASK_DEFECT
    roi = Roi(0, 0, 300, 300)
    patches = extract_mask_patches(mask, grid_tiles(roi, 256), roi, 128)
    assert set(np.unique(patches)) <= {0, MASK_DEFECT}
    assert defect_fraction(patches[0]) == pytest.approx(40 * 40 / 256**2, rel=0.1)


@settings(max_examples=25, deadline=None)
@given(
    w=st.integers(20, 700), h=st.integers(20, 700), tile=st.integers(16, 300), reduce=st.sampled_from(["mean", "max"])
)
def test_stitching_untouched_tiles_gives_back_the_roi(w, h, tile, reduce):
    rng = np.random.default_rng(w * 1000 + h)
    frame = rng.random((h + 10, w + 20)).astype(np.float32)
    roi = center_roi(w + 20, h + 10, w, h)
    boxes = grid_tiles(roi, tile)
    values = extract_patches(frame, boxes, roi, tile)  # patch_px == tile_px: no resampling
    stitched = stitch(values, boxes, roi, reduce=reduce)
    assert np.allclose(stitched, frame[roi.y : roi.y + h, roi.x : roi.x + w], atol=1e-6)


def test_stitching_resized_patch_maps_marks_the_defect_where_it_was():
    roi = center_roi(3200, 2224, 1920, 1920)
    boxes = grid_tiles(roi, 256)
    values = np.zeros((len(boxes), 128, 128), np.float32)
    values[10, 40:60, 40:60] = 1.0  # a defect in tile 10
    stitched = stitch(values, boxes, roi, reduce="max")
    ys, xs = np.nonzero(stitched > 0.5)
    box = boxes[10]
    assert xs.min() + roi.x >= box.x + 76 and xs.max() + roi.x <= box.x + 124
    assert ys.min() + roi.y >= box.y + 76 and ys.max() + roi.y <= box.y + 124


def test_color_frames_give_color_patches_of_the_same_pixels_as_gray():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (300, 300), dtype=np.uint8)
    color = cv2.merge([gray, gray, gray])
    roi = Roi(0, 0, 300, 300)
    boxes = grid_tiles(roi, 256)
    assert np.array_equal(extract_patches(color, boxes, roi, 128)[..., 0], extract_patches(gray, boxes, roi, 128))
