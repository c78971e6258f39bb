"""Drawing single defects into a frame: scratches, pits, chipped edges and contamination.

Each drawer works on a small window around the defect (never the full frame), adds its
grey-level change to the float image, and labels the defect's pixels 255 in the mask.
Nothing is drawn off the part: shading and labels are clipped to the part's material
(warped from the canonical part for just that window), so a label always marks pixels
that look damaged. Sizes are given at the thesis frame size and multiplied by ``scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from shared.masks import MASK_DEFECT

_SUBPIXEL_BITS = 4
_SUBPIXEL = 1 << _SUBPIXEL_BITS


@dataclass(frozen=True)
class DefectRecord:
    """One drawn defect: its kind, box ``(x, y, width, height)`` in frame pixels, labelled pixels."""

    kind: str
    bbox: tuple[int, int, int, int]
    area_px: int

    def to_dict(self) -> dict:
        """JSON-ready form (``frames.jsonl``)."""
        return {"kind": self.kind, "bbox": list(self.bbox), "area_px": self.area_px}


@dataclass(frozen=True)
class DrawTarget:
    """A frame being drawn: float image and mask (both changed in place) and where the metal is."""

    image: np.ndarray  # float32 (H, W)
    mask: np.ndarray  # uint8 (H, W)
    canonical_metal: np.ndarray  # uint8 (h, w) of the canonical part, 255 = metal
    forward: np.ndarray  # float64 (2, 3): canonical -> frame pixels

    def window(self, center_xy: tuple[float, float], half_px: float) -> tuple[int, int, int, int] | None:
        """Frame window ``(x0, y0, x1, y1)`` around a point, clipped to the frame (None if empty)."""
        height, width = self.image.shape
        x0 = max(0, int(math.floor(center_xy[0] - half_px)))
        y0 = max(0, int(math.floor(center_xy[1] - half_px)))
        x1 = min(width, int(math.ceil(center_xy[0] + half_px)) + 1)
        y1 = min(height, int(math.ceil(center_xy[1] + half_px)) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def metal(self, window: tuple[int, int, int, int]) -> np.ndarray:
        """Bool map of the part's material inside a frame window (warps only that window)."""
        x0, y0, x1, y1 = window
        local = self.forward.copy()
        local[:, 2] -= (x0, y0)
        warped = cv2.warpAffine(
            self.canonical_metal,
            local,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return warped >= 128


def _commit(
    target: DrawTarget,
    kind: str,
    window: tuple[int, int, int, int],
    delta: np.ndarray,
    *,
    defect: np.ndarray,
) -> DefectRecord | None:
    """Apply a window's grey change and label on the metal only; None when nothing is left."""
    x0, y0, x1, y1 = window
    metal = target.metal(window)
    defect = defect & metal
    area_px = int(np.count_nonzero(defect))
    if area_px == 0:
        return None
    target.image[y0:y1, x0:x1] += np.where(metal, delta, np.float32(0.0))
    target.mask[y0:y1, x0:x1][defect] = MASK_DEFECT
    rows = np.flatnonzero(defect.any(axis=1))
    cols = np.flatnonzero(defect.any(axis=0))
    bbox = (x0 + int(cols[0]), y0 + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    return DefectRecord(kind=kind, bbox=bbox, area_px=area_px)


def _local_grid(window: tuple[int, int, int, int], center_xy: tuple[float, float]):
    """Pixel-centre offsets from ``center_xy`` over the window, as broadcastable float32 arrays."""
    x0, y0, x1, y1 = window
    u = (np.arange(x0, x1, dtype=np.float32) - np.float32(center_xy[0]))[None, :]
    v = (np.arange(y0, y1, dtype=np.float32) - np.float32(center_xy[1]))[:, None]
    return u, v


def _fixed_point(points_xy: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """Frame points to the window's sub-pixel integer coordinates for cv2 drawing with ``shift``."""
    local = points_xy - np.array(window[:2], dtype=np.float64)
    return np.round(local * _SUBPIXEL).astype(np.int32).reshape(-1, 1, 2)


def _tone(rng: np.random.Generator, dark_share: float, dark: tuple[float, float], light: tuple[float, float]):
    """A signed grey-level change: darker with probability ``dark_share``, else lighter."""
    if rng.random() < dark_share:
        return -float(rng.uniform(*dark))
    return float(rng.uniform(*light))


def draw_scratch(
    target: DrawTarget, center_xy: tuple[float, float], scale: float, rng: np.random.Generator
) -> DefectRecord | None:
    """A thin (1-3 px) straight or slightly curved scratch, 40-400 px long, lighter or darker."""
    length_px = math.exp(rng.uniform(math.log(40.0), math.log(400.0))) * scale
    thickness_px = max(1, int(round(int(rng.integers(1, 4)) * scale)))
    angle = rng.uniform(0.0, math.pi)
    sagitta_px = rng.uniform(-0.06, 0.06) * length_px
    tone = _tone(rng, 0.5, (20.0, 45.0), (25.0, 55.0))
    direction = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-direction[1], direction[0]])
    t = np.linspace(-0.5, 0.5, 17)[:, None]
    points = np.asarray(center_xy) + t * length_px * direction + sagitta_px * (1.0 - 4.0 * t * t) * across
    window = target.window(center_xy, length_px / 2.0 + abs(sagitta_px) + thickness_px + 2.0)
    if window is None:
        return None
    x0, y0, x1, y1 = window
    stroke = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.polylines(stroke, [_fixed_point(points, window)], False, 255, thickness_px, cv2.LINE_AA, _SUBPIXEL_BITS)
    alpha = stroke.astype(np.float32) * np.float32(1.0 / 255.0)
    # Uneven depth along the scratch: a slow random fade between 60% and 100%.
    fade = cv2.resize(
        rng.uniform(0.6, 1.0, size=(4, 4)).astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR
    )
    return _commit(target, "scratch", window, alpha * fade * np.float32(tone), defect=stroke >= 128)


def draw_pit(
    target: DrawTarget, center_xy: tuple[float, float], scale: float, rng: np.random.Generator
) -> DefectRecord | None:
    """A pit or dent: a small dark ellipse (radius 4-25 px) with a light raised rim."""
    major_px = max(1.5, rng.uniform(4.0, 25.0) * scale)
    minor_px = max(1.2, major_px * rng.uniform(0.55, 1.0))
    angle = rng.uniform(0.0, math.pi)
    rim_px = max(1.0, 0.22 * major_px)
    depth = rng.uniform(35.0, 75.0)
    rim_gain = rng.uniform(15.0, 35.0)
    window = target.window(center_xy, major_px + rim_px + 2.0)
    if window is None:
        return None
    u, v = _local_grid(window, center_xy)
    cos_a, sin_a = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    along = (u * cos_a + v * sin_a) / np.float32(major_px)
    across = (v * cos_a - u * sin_a) / np.float32(minor_px)
    rho = np.sqrt(along * along + across * across)
    dist_px = (rho - 1.0) * np.float32(math.sqrt(major_px * minor_px))  # ~distance outside the edge
    inside = np.clip(0.5 - dist_px, 0.0, 1.0)
    bowl = 0.55 + 0.45 * np.clip(1.0 - rho * rho, 0.0, 1.0)
    rim = np.clip(1.0 - np.abs(dist_px - rim_px / 2.0) / (rim_px / 2.0 + 0.5), 0.0, 1.0)
    delta = inside * bowl * np.float32(-depth) + rim * np.float32(rim_gain)
    return _commit(target, "pit", window, delta.astype(np.float32), defect=dist_px < 0.75 * rim_px)


def draw_chip(
    target: DrawTarget,
    edge_xy: tuple[float, float],
    normal_xy: tuple[float, float],
    max_width_px: float,
    *,
    scale: float,
    rng: np.random.Generator,
) -> DefectRecord | None:
    """A notch broken out of an edge: the open side (background or bore) shows through.

    ``normal_xy`` points from the metal to the open side; the notch reaches into the metal
    and its freshly broken rim catches the light.
    """
    width_px = min(rng.uniform(20.0, 90.0) * scale, 0.9 * max_width_px)
    width_px = max(width_px, 4.0)
    depth_px = width_px * rng.uniform(0.3, 0.6)
    rim_gain = rng.uniform(20.0, 45.0)
    normal = np.asarray(normal_xy, dtype=np.float64)
    normal /= max(float(np.linalg.norm(normal)), 1e-9)
    tangent = np.array([-normal[1], normal[0]])
    center = np.asarray(edge_xy) + normal * 0.2 * depth_px
    corners = 14
    angles = np.linspace(0.0, 2 * math.pi, corners, endpoint=False) + rng.uniform(0, 2 * math.pi / corners)
    jitter = rng.uniform(0.75, 1.15, size=corners)[:, None]
    polygon = center + jitter * (
        np.cos(angles)[:, None] * tangent * width_px / 2.0 + np.sin(angles)[:, None] * normal * depth_px
    )
    window = target.window(tuple(center), max(width_px / 2.0, depth_px) * 1.2 + 4.0)
    if window is None:
        return None
    x0, y0, x1, y1 = window
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(canvas, [_fixed_point(polygon, window)], 255, cv2.LINE_AA, _SUBPIXEL_BITS)
    notch = canvas >= 128
    rim_px = max(1, int(round(2.0 * scale)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim_px + 1, 2 * rim_px + 1))
    rim = (cv2.dilate(canvas, kernel) >= 128) & ~notch
    open_grey = _open_side_grey(target, edge_xy, normal, 4.0 * scale + 2.0)
    local = target.image[y0:y1, x0:x1]
    alpha = canvas.astype(np.float32) * np.float32(1.0 / 255.0)
    delta = alpha * (np.float32(open_grey) - local) + rim * np.float32(rim_gain)
    return _commit(target, "chip", window, delta.astype(np.float32), defect=notch | rim)


def _open_side_grey(target: DrawTarget, edge_xy, normal: np.ndarray, offset_px: float) -> float:
    """Grey level just across the edge (what a notch would show)."""
    height, width = target.image.shape
    x = int(round(min(max(edge_xy[0] + normal[0] * offset_px, 0), width - 1)))
    y = int(round(min(max(edge_xy[1] + normal[1] * offset_px, 0), height - 1)))
    return float(target.image[y, x])


def draw_contamination(
    target: DrawTarget, center_xy: tuple[float, float], scale: float, rng: np.random.Generator
) -> DefectRecord | None:
    """An irregular blob of dirt, oil (darker) or dried residue (lighter) with a mottled inside."""
    radius_px = max(2.0, rng.uniform(26.0, 52.0) * scale)
    blobs = int(rng.integers(3, 8))
    tone = _tone(rng, 0.7, (18.0, 45.0), (15.0, 35.0))
    window = target.window(center_xy, 1.8 * radius_px + 3.0)
    if window is None:
        return None
    x0, y0, x1, y1 = window
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    offsets = rng.normal(0.0, 0.4 * radius_px, size=(blobs, 2))
    axes = radius_px * rng.uniform(0.35, 0.8, size=(blobs, 2))
    angles = rng.uniform(0.0, 180.0, size=blobs)
    for offset, axis, angle in zip(offsets, axes, angles, strict=True):
        center = _fixed_point(np.asarray(center_xy) + offset, window).reshape(2)
        axis_fixed = tuple(int(a) for a in np.round(axis * _SUBPIXEL))
        cv2.ellipse(
            canvas,
            tuple(int(c) for c in center),
            axis_fixed,
            float(angle),
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
            _SUBPIXEL_BITS,
        )
    field = cv2.GaussianBlur(canvas.astype(np.float32) * np.float32(1.0 / 255.0), (0, 0), 0.2 * radius_px)
    alpha = np.clip((field - 0.3) / 0.35, 0.0, 1.0)
    mottle_shape = (max(2, (y1 - y0) // 6), max(2, (x1 - x0) // 6))
    mottle = cv2.resize(
        rng.uniform(0.6, 1.0, size=mottle_shape).astype(np.float32),
        (x1 - x0, y1 - y0),
        interpolation=cv2.INTER_LINEAR,
    )
    return _commit(target, "contamination", window, alpha * mottle * np.float32(tone), defect=alpha >= 0.3)
