import doctest

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import shared.tiling as tiling
from shared.tiling import Roi, TileBox, axis_starts, box_roi, center_roi, crop_roi, grid_tiles, random_tiles


def test_doctests_of_the_geometry_hold():
    assert doctest.testmod(tiling).failed == 0


def test_thesis_geometry_is_eight_by_eight_tiles_flush_with_both_edges():
    roi = center_roi(3200, 2224, 1920, 1920)
    boxes = grid_tiles(roi, 256)
    assert len(boxes) == 64
    assert min(b.x for b in boxes) == roi.x and max(b.x + b.size for b in boxes) == roi.x + roi.width
    assert min(b.y for b in boxes) == roi.y and max(b.y + b.size for b in boxes) == roi.y + roi.height


@given(length=st.integers(1, 5000), tile=st.integers(1, 600), overlap_share=st.floats(0, 0.9))
def test_axis_starts_cover_the_axis_with_the_fewest_tiles(length, tile, overlap_share):
    overlap = min(int(tile * overlap_share), tile - 1)
    starts = axis_starts(length, tile, overlap)
    covered = np.zeros(max(length, tile), bool)
    for start in starts:
        covered[start : start + tile] = True
        assert start >= 0 and (start + tile <= length or length <= tile)
    assert covered[:length].all()
    assert list(starts) == sorted(set(starts))
    if len(starts) > 1:
        assert starts[0] == 0 and starts[-1] == length - tile
        gaps = np.diff(starts)
        assert (tile - gaps >= overlap).all(), "neighbours overlap at least min_overlap_px"
        fewer = len(starts) - 1
        assert fewer == 1 or (length - tile) / (fewer - 1) > tile - overlap, "one tile fewer could not cover"


@given(frame_w=st.integers(1, 4000), frame_h=st.integers(1, 3000), crop=st.integers(1, 2500), tile=st.integers(16, 512))
def test_grid_tiles_cover_the_roi_and_start_inside_it(frame_w, frame_h, crop, tile):
    roi = center_roi(frame_w, frame_h, crop, crop)
    assert roi.x >= 0 and roi.x + roi.width <= frame_w and roi.y >= 0 and roi.y + roi.height <= frame_h
    assert abs((frame_w - roi.width) - 2 * roi.x) <= 1, "crop is centered"
    boxes = grid_tiles(roi, tile)
    covered = np.zeros((roi.height, roi.width), bool)
    for box in boxes:
        assert roi.x <= box.x < roi.x + roi.width and roi.y <= box.y < roi.y + roi.height
        fits_x = box.x + box.size <= roi.x + roi.width or roi.width < tile
        fits_y = box.y + box.size <= roi.y + roi.height or roi.height < tile
        assert fits_x and fits_y, "a tile only reaches past the ROI where the ROI is smaller than a tile"
        covered[box.y - roi.y : box.y - roi.y + tile, box.x - roi.x : box.x - roi.x + tile] = True
    assert covered.all()


@given(w=st.integers(1, 900), h=st.integers(1, 900), tile=st.integers(8, 300), seed=st.integers(0, 2**32 - 1))
def test_random_tiles_stay_inside_the_roi_where_it_is_large_enough(w, h, tile, seed):
    roi = Roi(5, 7, w, h)
    for box in random_tiles(roi, tile, 20, np.random.default_rng(seed)):
        assert box.size == tile
        assert box.x == roi.x if w < tile else roi.x <= box.x <= roi.x + w - tile
        assert box.y == roi.y if h < tile else roi.y <= box.y <= roi.y + h - tile


def test_valid_fraction_counts_the_part_of_a_tile_inside_the_roi():
    roi = Roi(0, 0, 100, 256)
    assert TileBox(0, 0, 256).valid_fraction(roi) == pytest.approx(100 / 256)
    assert TileBox(0, 0, 100).valid_fraction(roi) == 1.0


def test_bad_geometry_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="positive"):
        center_roi(0, 10, 5, 5)
    with pytest.raises(ValueError, match="min_overlap_px"):
        axis_starts(100, 10, 10)
    with pytest.raises(ValueError, match="outside"):
        box_roi(100, 100, 200, 200, 10, 10)
    assert box_roi(100, 100, 90, -5, 50, 50) == Roi(90, 0, 10, 45)


@given(width=st.integers(1, 5000), height=st.integers(1, 5000), crop=st.integers(0, 6000))
def test_crop_roi_is_the_center_crop_and_zero_means_the_whole_frame(width, height, crop):
    roi = crop_roi(width, height, crop)
    if crop == 0:
        assert roi == Roi(0, 0, width, height)
    else:
        assert roi == center_roi(width, height, crop, crop)
    assert roi.x + roi.width <= width and roi.y + roi.height <= height


def test_crop_roi_refuses_a_negative_crop():
    with pytest.raises(ValueError, match="crop_px must be >= 0"):
        crop_roi(640, 480, -1)
