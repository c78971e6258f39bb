"""Files a factory floor sends that are not good frames, for tests of sources and of the station.

``write_hostile_frames(folder)`` fills ``folder`` with one file (or link, directory, FIFO)
of each bad kind and returns ``{name: expected substring of the FrameError reason}``;
every one of them must become a ``FrameError`` (a ``frame-error`` event naming the file
at the station), none an exception, and reading them must stay far below 1 GB of memory
(the bombs are refused on their headers). ``write_odd_but_valid_frames(folder)`` writes
files that look unusual but are good frames (trailing bytes, alpha, palette, interlaced,
16-bit colour, CMYK, a JPEG named ``.png``, ...) and returns their names.

Usage (an integration test against a real broker)::

    from tests.edge.hostile_frames import write_hostile_frames, write_odd_but_valid_frames
    expected = write_hostile_frames(folder)            # {name: reason substring}
    good = write_odd_but_valid_frames(folder, 64, 48)  # names that must give results

The reasons assume the default source settings (``max_frame_pixels`` 32 MP, ``depth``
auto, ``follow_external_symlinks`` off). Kinds the platform cannot make are left out:
symlinks and FIFOs where ``os.symlink``/``os.mkfifo`` fail, ``unreadable.png`` when
running as root (root reads it anyway). Only numpy, OpenCV and the standard library are
needed (PIL is used for the CMYK JPEG when installed).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOMB_SIDE_PX = 30000  # 0.9 MB of PNG, 900 MB (8-bit gray) once decoded
HUGE_SIDE_PX = 100000
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_ihdr(width: int, height: int, bit_depth: int = 8, color_type: int = 0, interlace: int = 0) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace))


def png_bytes(
    pixels: np.ndarray,
    color_type: int,
    *,
    interlace: bool = False,
    before_idat: tuple[bytes, ...] = (),
) -> bytes:
    """A PNG of ``pixels`` (H, W) or (H, W, C), uint8 or uint16, samples in PNG order (RGB, not BGR).

    Hand-built so that tests can make what OpenCV does not write: palette (``color_type`` 3,
    with a ``PLTE`` chunk in ``before_idat``), gray+alpha, Adam7 interlacing, ``sBIT``.
    """
    height, width = pixels.shape[:2]
    big_endian = pixels.astype(">u2") if pixels.dtype == np.uint16 else pixels
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = big_endian[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.tobytes()  # filter type 0 (none)
    depth = 16 if pixels.dtype == np.uint16 else 8
    return (
        PNG_SIGNATURE
        + png_ihdr(width, height, depth, color_type, int(interlace))
        + b"".join(before_idat)
        + png_chunk(b"IDAT", zlib.compress(bytes(raw)))
        + png_chunk(b"IEND", b"")
    )


def zero_deflate_stream(total: int, block: int = 1 << 20) -> bytes:
    """A valid zlib stream of ``total`` zero bytes without compressing them (full flushes repeat exactly)."""
    compressor = zlib.compressobj(9)
    first = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(total, block)
    tail = compressor.compress(bytes(rest)) + compressor.flush(zlib.Z_SYNC_FLUSH) if rest else b""
    adler = ((total % 65521) << 16) | 1  # adler32 of zeros: a = 1, b = n mod 65521
    return first + repeat * (count - 1) + tail + b"\x03\x00" + struct.pack(">I", adler)


def png_bomb(side_px: int = BOMB_SIDE_PX) -> bytes:
    """A real, decodable 8-bit gray PNG of ``side_px`` x ``side_px`` zeros (0.9 MB for 30000)."""
    stream = zero_deflate_stream((side_px + 1) * side_px)
    return PNG_SIGNATURE + png_ihdr(side_px, side_px) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def png_header_only(width: int = HUGE_SIDE_PX, height: int = HUGE_SIDE_PX) -> bytes:
    """A ~70-byte PNG whose IHDR declares ``width`` x ``height`` (OpenCV raises on it)."""
    return (
        PNG_SIGNATURE + png_ihdr(width, height) + png_chunk(b"IDAT", zlib.compress(b"\x00")) + png_chunk(b"IEND", b"")
    )


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 is rewritten to declare ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16), 90, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def bmp_with_size(width: int, height: int) -> bytes:
    """A BITMAPINFOHEADER BMP header declaring ``width`` x ``height`` x 24 bit (no pixel rows)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def tiff_with_size(width: int, height: int) -> bytes:
    """A little-endian TIFF whose IFD0 declares ``width`` x ``height`` (LONG) and one 1-byte strip."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (273, 4, 1, 8), (277, 3, 1, 1), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries) + b"\0" * 4
    return b"II*\x00" + struct.pack("<I", 10) + b"\x00\x00" + ifd


def gray_frame(width: int = 64, height: int = 48, value: int = 100) -> np.ndarray:
    image = np.full((height, width), value, np.uint8)
    image[5:15, 5:25] = 200
    return image


def _try_symlink(target: str, link: Path) -> bool:
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError):
        return False
    return True


def write_hostile_frames(folder: Path, bomb_side_px: int = BOMB_SIDE_PX) -> dict[str, str]:
    """One entry of each bad kind in ``folder``; ``{name: expected reason substring}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png = cv2.imencode(".png", gray_frame())[1].tobytes()
    jpg = cv2.imencode(".jpg", gray_frame())[1].tobytes()
    tif = cv2.imencode(".tif", gray_frame())[1].tobytes()
    bmp = cv2.imencode(".bmp", gray_frame())[1].tobytes()
    bad_crc = bytearray(png_header_only(640, 480))
    bad_crc[29] ^= 0xFF
    files: dict[str, tuple[bytes, str]] = {
        "bomb_header.png": (png_header_only(), "refused before decoding"),
        "bomb_deflate.png": (png_bomb(bomb_side_px), "refused before decoding"),
        "bomb_header.jpg": (jpeg_with_size(65500, 65500), "refused before decoding"),
        "bomb_header.tif": (tiff_with_size(HUGE_SIDE_PX, HUGE_SIDE_PX), "refused before decoding"),
        "bomb_header.bmp": (bmp_with_size(HUGE_SIDE_PX, HUGE_SIDE_PX), "refused before decoding"),
        "empty.png": (b"", "empty file"),
        "truncated.png": (png[: len(png) // 2], "truncated PNG"),
        "truncated.jpg": (jpg[: len(jpg) - 40], "truncated JPEG"),
        "truncated.tif": (tif[: len(tif) // 2], "truncated TIFF"),
        "truncated.bmp": (bmp[: len(bmp) // 2], "truncated BMP"),
        "text.png": (b"this is not an image at all", "not a PNG"),
        "notes.txt": (b"operator notes", "not an image file type"),
        "header_checksum.png": (bytes(bad_crc), "IHDR checksum"),
        "zero_width.png": (PNG_SIGNATURE + png_ihdr(0, 48) + png_chunk(b"IEND", b""), "corrupt PNG header"),
        "no_idat.png": (PNG_SIGNATURE + png_ihdr(4, 4) + png_chunk(b"IEND", b""), "no IDAT"),
        "marker_garbage.jpg": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x17" * 64, "corrupt JPEG"),
        "bigtiff.tif": (b"II+\x00\x08\x00\x00\x00" + bytes(16), "BigTIFF"),
        "twelve_bit_no_sbit.png": (
            cv2.imencode(".png", np.full((48, 64), 3000, np.uint16))[1].tobytes(),
            "fit in 12 bits",
        ),
    }
    expected = {}
    for name, (data, reason) in files.items():
        (folder / name).write_bytes(data)
        expected[name] = reason
    cv2.imwrite(str(folder / "float.tiff"), np.ones((48, 64), np.float32))
    expected["float.tiff"] = "unsupported pixels"
    (folder / "directory.png").mkdir(exist_ok=True)
    expected["directory.png"] = "is a directory"
    if _try_symlink("missing-target.png", folder / "dangling.png"):
        expected["dangling.png"] = "dangling symlink"
    if _try_symlink("loop.png", folder / "loop.png"):
        expected["loop.png"] = "symlink loop"
    if _try_symlink(os.devnull, folder / "outside.png"):
        expected["outside.png"] = "leaves the folder"
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.png")
        expected["fifo.png"] = "named pipe"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        unreadable = folder / "unreadable.png"
        unreadable.write_bytes(png)
        unreadable.chmod(0)
        expected["unreadable.png"] = "permission denied"
    return expected


def write_odd_but_valid_frames(folder: Path, width: int = 64, height: int = 48) -> list[str]:
    """Unusual files that are good ``width`` x ``height`` frames; returns their names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gray = gray_frame(width, height)
    bgr = np.dstack([gray, gray // 2, 255 - gray])
    bgra = np.dstack([bgr, np.full_like(gray, 128)])
    deep_color = (bgr.astype(np.uint16) * 257) | 0x000F  # values above 4095: 16-bit data
    twelve = gray.astype(np.uint16) * 16  # 12-bit data, values 0..4095, stated by sBIT
    palette = bytes(value for index in range(256) for value in (index, index, index))  # gray entries
    files = {
        "trailing_bytes.png": cv2.imencode(".png", gray)[1].tobytes() + b"camera padding \x00\x00\xff",
        "trailing_bytes.jpg": cv2.imencode(".jpg", gray)[1].tobytes() + b"\x00\x00garbage\xff\xd8",
        "alpha.png": cv2.imencode(".png", bgra)[1].tobytes(),
        "color16.png": cv2.imencode(".png", deep_color)[1].tobytes(),
        "color16.tif": cv2.imencode(".tif", deep_color)[1].tobytes(),
        "palette.png": png_bytes(gray, 3, before_idat=(png_chunk(b"PLTE", palette),)),
        "gray_alpha.png": png_bytes(np.dstack([gray, np.full_like(gray, 255)]), 4),
        "interlaced.png": png_bytes(gray, 0, interlace=True),
        "sbit12.png": png_bytes(twelve, 0, before_idat=(png_chunk(b"sBIT", b"\x0c"),)),
        "jpeg_named.png": cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(),
        "progressive.jpg": cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        "plain.bmp": cv2.imencode(".bmp", gray)[1].tobytes(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    names = list(files)
    try:
        from PIL import Image

        Image.fromarray(gray).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
        names.append("cmyk.jpg")
    except ImportError:
        pass
    if _try_symlink("plain.bmp", folder / "link_inside.bmp"):
        names.append("link_inside.bmp")
    return sorted(names)
