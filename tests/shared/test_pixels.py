import cv2
import numpy as np
import pytest

from shared.pixels import ColorPolicy, DepthPolicy, normalize_pixels, to_channels, to_gray, to_model_input, to_uint8


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


def test_auto_depth_uses_header_evidence_or_values_above_4095_and_refuses_to_guess_otherwise():
    sixteen = np.array([[0, 4096, 65535]], np.uint16)
    assert to_uint8(sixteen, DepthPolicy.AUTO).tolist() == to_uint8(sixteen, DepthPolicy.SCALE16).tolist()
    twelve = np.array([[0, 2048, 4095]], np.uint16)
    assert to_uint8(twelve, DepthPolicy.AUTO, significant_bits=12).tolist() == [[0, 128, 255]]
    assert to_uint8(twelve, DepthPolicy.AUTO, significant_bits=16).tolist() == [[0, 8, 16]], "the header says 16"
    shifted = np.array([[0, 2048 << 4, 4095 << 4]], np.uint16)  # sBIT 12 but shifted up, as the PNG spec asks
    assert to_uint8(shifted, DepthPolicy.AUTO, significant_bits=12).tolist() == [[0, 128, 255]]
    with pytest.raises(ValueError, match="fit in 12 bits"):
        to_uint8(twelve, DepthPolicy.AUTO)
    assert to_uint8(np.array([[7]], np.uint8), DepthPolicy.AUTO).tolist() == [[7]], "8-bit input is untouched"


def test_large_frames_convert_in_blocks_with_the_same_result_as_one_pass():
    rng = np.random.default_rng(3)
    big = rng.integers(0, 65536, (1500, 2000, 3), dtype=np.uint16)  # 3 MP: more than one block
    whole = np.clip(np.rint(big[:, :, :3].astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)), 0, 65535)
    expected = np.clip(np.rint(whole.astype(np.uint16).astype(np.float32) / 257.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(normalize_pixels(big, ColorPolicy.GRAY, DepthPolicy.SCALE16), expected)


def test_doctests_of_the_pixel_rules_hold():
    import doctest

    import shared.pixels

    assert doctest.testmod(shared.pixels).failed == 0


def test_model_input_is_uint8_over_255_in_float32_nchw():
    patches = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    unit = to_model_input(patches)
    assert unit.shape == (1, 1, 16, 16) and unit.dtype == np.float32
    np.testing.assert_array_equal(unit[:, 0], patches.astype(np.float32) / np.float32(255.0))
    bgr = np.stack([patches[0], patches[0] // 2, patches[0] // 3], axis=-1)[None]
    assert to_model_input(bgr).shape == (1, 3, 16, 16) and to_model_input(bgr)[0, 1, 0, 2] == np.float32(1 / 255)
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(patches.astype(np.uint16))


def test_to_channels_refuses_what_no_model_takes():
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(BGR\\)"):
        to_channels(np.zeros((4, 4), np.uint8), 2)
    with pytest.raises(ValueError, match="gray, BGR or BGRA"):
        to_channels(np.zeros((4, 4, 2), np.uint8), 3)
