"""Image files before their pixels: what the header declares, and whether the file is complete.

OpenCV allocates whatever a header declares before it reads one pixel (a 74-byte PNG may
declare 100000 x 100000), and it decodes truncated JPEG/PNG files without complaint (the
missing rows come out grey). So the training importers and the edge's frame sources read
the header here first - pure Python on the bytes, nothing decoded - refuse images above a
pixel budget, check that the file is complete, and only then hand the bytes to a decoder.

PNG, JPEG, TIFF and BMP are recognised by their first bytes, not by the file name (a JPEG
saved as ``.png`` is read as the JPEG it is); anything else is refused before decoding, so
no bytes reach the decoder whose size has not been checked.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# 32 MP: 4.5x the 3200 x 2224 (7.1 MP) frames of the line, above 31 MP industrial sensors. The
# decoded buffer of the worst valid file at the limit (16-bit RGBA) is 8 B/px = 256 MB, so one
# such frame still fits the 1 GB station budget next to the models; 64 MP would make it 512 MB.
DEFAULT_MAX_PIXELS = 32_000_000
HEADER_PREFIX_BYTES = 1 << 20  # read this much first; the rest only once the header is within budget
_BYTES_PER_PIXEL_WORST = 8  # 16-bit x 4 channels, uncompressed
_METADATA_SLACK_BYTES = 16 << 20  # EXIF/ICC/XMP segments, thumbnails

_SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel (palette: 1 index)
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0-7: no length field
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy-coded data: FF00 is a stuffed byte
_TIFF_TYPE_SIZES = {1: 1, 3: 2, 4: 4}  # BYTE, SHORT, LONG


class ImageFormat(str, Enum):
    """Container formats whose headers this module reads."""

    PNG = "PNG"
    JPEG = "JPEG"
    TIFF = "TIFF"
    BMP = "BMP"


@dataclass(frozen=True)
class ImageHeader:
    """What a file declares about its pixels, read without decoding them."""

    format: ImageFormat
    width_px: int
    height_px: int
    bit_depth: int | None = None  # bits per sample as stored (None: the header does not say)
    channels: int | None = None  # samples per pixel as stored (a palette image has 1: the index)
    significant_bits: int | None = None  # PNG sBIT / TIFF MaxSampleValue: bits the sensor filled

    @property
    def pixels(self) -> int:
        return self.width_px * self.height_px


def sniff_format(data: bytes) -> ImageFormat | None:
    """The format the first bytes announce, or None."""
    if data.startswith(PNG_SIGNATURE):
        return ImageFormat.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ImageFormat.TIFF
    if data.startswith(b"BM"):
        return ImageFormat.BMP
    return None


def read_header(data: bytes, suffix: str = "") -> ImageHeader | str:
    """The declared size (and depth/channels where the header says) of an encoded image, or why not.

    ``data`` may be only the start of the file; a header cut short reads as truncated.
    ``suffix`` only shapes the message when the bytes are no image at all.

    >>> import struct, zlib
    >>> ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    >>> png = PNG_SIGNATURE + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    >>> header = read_header(png)
    >>> (header.format.value, header.width_px, header.height_px, header.pixels)
    ('PNG', 100000, 100000, 10000000000)
    >>> read_header(b"hello", ".png")
    'not a PNG file (its first bytes match no supported image format: PNG, JPEG, TIFF, BMP)'
    """
    kind = sniff_format(data)
    try:
        if kind is ImageFormat.PNG:
            return _png_header(data)
        if kind is ImageFormat.JPEG:
            return _jpeg_header(data)
        if kind is ImageFormat.TIFF:
            return _tiff_header(data)
        if kind is ImageFormat.BMP:
            return _bmp_header(data)
    except struct.error:
        return f"truncated {kind.value if kind else 'image'} header"
    expected = _SUFFIX_FORMATS.get(suffix.lower())
    what = f"a {expected} file" if expected else "an image file"
    return f"not {what} (its first bytes match no supported image format: PNG, JPEG, TIFF, BMP)"


def pixel_budget_problem(header: ImageHeader, max_pixels: int, setting: str) -> str | None:
    """Why ``header`` declares more pixels than ``setting`` (= ``max_pixels``) allows, or None."""
    if header.pixels <= max_pixels:
        return None
    return (
        f"declared size {header.width_px} x {header.height_px} px{_megapixels(header.pixels)} exceeds "
        f"{setting} = {max_pixels}{_megapixels(max_pixels)}; refused before decoding"
    )


def _megapixels(pixels: int) -> str:
    return f" ({pixels / 1e6:.1f} MP)" if pixels >= 100_000 else ""


def completeness_problem(data: bytes, kind: ImageFormat) -> str | None:
    """Why ``data`` is not a complete file of its format, or None; bytes after the end are allowed."""
    try:
        if kind is ImageFormat.PNG:
            return _png_completeness(data)
        if kind is ImageFormat.JPEG:
            return _jpeg_completeness(data)
        if kind is ImageFormat.TIFF:
            return _tiff_completeness(data)
        return _bmp_completeness(data)
    except struct.error:
        return f"truncated {kind.value} (a structure runs past the end of the file)"


def check_image_bytes(data: bytes, max_pixels: int, setting: str, suffix: str = "") -> ImageHeader | str:
    """The header of a complete image within the pixel budget, or the first reason it is not one."""
    header = read_header(data, suffix)
    if isinstance(header, str):
        return header
    return pixel_budget_problem(header, max_pixels, setting) or completeness_problem(data, header.format) or header


def max_file_bytes(max_pixels: int) -> int:
    """The largest file an image within ``max_pixels`` can need (16-bit RGBA uncompressed + metadata)."""
    return max_pixels * _BYTES_PER_PIXEL_WORST + _METADATA_SLACK_BYTES


def read_image_bytes(
    path: Path, max_pixels: int, setting: str, *, follow_symlinks: bool = True
) -> tuple[bytearray, ImageHeader] | str:
    """The bytes and header of an image file that may be decoded, or why it may not (nothing raised).

    Reads the header first and the rest only when the header is within ``max_pixels``;
    refuses what is not a regular file (a FIFO would block a plain read forever), files
    larger than any image within budget, and files that vanish or cannot be opened.
    With ``follow_symlinks=False`` a path that is (or became) a symlink is refused.
    """
    suffix = Path(path).suffix.lower()
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        return _open_problem(error)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return not_regular_reason(info.st_mode)
        with os.fdopen(fd, "rb", buffering=0) as handle:
            data = _read_checked(handle, info.st_size, max_pixels, setting, suffix)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if isinstance(data, str):
        return data
    checked = check_image_bytes(data, max_pixels, setting, suffix)
    return checked if isinstance(checked, str) else (data, checked)


def _read_checked(handle: BinaryIO, size: int, max_pixels: int, setting: str, suffix: str) -> bytearray | str:
    """The file's bytes (one buffer, no copies of the whole), its header checked before the bulk is read."""
    limit = max_file_bytes(max_pixels)
    if size == 0:
        return "empty file"
    if size > limit:
        return (
            f"file of {size / 1e6:.0f} MB is larger than any image within {setting} = {max_pixels} "
            f"can be ({limit / 1e6:.0f} MB)"
        )
    buffer = bytearray(size)
    with memoryview(buffer) as view:
        filled = _fill(handle, view[: min(size, HEADER_PREFIX_BYTES)])
        header = read_header(bytes(view[:filled]), suffix)
        if not isinstance(header, str) and (problem := pixel_budget_problem(header, max_pixels, setting)):
            return problem
        if filled == min(size, HEADER_PREFIX_BYTES) and filled < size:
            filled += _fill(handle, view[filled:])
    if filled < size:  # shrank while being read: what is there is checked for completeness
        del buffer[filled:]
    return buffer if buffer else "empty file"


def _fill(handle: BinaryIO, view: memoryview) -> int:
    """Read into ``view`` until it is full or the file ends; the number of bytes read."""
    total = 0
    while total < len(view):
        count = handle.readinto(view[total:])
        if not count:
            break
        total += count
    return total


def _open_problem(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "file vanished before it could be read"
    if error.errno == errno.ELOOP:
        return "is a symlink (not followed) or a symlink loop"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    return f"cannot be read ({error.strerror or error})"


def not_regular_reason(mode: int) -> str:
    """What a non-regular file is, as a reason to refuse reading it (``mode`` from ``os.stat``)."""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "not a regular file (a named pipe)"
    if stat.S_ISSOCK(mode):
        return "not a regular file (a socket)"
    return "not a regular file (a device)"


# --- PNG ----------------------------------------------------------------------------------


def _png_chunks(data: bytes):
    """(type, data offset, length) of each chunk after the signature; stops at the end or a cut chunk."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, pos + 8, length
        pos += 12 + length


def _png_header(data: bytes) -> ImageHeader | str:
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        return "corrupt PNG (the first chunk is not a 13-byte IHDR)"
    width, height, depth, color, _compression, _filter, _interlace = struct.unpack_from(">IIBBBBB", data, 16)
    (crc,) = struct.unpack_from(">I", data, 29)
    if zlib.crc32(data[12:29]) != crc:
        return "corrupt PNG header (IHDR checksum mismatch)"
    if not (0 < width < 2**31 and 0 < height < 2**31):
        return f"corrupt PNG header (declared size {width} x {height})"
    if depth not in _PNG_DEPTHS.get(color, ()):
        return f"corrupt PNG header (colour type {color} with bit depth {depth})"
    significant = None
    for chunk, offset, size in _png_chunks(data):
        if chunk in (b"IDAT", b"IEND") or offset + size > len(data):
            break
        if chunk == b"sBIT" and size >= 1:
            significant = max(data[offset : offset + min(size, 3 if color in (2, 3, 6) else 1)])
    return ImageHeader(ImageFormat.PNG, width, height, depth, _PNG_CHANNELS[color], significant)


def _png_completeness(data: bytes) -> str | None:
    seen_data = False
    for chunk, offset, size in _png_chunks(data):
        if offset + size + 4 > len(data):
            return f"truncated PNG (chunk {chunk.decode('latin-1')!r} runs past the end of the file)"
        if chunk == b"IDAT":
            seen_data = True
        elif chunk == b"IEND":
            return None if seen_data else "corrupt PNG (no IDAT image data before IEND)"
    return "truncated PNG (no IEND chunk)"


# --- JPEG ---------------------------------------------------------------------------------


def _jpeg_segments(data: bytes):
    """(marker, payload offset, payload length) from SOI on; entropy-coded data after SOS is skipped."""
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"corrupt JPEG (expected a marker at byte {pos})")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            return
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE or marker == 0xD9:
            yield marker, pos, 0
            continue
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise ValueError(f"corrupt JPEG (segment length {length} at byte {pos})")
        yield marker, pos + 2, length - 2
        pos += length
        if marker == 0xDA:  # scan: skip entropy-coded data up to the next real marker
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                return
            pos = found.start()


def _jpeg_header(data: bytes) -> ImageHeader | str:
    try:
        for marker, offset, _length in _jpeg_segments(data):
            if marker in _JPEG_SOF:
                precision, height, width, components = struct.unpack_from(">BHHB", data, offset)
                if height == 0:
                    return "unsupported JPEG (height declared later by a DNL marker)"
                if width == 0:
                    return "corrupt JPEG header (width 0)"
                return ImageHeader(ImageFormat.JPEG, width, height, precision, components)
            if marker in (0xD9, 0xDA):
                return "corrupt JPEG (no frame header before the image data)"
    except ValueError as error:
        return str(error)
    return "truncated JPEG (no frame header)"


def _jpeg_completeness(data: bytes) -> str | None:
    try:
        for marker, offset, length in _jpeg_segments(data):
            if marker == 0xD9:
                return None
            if offset + length > len(data):
                break
    except ValueError as error:
        return str(error)
    return "truncated JPEG (no end-of-image marker)"


# --- TIFF ---------------------------------------------------------------------------------


def _tiff_tags(data: bytes) -> tuple[str, dict[int, list[int]]] | str:
    order = "<" if data[:2] == b"II" else ">"
    (magic, ifd) = struct.unpack_from(order + "HI", data, 2)
    if magic == 43:
        return "unsupported TIFF (BigTIFF)"
    if ifd < 8:
        return f"corrupt TIFF (first IFD at byte {ifd})"
    (count,) = struct.unpack_from(order + "H", data, ifd)
    tags: dict[int, list[int]] = {}
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind, number = struct.unpack_from(order + "HHI", data, entry)
        size = _TIFF_TYPE_SIZES.get(kind)
        if size is None or tag not in (256, 257, 258, 273, 277, 279, 281, 324, 325):
            continue
        offset = entry + 8 if size * number <= 4 else struct.unpack_from(order + "I", data, entry + 8)[0]
        if offset + size * number > len(data):
            raise struct.error("tag values past the end")
        code = {1: "B", 3: "H", 4: "I"}[kind]
        tags[tag] = list(struct.unpack_from(f"{order}{number}{code}", data, offset))
    return order, tags


def _tiff_header(data: bytes) -> ImageHeader | str:
    parsed = _tiff_tags(data)
    if isinstance(parsed, str):
        return parsed
    tags = parsed[1]
    if not tags.get(256) or not tags.get(257):
        return "corrupt TIFF (no ImageWidth/ImageLength in the first IFD)"
    width, height = tags[256][0], tags[257][0]
    if width == 0 or height == 0:
        return f"corrupt TIFF header (declared size {width} x {height})"
    bits = max(tags.get(258) or [1])
    channels = (tags.get(277) or [1])[0]
    significant = None
    if tags.get(281) and 0 < max(tags[281]) < 2**bits - 1:
        significant = max(tags[281]).bit_length()
    return ImageHeader(ImageFormat.TIFF, width, height, bits, channels, significant)


def _tiff_completeness(data: bytes) -> str | None:
    parsed = _tiff_tags(data)
    if isinstance(parsed, str):
        return parsed
    tags = parsed[1]
    offsets, counts = (tags.get(273), tags.get(279)) if 273 in tags else (tags.get(324), tags.get(325))
    if not offsets or not counts or len(offsets) != len(counts):
        return "corrupt TIFF (no strip or tile offsets with byte counts)"
    end = max(offset + count for offset, count in zip(offsets, counts, strict=True))
    if end > len(data):
        return f"truncated TIFF (image data runs to byte {end}, the file has {len(data)})"
    return None


# --- BMP ----------------------------------------------------------------------------------


def _bmp_fields(data: bytes) -> tuple[int, int, int, int, int, int] | str:
    """(width, height, bits per pixel, compression, pixel data offset, header size) or why not."""
    pixel_offset, header_size = struct.unpack_from("<II", data, 10)
    if header_size == 12:  # BITMAPCOREHEADER
        width, height, _planes, bpp = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif header_size in (40, 52, 56, 64, 108, 124):  # BITMAPINFOHEADER and its successors
        width, height, _planes, bpp, compression = struct.unpack_from("<iiHHI", data, 18)
        height = abs(height)  # negative: rows stored top-down
    else:
        return f"unsupported BMP (DIB header of {header_size} bytes)"
    if width <= 0 or height == 0 or bpp not in (1, 2, 4, 8, 16, 24, 32):
        return f"corrupt BMP header (declared size {width} x {height}, {bpp} bits per pixel)"
    return width, height, bpp, compression, pixel_offset, header_size


def _bmp_header(data: bytes) -> ImageHeader | str:
    fields = _bmp_fields(data)
    if isinstance(fields, str):
        return fields
    width, height, bpp = fields[:3]
    channels = 4 if bpp == 32 else 3 if bpp in (16, 24) else 1
    return ImageHeader(ImageFormat.BMP, width, height, 8 if bpp >= 16 else bpp, channels)


def _bmp_completeness(data: bytes) -> str | None:
    fields = _bmp_fields(data)
    if isinstance(fields, str):
        return fields
    width, height, bpp, compression, pixel_offset, _size = fields
    if compression not in (0, 3):  # RLE/JPEG/PNG payloads: the decoder checks them
        return None
    end = pixel_offset + (bpp * width + 31) // 32 * 4 * height
    if end > len(data):
        return f"truncated BMP (pixel rows run to byte {end}, the file has {len(data)})"
    return None
