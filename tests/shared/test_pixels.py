import cv2
import numpy as np
import pytest

from shared.pixels import ColorPolicy, DepthPolicy, normalize_pixels, to_gray, to_uint8


def test_gray_conversion_matches_opencv_within_rounding():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert np.abs(to_gray(bgr).astype(int) - cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(int)).max() <= 1


def test_sixteen_bit_policies_scale_deliberately():
    image = np.array([[0, 4095, 65535]], dtype=np.uint16)
    assert to_uint8(image, DepthPolicy.SCALE16).tolist() == [[0, 16, 255]]
    assert to_uint8(image, DepthPolicy.SCALE12).tolist() == [[0, 255, 255]]
    assert to_uint8(np.array([[100, 300]], np.uint16), DepthPolicy.MINMAX).tolist() == [[0, 255]]


def test_color_policy_keep_gives_three_channels_and_alpha_is_dropped():
    bgra = np.zeros((4, 4, 4), np.uint8)
    assert normalize_pixels(bgra, ColorPolicy.KEEP).shape == (4, 4, 3)
    assert normalize_pixels(bgra, ColorPolicy.GRAY).shape == (4, 4)
    assert normalize_pixels(np.zeros((4, 4), np.uint8), ColorPolicy.KEEP).shape == (4, 4, 3)


def test_unsupported_pixel_types_are_refused():
    with pytest.raises(ValueError, match="dtype float32"):
        to_uint8(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((2, 2, 2), np.uint8))
