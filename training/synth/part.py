"""The one fixed pump-part design (a machined flange), rendered once per frame size.

Every synthetic frame is this canonical image warped by a small pose jitter, so the
expensive work (radial profiles, signed distances, chamfer shading) happens once per
frame size and is cached. Besides the grey image the part says where defects may go:
``surface`` (metal away from edges) for most kinds and ``edges`` (outline and bores,
with outward normals) for chipped edges.

Geometry is written in units of the part radius ``R`` so the part scales with the
frame: its diameter is 90% of the shorter frame side, centred in the frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

PART_DIAMETER_OF_FRAME = 0.90
# Part radius at the thesis frame size (3200x2224); defect sizes are specified there.
REFERENCE_RADIUS_PX = PART_DIAMETER_OF_FRAME * 2224 / 2

# Unit vector towards the (ring) light in image coordinates: upper left.
LIGHT_XY = (-0.6, -0.8)
BACKGROUND_GREY = 42.0
HOLE_GREY = 16.0

# Machined zones from the centre outwards: (outer radius / R, grey, tool-mark period px at the
# reference size, tool-mark amplitude in grey levels, anisotropic reflectance amplitude).
_ZONES = (
    (0.20, 170.0, 2.5, 4.0, 0.05),  # inside the central bore (hidden by the hole)
    (0.27, 182.0, 2.5, 4.0, 0.05),  # bore land
    (0.45, 162.0, 3.5, 6.0, 0.10),  # raised hub
    (0.47, 112.0, 2.0, 2.0, 0.02),  # shoulder fillet
    (0.76, 128.0, 5.0, 7.0, 0.14),  # face-turned web
    (0.785, 72.0, 2.0, 2.0, 0.02),  # O-ring groove
    (1.05, 150.0, 3.0, 5.0, 0.09),  # flange
)
# Ring steps seen from above: (radius / R, shading sign: +1 wall faces outwards, -1 inwards).
_STEPS = ((0.45, 1.0), (0.76, 1.0), (0.785, -1.0))
_STEP_WIDTH_R = 0.006
_FLAT_R = 0.95  # two flats cut the outline at |y| = 0.95 R
_BORE_R = 0.20
_KEYWAY_HALF_WIDTH_R = 0.035
_KEYWAY_DEPTH_R = 0.245  # keyway reaches from the centre up to this radius
# Small through holes: (radius on the part / R, angle deg, hole radius / R).
_HOLES = (
    *((0.88, 22.5 + 45.0 * k, 0.042) for k in range(8)),  # bolt circle
    (0.62, 150.0, 0.028),  # dowel bore
    (0.36, 30.0, 0.020),  # tapped holes in the hub
    (0.36, 210.0, 0.020),
)
_CHAMFER_R = 0.008
_SURFACE_MARGIN_R = 0.02
_CHIP_MIN_RADIUS_R = 0.035  # holes smaller than this get no chipped edges
_PROFILE_STEPS_PER_PX = 4


@dataclass(frozen=True)
class EdgeContour:
    """One closed part edge (outline or a bore) in canonical frame pixels."""

    points_xy: np.ndarray  # float32 (N, 2)
    normals_xy: np.ndarray  # float32 (N, 2), unit, pointing from metal to the open side
    radius_px: float  # radius of a circle with the enclosed area (limits chip size)


@dataclass(frozen=True)
class CanonicalPart:
    """The part in canonical pose; all arrays are read-only and shared between frames."""

    image: np.ndarray  # float32 (H, W), grey levels 0..255
    metal: np.ndarray  # uint8 (H, W), 255 on the part's material, 0 in holes and background
    surface: np.ndarray  # bool (H, W), metal far enough from any edge for a defect centre
    edges: tuple[EdgeContour, ...]  # edges that may get chipped
    center_xy: tuple[float, float]
    radius_px: float

    @property
    def scale(self) -> float:
        """Frame pixels per pixel of the reference (thesis-size) part; defect sizes use it."""
        return self.radius_px / REFERENCE_RADIUS_PX


@functools.lru_cache(maxsize=4)
def canonical_part(width_px: int, height_px: int) -> CanonicalPart:
    """Render the part for a frame size (cached: about a second at 3200x2224, then free)."""
    if width_px < 16 or height_px < 16:
        raise ValueError(f"frame too small for the part: {width_px}x{height_px}")
    cx, cy = (width_px - 1) / 2.0, (height_px - 1) / 2.0
    radius = PART_DIAMETER_OF_FRAME * min(width_px, height_px) / 2.0
    x = (np.arange(width_px, dtype=np.float32) - np.float32(cx))[None, :]
    y = (np.arange(height_px, dtype=np.float32) - np.float32(cy))[:, None]
    r = np.sqrt(x * x + y * y)

    metal_grey = _machined_surface(x, y, r, radius)
    sdf = _signed_distance(x, y, r, radius=radius, cx=cx, cy=cy)
    _shade_chamfers(metal_grey, sdf, radius)
    coverage = np.clip(0.5 - sdf, 0.0, 1.0)
    open_grey = np.where(r < 0.94 * radius, np.float32(HOLE_GREY), np.float32(BACKGROUND_GREY))
    open_grey = open_grey + np.float32(6.0) * (x / np.float32(width_px))  # fixture plate gradient
    image = open_grey + coverage * (metal_grey - open_grey)

    metal = np.where(sdf < 0.0, np.uint8(255), np.uint8(0))
    surface = sdf < -_SURFACE_MARGIN_R * radius
    edges = _edge_contours(metal, sdf, radius)
    for array in (image, metal, surface):
        array.flags.writeable = False
    return CanonicalPart(
        image=image,
        metal=metal,
        surface=surface,
        edges=edges,
        center_xy=(cx, cy),
        radius_px=radius,
    )


def _machined_surface(x: np.ndarray, y: np.ndarray, r: np.ndarray, radius: float) -> np.ndarray:
    """Grey level of the turned faces: zone greys, concentric tool marks, anisotropic sheen."""
    scale = radius / REFERENCE_RADIUS_PX
    max_r = float(r.max()) + 2.0
    steps = int(math.ceil(max_r * _PROFILE_STEPS_PER_PX)) + 2
    r_profile = np.arange(steps, dtype=np.float64) / _PROFILE_STEPS_PER_PX
    rng = np.random.default_rng(20240611)  # the design is fixed: same marks in every frame

    grey = np.empty(steps)
    marks = np.empty(steps)
    sheen = np.empty(steps)
    inner = 0.0
    for outer_r, zone_grey, period_px, amplitude, aniso in _ZONES:
        sel = (r_profile >= inner * radius) & (r_profile < outer_r * radius)
        if outer_r == _ZONES[-1][0]:
            sel = r_profile >= inner * radius
        period = max(2.5, period_px * scale)
        phase = rng.uniform(0, 2 * math.pi)
        grey[sel] = zone_grey
        marks[sel] = amplitude * np.sin(2 * math.pi * r_profile[sel] / period + phase)
        sheen[sel] = aniso
        inner = outer_r
    # Irregular concentric marks (tool chatter) and slow radial variation of the finish.
    fine = _smooth_1d(rng.standard_normal(steps), 0.7 * _PROFILE_STEPS_PER_PX) * 9.0
    slow = _smooth_1d(rng.standard_normal(steps), 40.0 * scale * _PROFILE_STEPS_PER_PX)
    slow *= 4.0 / max(float(slow.std()), 1e-6)
    box = np.ones(_PROFILE_STEPS_PER_PX) / _PROFILE_STEPS_PER_PX  # 1-px anti-aliasing of zone edges
    grey = np.convolve(grey, box, mode="same") + marks + fine + slow
    sheen = np.convolve(sheen, box, mode="same")

    step_shade = np.zeros(steps)
    width = max(1.0, _STEP_WIDTH_R * radius)
    for step_r, sign in _STEPS:
        dist = np.abs(r_profile - step_r * radius)
        step_shade += sign * 55.0 * np.clip(1.0 - dist / width, 0.0, 1.0)

    index = np.minimum((r * _PROFILE_STEPS_PER_PX + 0.5).astype(np.int32), steps - 1)
    light_x, light_y = LIGHT_XY
    inv_r = 1.0 / np.maximum(r, 1.0)
    cos_t, sin_t = x * inv_r, y * inv_r
    # cos(2 (theta - light angle)): machined faces reflect most along/against the light.
    light_angle = math.atan2(light_y, light_x)
    cos2 = (cos_t * cos_t - sin_t * sin_t) * math.cos(2 * light_angle) + 2 * cos_t * sin_t * math.sin(2 * light_angle)
    facing = cos_t * light_x + sin_t * light_y
    surface = grey.astype(np.float32)[index]
    surface *= 1.0 + sheen.astype(np.float32)[index] * cos2
    surface += step_shade.astype(np.float32)[index] * facing
    return surface


def _smooth_1d(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a 1-D profile."""
    half = max(1, int(3 * sigma))
    t = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (t / max(sigma, 1e-3)) ** 2)
    return np.convolve(values, kernel / kernel.sum(), mode="same")


def _signed_distance(x: np.ndarray, y: np.ndarray, r: np.ndarray, *, radius: float, cx: float, cy: float) -> np.ndarray:
    """Signed distance to the part's material (negative on metal) in frame pixels."""
    sdf = np.maximum(r - np.float32(radius), np.abs(y) - np.float32(_FLAT_R * radius))
    height, width = sdf.shape

    def carve(center_x: float, center_y: float, half_w: float, half_h: float, *, hole) -> None:
        margin = _CHAMFER_R * radius + 3.0
        x0 = max(0, int(math.floor(cx + center_x - half_w - margin)))
        x1 = min(width, int(math.ceil(cx + center_x + half_w + margin)) + 1)
        y0 = max(0, int(math.floor(cy + center_y - half_h - margin)))
        y1 = min(height, int(math.ceil(cy + center_y + half_h + margin)) + 1)
        if x1 <= x0 or y1 <= y0:
            return
        local_x = x[:, x0:x1] - np.float32(center_x)
        local_y = y[y0:y1, :] - np.float32(center_y)
        np.maximum(sdf[y0:y1, x0:x1], -hole(local_x, local_y), out=sdf[y0:y1, x0:x1])

    def disk(hole_r: float):
        return lambda lx, ly: np.sqrt(lx * lx + ly * ly) - np.float32(hole_r)

    bore = _BORE_R * radius
    carve(0.0, 0.0, bore, bore, hole=disk(bore))
    key_half_w = _KEYWAY_HALF_WIDTH_R * radius
    key_half_h = _KEYWAY_DEPTH_R * radius / 2.0
    carve(0.0, -key_half_h, key_half_w, key_half_h, hole=_box(key_half_w, key_half_h))
    for ring_r, angle_deg, hole_r in _HOLES:
        angle = math.radians(angle_deg)
        hole_px = hole_r * radius
        hx, hy = ring_r * radius * math.cos(angle), ring_r * radius * math.sin(angle)
        carve(hx, hy, hole_px, hole_px, hole=disk(hole_px))
    return sdf


def _box(half_w: float, half_h: float):
    """Signed distance function of an axis-aligned box centred at the origin."""

    def sdf(lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
        qx = np.abs(lx) - np.float32(half_w)
        qy = np.abs(ly) - np.float32(half_h)
        outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0.0)

    return sdf


def _shade_chamfers(metal_grey: np.ndarray, sdf: np.ndarray, radius: float) -> None:
    """Replace the metal next to every edge by a bevel lit from :data:`LIGHT_XY` (in place)."""
    chamfer_px = max(1.5, _CHAMFER_R * radius)
    rows, cols = np.nonzero((sdf > -chamfer_px - 1.0) & (sdf < 1.0))
    normal_x, normal_y = _gradient_at(sdf, rows, cols)
    facing = normal_x * LIGHT_XY[0] + normal_y * LIGHT_XY[1]
    bevel_grey = 150.0 + 80.0 * facing
    weight = np.clip(sdf[rows, cols] + chamfer_px + 1.0, 0.0, 1.0)
    current = metal_grey[rows, cols]
    metal_grey[rows, cols] = current + weight * (bevel_grey - current)


def _gradient_at(sdf: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit gradient of the signed distance (metal -> open side) at the given pixels."""
    height, width = sdf.shape
    right = sdf[rows, np.minimum(cols + 1, width - 1)]
    left = sdf[rows, np.maximum(cols - 1, 0)]
    down = sdf[np.minimum(rows + 1, height - 1), cols]
    up = sdf[np.maximum(rows - 1, 0), cols]
    gx, gy = right - left, down - up
    norm = np.maximum(np.sqrt(gx * gx + gy * gy), 1e-6)
    return (gx / norm).astype(np.float32), (gy / norm).astype(np.float32)


def _edge_contours(metal: np.ndarray, sdf: np.ndarray, radius: float) -> tuple[EdgeContour, ...]:
    """Outline and bore edges large enough to chip, with outward normals from the distance field."""
    contours, _ = cv2.findContours(metal, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    edges = []
    for contour in contours:
        points = contour.reshape(-1, 2)
        edge_radius = math.sqrt(abs(cv2.contourArea(contour)) / math.pi)
        if edge_radius < _CHIP_MIN_RADIUS_R * radius or len(points) < 8:
            continue
        normal_x, normal_y = _gradient_at(sdf, points[:, 1], points[:, 0])
        edges.append(
            EdgeContour(
                points_xy=points.astype(np.float32),
                normals_xy=np.stack([normal_x, normal_y], axis=1),
                radius_px=edge_radius,
            )
        )
    return tuple(edges)
