"""Image headers read without decoding (PNG, JPEG, TIFF, BMP), completeness, the pixel budget, bounded reading."""

from __future__ import annotations

import doctest
import os
import struct
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import shared.imagefiles
import shared.pixels
from shared.imagefiles import (
    ImageFormat,
    check_image_bytes,
    completeness_problem,
    max_file_bytes,
    pixel_budget_problem,
    read_header,
    read_image_bytes,
)
from tests.edge.hostile_frames import (
    bmp_with_size,
    png_bomb,
    png_bytes,
    png_chunk,
    png_header_only,
    png_ihdr,
    tiff_with_size,
)

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def encoded(suffix: str, image: np.ndarray, *params: int) -> bytes:
    ok, buffer = cv2.imencode(suffix, image, list(params))
    assert ok
    return buffer.tobytes()


def test_the_doctests_of_the_header_and_pixel_modules_pass():
    for module in (shared.imagefiles, shared.pixels):
        assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize(
    ("image", "depth", "channels"),
    [
        (np.zeros((48, 64), np.uint8), 8, 1),
        (np.zeros((48, 64, 3), np.uint8), 8, 3),
        (np.zeros((48, 64, 4), np.uint8), 8, 4),
        (np.zeros((48, 64), np.uint16), 16, 1),
        (np.zeros((48, 64, 3), np.uint16), 16, 3),
    ],
)
def test_png_headers_give_size_depth_and_channels(image: np.ndarray, depth: int, channels: int):
    header = read_header(encoded(".png", image))
    assert (header.format, header.width_px, header.height_px) == (ImageFormat.PNG, 64, 48)
    assert (header.bit_depth, header.channels, header.significant_bits) == (depth, channels, None)


def test_a_png_sbit_chunk_gives_the_significant_bits_and_palette_png_has_one_index_channel():
    twelve = png_bytes(np.zeros((4, 6), np.uint16), 0, before_idat=(png_chunk(b"sBIT", b"\x0c"),))
    assert read_header(twelve).significant_bits == 12
    palette = png_bytes(np.zeros((4, 6), np.uint8), 3, before_idat=(png_chunk(b"PLTE", bytes(768)),))
    assert (read_header(palette).channels, read_header(palette).bit_depth) == (1, 8)


def test_the_74_byte_png_declaring_100000_squared_is_read_and_refused_on_its_header():
    data = png_header_only(100000, 100000)
    assert len(data) < 80
    header = read_header(data)
    assert (header.width_px, header.height_px) == (100000, 100000)
    reason = check_image_bytes(data, 32_000_000, "source.max_frame_pixels")
    assert isinstance(reason, str)
    assert "100000 x 100000" in reason and "source.max_frame_pixels = 32000000" in reason
    assert "refused before decoding" in reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (PNG_SIG + png_chunk(b"gAMA", b"\0\0\0\0") + png_ihdr(4, 4), "first chunk is not a 13-byte IHDR"),
        (PNG_SIG + png_ihdr(0, 4), "declared size 0 x 4"),
        (PNG_SIG + png_ihdr(4, 4, bit_depth=16, color_type=3), "colour type 3 with bit depth 16"),
        (PNG_SIG + png_ihdr(4, 4)[:20], "truncated PNG header"),
        (b"GIF89a" + bytes(20), "match no supported image format"),
        (b"", "match no supported image format"),
    ],
)
def test_garbled_png_headers_give_a_clear_reason(data: bytes, reason: str):
    result = read_header(data, ".png")
    assert isinstance(result, str) and reason in result


def test_a_png_with_a_wrong_ihdr_checksum_is_corrupt():
    data = bytearray(png_header_only(64, 48))
    data[30] ^= 0x01
    assert read_header(bytes(data)) == "corrupt PNG header (IHDR checksum mismatch)"


def test_png_completeness_walks_the_chunks_so_trailing_bytes_pass_and_a_fake_iend_does_not():
    png = encoded(".png", np.random.default_rng(0).integers(0, 255, (48, 64), np.uint8))
    assert completeness_problem(png, ImageFormat.PNG) is None
    assert completeness_problem(png + b"\x00" * 100 + b"trailer from the camera", ImageFormat.PNG) is None
    cut = png[: len(png) // 2]
    assert "truncated PNG" in completeness_problem(cut, ImageFormat.PNG)
    # the old check looked for 'IEND' in the last 16 bytes: a cut file ending in those bytes passed
    assert "truncated PNG" in completeness_problem(cut + png_chunk(b"IEND", b""), ImageFormat.PNG)
    assert completeness_problem(PNG_SIG + png_ihdr(4, 4) + png_chunk(b"IEND", b""), ImageFormat.PNG)


def _jpeg_with_app_segments(image: np.ndarray, payloads: list[bytes]) -> bytes:
    data = encoded(".jpg", image)
    segments = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads)
    return data[:2] + segments + data[2:]


@pytest.mark.parametrize(
    ("image", "params", "channels"),
    [
        (np.zeros((48, 64), np.uint8), (), 1),
        (np.zeros((48, 64, 3), np.uint8), (), 3),
        (np.zeros((48, 64, 3), np.uint8), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), 3),
    ],
)
def test_jpeg_headers_come_from_the_sof_marker(image: np.ndarray, params: tuple, channels: int):
    header = read_header(encoded(".jpg", image, *params))
    assert (header.format, header.width_px, header.height_px) == (ImageFormat.JPEG, 64, 48)
    assert (header.bit_depth, header.channels) == (8, channels)


def test_jpeg_app_segments_are_skipped_even_when_they_contain_a_fake_sof():
    fake_sof = b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03" + bytes(20)
    data = _jpeg_with_app_segments(np.zeros((48, 64), np.uint8), [b"Exif\0\0" + fake_sof, bytes(3000)])
    header = read_header(data)
    assert (header.width_px, header.height_px) == (64, 48)
    assert completeness_problem(data, ImageFormat.JPEG) is None


def test_jpeg_completeness_accepts_trailing_garbage_after_eoi_and_refuses_a_cut_scan():
    jpg = encoded(".jpg", np.random.default_rng(1).integers(0, 255, (48, 64), np.uint8))
    assert completeness_problem(jpg + b"\x00\x00garbage\xff\xd8", ImageFormat.JPEG) is None
    assert completeness_problem(jpg[:-40], ImageFormat.JPEG) == "truncated JPEG (no end-of-image marker)"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xd8\xff\xd9", "no frame header before the image data"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x17" * 32, "corrupt JPEG (expected a marker"),
        (b"\xff\xd8\xff\xe0\x00\x01", "segment length 1"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated JPEG"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x40\x01" + bytes(8), "height declared later by a DNL marker"),
    ],
)
def test_garbled_jpeg_headers_give_a_clear_reason(data: bytes, reason: str):
    result = read_header(data)
    assert isinstance(result, str) and reason in result


def _tiff(order: str, kind: int, width: int, height: int, extra: tuple = ()) -> bytes:
    """A one-strip TIFF in byte order ``order`` ('<' or '>') with ImageWidth/Length of type ``kind``."""
    entries = [(256, kind, width), (257, kind, height), (258, 3, 16), (273, 4, 8), (277, 3, 1), (279, 4, 2), *extra]

    def entry(tag: int, typ: int, value: int) -> bytes:
        code = {3: "H", 4: "I"}[typ]
        return struct.pack(order + "HHI", tag, typ, 1) + struct.pack(order + code, value).ljust(4, b"\0")

    ifd = struct.pack(order + "H", len(entries)) + b"".join(entry(*e) for e in entries) + bytes(4)
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    return magic + struct.pack(order + "I", 10) + b"\x00\x00" + ifd


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("kind", [3, 4])
def test_tiff_headers_in_both_byte_orders_with_short_or_long_sizes(order: str, kind: int):
    header = read_header(_tiff(order, kind, 3200, 2224))
    assert (header.format, header.width_px, header.height_px) == (ImageFormat.TIFF, 3200, 2224)
    assert (header.bit_depth, header.channels) == (16, 1)
    assert completeness_problem(_tiff(order, kind, 3200, 2224), ImageFormat.TIFF) is None


def test_tiff_from_opencv_and_its_max_sample_value_and_truncation():
    data = encoded(".tif", np.zeros((48, 64, 3), np.uint8))
    header = read_header(data)
    assert (header.width_px, header.height_px, header.bit_depth, header.channels) == (64, 48, 8, 3)
    twelve = _tiff("<", 3, 10, 10, extra=((281, 3, 4095),))
    assert read_header(twelve).significant_bits == 12
    cut = _tiff("<", 4, 10, 10)
    strip_end_missing = cut.replace(struct.pack("<HHII", 279, 4, 1, 2), struct.pack("<HHII", 279, 4, 1, 5000))
    assert "truncated TIFF (image data runs to byte 5008" in completeness_problem(strip_end_missing, ImageFormat.TIFF)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"II*\x00" + struct.pack("<I", 4), "first IFD at byte 4"),
        (b"II*\x00" + struct.pack("<I", 4000), "truncated TIFF header"),
        (b"II+\x00\x08\x00\x00\x00" + bytes(16), "BigTIFF"),
        (b"MM\x00*" + struct.pack(">IH", 8, 0) + bytes(4), "no ImageWidth/ImageLength"),
    ],
)
def test_garbled_tiff_headers_give_a_clear_reason(data: bytes, reason: str):
    result = read_header(data)
    assert isinstance(result, str) and reason in result


def test_bmp_headers_info_core_and_top_down():
    info = encoded(".bmp", np.zeros((48, 64, 3), np.uint8))
    header = read_header(info)
    assert (header.format, header.width_px, header.height_px, header.channels) == (ImageFormat.BMP, 64, 48, 3)
    core = b"BM" + struct.pack("<IHHI", 26 + 3 * 2 * 4, 0, 0, 26) + struct.pack("<IHHHH", 12, 3, 2, 1, 24) + bytes(24)
    assert (read_header(core).width_px, read_header(core).height_px) == (3, 2)
    assert completeness_problem(core, ImageFormat.BMP) is None
    top_down = bytearray(info)
    struct.pack_into("<i", top_down, 22, -48)
    assert read_header(bytes(top_down)).height_px == 48
    assert "truncated BMP" in completeness_problem(info[: len(info) // 2], ImageFormat.BMP)
    odd = bytearray(info)
    struct.pack_into("<I", odd, 14, 99)
    assert read_header(bytes(odd)) == "unsupported BMP (DIB header of 99 bytes)"


@pytest.mark.parametrize(
    "data",
    [
        png_header_only(100000, 100000),
        tiff_with_size(100000, 100000),
        bmp_with_size(100000, 100000),
    ],
)
def test_every_format_is_held_to_the_pixel_budget(data: bytes):
    header = read_header(data)
    assert header.pixels == 10**10
    assert "exceeds import.max_image_pixels = 1000" in pixel_budget_problem(header, 1000, "import.max_image_pixels")


def test_the_budget_is_inclusive_at_the_limit():
    header = read_header(png_header_only(100, 100))
    assert pixel_budget_problem(header, 10_000, "x") is None
    assert pixel_budget_problem(header, 9_999, "x") is not None


def test_read_image_bytes_refuses_the_deflate_bomb_on_its_header(tmp_path: Path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(30000))
    assert path.stat().st_size < 1_000_000
    reason = read_image_bytes(path, 32_000_000, "source.max_frame_pixels")
    assert isinstance(reason, str) and "30000 x 30000" in reason


def test_read_image_bytes_refuses_a_file_larger_than_any_image_in_budget_without_reading_it(tmp_path: Path):
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:
        handle.truncate(300 << 20)  # sparse: 300 MB declared, nothing on disk
    reason = read_image_bytes(path, 1000, "source.max_frame_pixels")
    assert isinstance(reason, str) and "larger than any image within source.max_frame_pixels" in reason
    assert max_file_bytes(1000) < 300 << 20


def test_read_image_bytes_finds_a_jpeg_header_beyond_the_first_megabyte(tmp_path: Path):
    data = _jpeg_with_app_segments(np.zeros((48, 64), np.uint8), [bytes(65000)] * 20)
    assert data.index(b"\xff\xc0") > 1 << 20
    (tmp_path / "exif_heavy.jpg").write_bytes(data)
    read = read_image_bytes(tmp_path / "exif_heavy.jpg", 10_000, "x")
    assert not isinstance(read, str), read
    assert bytes(read[0]) == data and (read[1].width_px, read[1].height_px) == (64, 48)


def test_read_image_bytes_names_non_files_without_blocking(tmp_path: Path):
    assert read_image_bytes(tmp_path, 10_000, "x") == "is a directory"
    assert read_image_bytes(tmp_path / "gone.png", 10_000, "x") == "file vanished before it could be read"
    (tmp_path / "empty.png").write_bytes(b"")
    assert read_image_bytes(tmp_path / "empty.png", 10_000, "x") == "empty file"
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.png")
        result: list = []
        reader = threading.Thread(target=lambda: result.append(read_image_bytes(tmp_path / "pipe.png", 10_000, "x")))
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "reading a FIFO must not block"
        assert result == ["not a regular file (a named pipe)"]


def test_read_image_bytes_does_not_follow_a_symlink_when_told_not_to(tmp_path: Path):
    good = tmp_path / "good.png"
    good.write_bytes(encoded(".png", np.zeros((4, 4), np.uint8)))
    (tmp_path / "link.png").symlink_to(good)
    assert not isinstance(read_image_bytes(tmp_path / "link.png", 10_000, "x"), str)
    refused = read_image_bytes(tmp_path / "link.png", 10_000, "x", follow_symlinks=False)
    assert isinstance(refused, str) and "symlink" in refused
