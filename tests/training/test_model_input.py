"""Training and the edge feed a model bit-identical inputs for the same patch (``shared.pixels``)."""

import numpy as np
import pytest
import torch

from edge.tiling import FrameTiler
from shared.bundle import BundleInput, Normalization
from shared.config import GeometryConfig
from shared.pixels import ColorPolicy, normalize_pixels, to_channels, to_model_input
from training.data.ingest import _to_channels
from training.export.onnx_export import _parity_inputs
from training.train.runtime import to_tensor

GEOMETRY = GeometryConfig(crop_px=0, tile_px=64, patch_px=32)


def _bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_training_tensor_of_a_patch_is_bit_identical_to_the_edge_batch(channels: int):
    shape = (200, 300) if channels == 1 else (200, 300, 3)
    frame = np.random.default_rng(channels).integers(0, 256, shape, dtype=np.uint8)
    frame[0, :2] = (0, 255) if channels == 1 else ((0, 0, 0), (255, 255, 255))  # both ends of the range
    model_input = BundleInput(
        channels=channels,
        height_px=32,
        width_px=32,
        color="gray" if channels == 1 else "bgr",
        normalization=Normalization(mean=0, std=1),
    )
    tiler = FrameTiler(GEOMETRY, model_input)
    _, patches = tiler.patches(frame)  # the uint8 patches training stores and reads back
    _, edge_batch = tiler.tile(frame)
    training_batch = to_tensor(patches, torch.device("cpu")).numpy()
    assert training_batch.shape == edge_batch.shape == (len(patches), channels, 32, 32)
    np.testing.assert_array_equal(_bits(training_batch), _bits(edge_batch))


def test_the_onnx_parity_check_feeds_what_training_and_the_edge_feed(small_patchset):
    records = small_patchset.records[:8]
    patches = np.stack([small_patchset.read_image(record) for record in records])
    inputs, _ = _parity_inputs(small_patchset.root, 1, patches.shape[1])
    np.testing.assert_array_equal(_bits(inputs[: len(records)]), _bits(to_model_input(patches)))
    np.testing.assert_array_equal(_bits(inputs[: len(records)]), _bits(to_tensor(patches, torch.device("cpu"))))


@pytest.mark.parametrize("shape", [(16, 16, 3), (16, 16, 4), (16, 16)])
def test_ingest_converts_line_crops_with_the_edge_source_rule(shape: tuple[int, ...]):
    crop = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    gray, converted_gray = _to_channels(crop, 1)
    bgr, converted_bgr = _to_channels(crop, 3)
    np.testing.assert_array_equal(gray, normalize_pixels(crop, ColorPolicy.GRAY))
    np.testing.assert_array_equal(bgr, normalize_pixels(crop, ColorPolicy.KEEP))
    np.testing.assert_array_equal(gray, to_channels(crop, 1))
    assert (converted_gray, converted_bgr) == (len(shape) == 3, shape[-1] != 3)
