"""Tiling as training cuts, stitching by max, components, verdict rules and the defect map.

End to end with the threshold bundles of :mod:`tests.edge.fixtures` on ONNX Runtime (CPU):
a planted bright square must come back as one defect whose box overlaps it; a clean frame is OK.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.backends import BackendConfig, create_backend
from edge.postprocess import (
    PostprocessConfig,
    StitchedMap,
    Thresholds,
    analyze_frame,
    decide,
    find_regions,
    render_defect_map,
    select_for_segmenter,
    stitch_defects,
)
from edge.publish.defect_map import encode_png
from edge.tiling import FrameTiler, RoiConfig, make_layout
from shared.bundle import BundleInput, Normalization, load_bundle
from shared.config import GeometryConfig
from shared.messages import Verdict
from shared.patching import extract_patches, stitch
from shared.pixels import to_model_input
from shared.tiling import Roi, TileBox, center_roi, grid_tiles
from tests.edge.fixtures import make_threshold_bundles

GEOMETRY = GeometryConfig()  # 1920 crop, 256 px tiles -> 128 px patches
FRAME_W, FRAME_H = 3200, 2224


def frame(square: tuple[int, int, int] | None = None, seed: int = 0) -> np.ndarray:
    """A 3200 x 2224 gray frame with mild structure and noise; ``square`` = (x, y, side) at 250."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME_H:8, 0:FRAME_W:8]
    coarse = (110 + 25 * np.sin(np.hypot(xx - FRAME_W / 2, yy - FRAME_H / 2) / 40)).astype(np.float32)
    image = cv2.resize(coarse, (FRAME_W, FRAME_H), interpolation=cv2.INTER_LINEAR) + rng.normal(
        0, 3, (FRAME_H, FRAME_W)
    )
    image = np.clip(image, 0, 180).astype(np.uint8)
    if square is not None:
        x, y, side = square
        image[y : y + side, x : x + side] = 250
    return image


# --- tiling: the edge cuts exactly what training cuts ---------------------------------------


@pytest.mark.parametrize(
    "size, geometry",
    [
        ((FRAME_W, FRAME_H), GEOMETRY),
        ((700, 500), GeometryConfig(crop_px=0, tile_px=128, patch_px=64, min_overlap_px=16)),
        ((220, 100), GeometryConfig(crop_px=1920, tile_px=128, patch_px=128)),  # smaller than a tile: padded
    ],
)
def test_tiles_equal_the_training_grid_patches(size: tuple[int, int], geometry: GeometryConfig):
    width, height = size
    image = np.random.default_rng(1).integers(0, 256, (height, width), dtype=np.uint8)
    layout, batch = FrameTiler(geometry).tile(image)
    crop = geometry.crop_px or max(width, height)
    roi = center_roi(width, height, crop, crop)
    boxes = grid_tiles(roi, geometry.tile_px, geometry.min_overlap_px)
    expected = extract_patches(image, boxes, roi, geometry.patch_px)
    assert layout.roi == roi and layout.boxes == boxes
    assert batch.shape == (len(boxes), 1, geometry.patch_px, geometry.patch_px) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[:, 0], expected.astype(np.float32) / np.float32(255.0))


def test_tile_boxes_equal_pump_train_patches_grid_mode():
    patches_module = pytest.importorskip("training.data.patches", reason="needs the training package (train extra)")
    from training.data.dataset import ImageRecord

    record = ImageRecord("f", "f.png", "m.png", FRAME_W, FRAME_H, 1, "", "g", "good", "f.png", "", "", 0)
    options = patches_module.PatchOptions(mode=patches_module.PatchMode.GRID)
    roi, boxes, skipped = patches_module.tile_boxes(record, GEOMETRY, options, seed=0)
    layout = FrameTiler(GEOMETRY).layout(FRAME_W, FRAME_H)
    assert (layout.roi, list(layout.boxes), skipped) == (roi, boxes, 0)
    assert layout.count == 64 and layout.roi == Roi(640, 152, 1920, 1920)


def test_layouts_are_cached_per_frame_size_and_a_box_roi_is_honoured():
    tiler = FrameTiler(GEOMETRY, roi_box=RoiConfig(x=100, y=50, width=1000, height=600))
    first = tiler.layout(FRAME_W, FRAME_H)
    assert tiler.layout(FRAME_W, FRAME_H) is first
    assert first.roi == Roi(100, 50, 1000, 600)
    assert all(box.x >= 100 and box.y >= 50 for box in first.boxes)
    assert tiler.layout(1000, 700) is not first


def test_colour_models_get_nchw_channels_and_mismatched_frames_are_refused():
    bgr_input = BundleInput(
        channels=3, height_px=128, width_px=128, color="bgr", normalization=Normalization(mean=0, std=1)
    )
    image = np.random.default_rng(2).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    layout, batch = FrameTiler(GEOMETRY, bgr_input).tile(image)
    patches = extract_patches(image, layout.boxes, layout.roi, 128)
    assert batch.shape == (layout.count, 3, 128, 128)
    np.testing.assert_array_equal(batch[:, 2], patches[..., 2] / np.float32(255.0))  # channel 2 = red
    with pytest.raises(ValueError, match="gray frames"):
        FrameTiler(GEOMETRY).tile(image)
    with pytest.raises(ValueError, match="uint8"):
        FrameTiler(GEOMETRY).tile(image[..., 0].astype(np.uint16))
    assert to_model_input(np.full((1, 2, 2), 255, np.uint8)).max() == 1.0


# --- stitching, components, cascade, verdict -------------------------------------------------


def test_stitching_keeps_the_maximum_where_tiles_overlap():
    layout = make_layout(200, 100, GeometryConfig(crop_px=0, tile_px=100, patch_px=50))  # tiles at x=0 and x=100
    assert [box.x for box in layout.boxes] == [0, 100]
    roi = Roi(0, 0, 180, 100)
    boxes = (TileBox(0, 0, 100), TileBox(80, 0, 100))  # overlap x in [80, 100)
    values = np.stack([np.full((50, 50), 0.9, np.float32), np.full((50, 50), 0.6, np.float32)])
    stitched = stitch(values, boxes, roi, reduce="max")
    assert np.allclose(stitched[:, :80], 0.9) and np.allclose(stitched[:, 80:100], 0.9)
    assert np.allclose(stitched[:, 100:], 0.6)


def test_stitching_only_hot_tiles_gives_the_same_defect_pixels_as_stitching_all():
    layout = make_layout(FRAME_W, FRAME_H, GEOMETRY)
    rng = np.random.default_rng(3)
    probabilities = rng.random((64, 128, 128), dtype=np.float32) * 0.4  # all below the 0.5 threshold...
    probabilities[9, 60:70, 100:128] = 0.95  # ...except one defect across the overlap of tiles 9 and 10:
    probabilities[10, 60:70, 0:20] = 0.97  # tile 9 sees ROI x 438-494, tile 10 (from x 475) sees x 475-515
    chosen = np.arange(64)
    stitched = stitch_defects(layout, probabilities, chosen, 0.5)
    full = stitch(probabilities, layout.boxes, layout.roi, reduce="max")
    y, x = stitched.roi.y - layout.roi.y, stitched.roi.x - layout.roi.x
    crop = full[y : y + stitched.roi.height, x : x + stitched.roi.width]
    hot = crop > 0.5
    assert hot.sum() > 0 and (full > 0.5).sum() == hot.sum(), "every defect pixel lies in the stitched region"
    np.testing.assert_array_equal(stitched.probabilities > 0.5, hot)
    np.testing.assert_allclose(stitched.probabilities[hot], crop[hot])
    regions, _ = find_regions(stitched, 0.5, 16)
    assert len(regions) == 1, "a defect seen by two overlapping tiles is one region"
    assert stitch_defects(layout, probabilities * 0.1, chosen, 0.5) is None


def test_regions_have_frame_boxes_areas_and_scores_and_small_ones_are_noise():
    probabilities = np.zeros((100, 200), np.float32)
    probabilities[10:20, 30:50] = 0.8  # 200 px
    probabilities[15, 35] = 0.99
    probabilities[60:62, 100:102] = 0.7  # 4 px: noise at min area 16
    probabilities[70:80, 150:160] = 0.6  # 100 px
    regions, small = find_regions(StitchedMap(Roi(1000, 500, 200, 100), probabilities), 0.5, 16)
    assert small == 1 and len(regions) == 2
    first = regions[0]
    assert (first.x, first.y, first.w, first.h, first.area_px) == (1030, 510, 20, 10, 200)
    assert first.max_score == pytest.approx(0.99) and first.mean_score == pytest.approx((199 * 0.8 + 0.99) / 200)
    assert regions[1].max_score == pytest.approx(0.6) and regions[1].area_px == 100
    message = first.to_message()
    assert message.box.x == 1030 and message.area_px == 200


def test_the_cascade_selects_the_classifiers_suspects():
    scores = np.array([0.1, 0.7, 0.5, 0.49])
    assert select_for_segmenter(scores, 4, 0.5).tolist() == [1, 2]
    assert select_for_segmenter(None, 3, 0.5).tolist() == [0, 1, 2]
    assert select_for_segmenter(scores, 4, None).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        select_for_segmenter(scores, 5, 0.5)


@pytest.mark.parametrize(
    "rule, classifier_ng, segmenter_ng, ng",
    [
        ("either", True, False, True),
        ("either", False, False, False),
        ("segmenter", True, False, False),
        ("segmenter", None, True, True),
        ("classifier", True, False, True),
        ("classifier", None, True, True),  # the rule's model is absent: the other decides
        ("both", True, False, False),
        ("both", True, True, True),
        ("either", None, None, False),
    ],
)
def test_verdict_rules(rule: str, classifier_ng, segmenter_ng, ng: bool):
    assert decide(rule, classifier_ng, segmenter_ng) is ng


# --- end to end on the threshold bundles -----------------------------------------------------


@pytest.fixture(scope="module")
def inspection(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("onnx", reason="building the test models needs onnx (the train extra)")
    classifier_dir, segmenter_dir = make_threshold_bundles(tmp_path_factory.mktemp("bundles"), GEOMETRY)
    classifier = load_bundle(classifier_dir, expected_geometry=GEOMETRY)
    segmenter = load_bundle(segmenter_dir, expected_geometry=GEOMETRY)
    config = BackendConfig(kind="onnxruntime", ort_provider="cpu")
    with create_backend(None, classifier, config) as classify, create_backend(None, segmenter, config) as segment:
        tiler = FrameTiler(GEOMETRY, classifier.manifest.input)
        thresholds = Thresholds.from_bundles(classifier.manifest, segmenter.manifest)

        def inspect(image: np.ndarray, post: PostprocessConfig | None = None):
            post = post or PostprocessConfig()
            layout, batch = tiler.tile(image)
            class_logits = classify.infer(batch)
            scores = 1 / (1 + np.exp(-class_logits[:, 0]))
            chosen = select_for_segmenter(scores, layout.count, thresholds.cascade)
            seg_logits = segment.infer(batch[chosen])
            return analyze_frame(layout, thresholds, post, class_logits, seg_logits, chosen)

        yield inspect, thresholds, (classifier.manifest, segmenter.manifest)


def _overlap(region, square: tuple[int, int, int]) -> int:
    x, y, side = square
    width = min(region.x + region.w, x + side) - max(region.x, x)
    height = min(region.y + region.h, y + side) - max(region.y, y)
    return max(0, width) * max(0, height)


def test_a_planted_bright_square_is_one_ng_defect_at_its_place(inspection):
    inspect, *_ = inspection
    square = (640 + 238 + 5, 152 + 475 + 2, 24)  # straddles the overlap of two tile columns
    analysis = inspect(frame(square))
    assert analysis.verdict is Verdict.NG and set(analysis.reasons) == {"defect regions", "classifier"}
    assert len(analysis.defects) == 1
    region = analysis.defects[0]
    assert _overlap(region, square) >= 0.8 * 24 * 24
    assert region.w <= 32 and region.h <= 32 and region.max_score > 0.99
    assert 1 <= len(analysis.segmented_patches) <= 4, "the cascade segments only the patches that see the square"
    assert analysis.patch_summary().flagged == len(analysis.flagged_patches) >= 1


def test_a_clean_frame_is_ok(inspection):
    inspect, *_ = inspection
    analysis = inspect(frame())
    assert analysis.verdict is Verdict.OK and analysis.reasons == ()
    assert analysis.defects == () and analysis.stitched is None and len(analysis.segmented_patches) == 0
    assert analysis.patch_summary().count == 64 and analysis.patch_summary().max_score < 0.5


def test_a_square_outside_the_roi_is_not_inspected(inspection):
    inspect, *_ = inspection
    assert inspect(frame((100, 100, 40))).verdict is Verdict.OK


def test_tiny_regions_are_noise_under_the_segmenter_rule(inspection):
    inspect, *_ = inspection
    analysis = inspect(frame((1500, 1000, 3)), PostprocessConfig(verdict_rule="segmenter", min_defect_area_px=400))
    assert analysis.defects == () and analysis.small_regions == 1 and analysis.verdict is Verdict.OK
    assert len(analysis.flagged_patches) >= 1, "the classifier saw it; the segmenter rule overrules it"


def test_threshold_overrides_replace_the_bundle_values(inspection):
    _, thresholds, manifests = inspection
    assert (thresholds.decision, thresholds.pixel, thresholds.cascade) == (0.5, 0.5, 0.5)
    config = PostprocessConfig(decision_threshold=0.9, pixel_threshold=0.7, cascade_threshold=0.2)
    custom = Thresholds.from_bundles(*manifests, config)
    assert (custom.decision, custom.pixel, custom.cascade) == (0.9, 0.7, 0.2)
    assert Thresholds.from_bundles(None, manifests[1]).cascade is None, "no classifier: no cascade"


def test_the_defect_map_png_is_small_and_marks_the_defect(inspection):
    inspect, thresholds, _ = inspection
    square = (1500, 1000, 24)
    image = frame(square)
    analysis = inspect(image)
    config = PostprocessConfig(defect_map_style="overlay", defect_map_max_px=800)
    png = encode_png(render_defect_map(image, analysis, thresholds, config))
    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert png.startswith(b"\x89PNG") and max(picture.shape[:2]) == 800
    scale = 800 / FRAME_W
    cx, cy = int((square[0] + 12) * scale), int((square[1] + 12) * scale)
    b, g, r = picture[cy, cx].astype(int)
    assert r > 200 and g < 120 and b < 120, "the defect is tinted red"
    mask = cv2.imdecode(
        np.frombuffer(
            encode_png(render_defect_map(image, analysis, thresholds, PostprocessConfig(defect_map_max_px=800))),
            np.uint8,
        ),
        cv2.IMREAD_UNCHANGED,
    )
    assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255}, "the default map is the 0/255 mask"
    assert mask.shape[1] == 800 and mask.shape[0] == round(image.shape[0] * scale), "it covers the whole frame"
    assert mask[cy, cx] == 255 and mask[:, : int(square[0] * scale) - 2].max() == 0
