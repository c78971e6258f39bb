"""Is an encoded image file complete? (OpenCV decodes truncated JPEG/PNG files without complaint.)

Used by the training importers and by the edge's frame sources, so both reject the same files.
"""

from __future__ import annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def structural_problem(data: bytes, suffix: str) -> str | None:
    """Why ``data`` is not a complete file of its type, or None (only formats with end markers)."""
    if suffix in (".jpg", ".jpeg"):
        if not data.startswith(b"\xff\xd8"):
            return "not a JPEG file (no start-of-image marker)"
        if b"\xff\xd9" not in data.rstrip(b"\x00\r\n ")[-16:]:
            return "truncated JPEG (no end-of-image marker)"
    elif suffix == ".png":
        if not data.startswith(PNG_SIGNATURE):
            return "not a PNG file (bad signature)"
        if b"IEND" not in data[-16:]:
            return "truncated PNG (no IEND chunk)"
    return None
