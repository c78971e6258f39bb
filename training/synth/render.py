"""Render one synthetic frame: the canonical part under pose, lighting, texture and noise jitter.

Everything random comes from ``np.random.default_rng([seed, index])`` in a fixed order,
so a frame is a pure function of ``(config, seed, index)`` and any frame of a set can be
re-rendered alone. Full-frame work is a handful of float32 OpenCV passes (one warp,
one gain multiply, noise, conversion); defects are drawn in small windows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from training.synth.config import DEFECT_KINDS, SynthConfig
from training.synth.defects import (
    DefectRecord,
    DrawTarget,
    draw_chip,
    draw_contamination,
    draw_pit,
    draw_scratch,
)
from training.synth.part import CanonicalPart, canonical_part

_MID_GREY = 110.0  # contrast pivot, about the mean grey of the part
_GAIN_LOW_RES_DIV = 16  # vignetting and finish variation are smooth: computed at 1/16 size
_GRAIN_RES_DIV = 4  # fine surface grain: 1/4 size, upsampled
_SURFACE_TRIES = 64
_PLACEMENT_SIGMA_R = 0.35  # spread of defect positions around the part centre, in part radii


@dataclass(frozen=True)
class Pose:
    """Where the part lies in this frame relative to the canonical pose (about the frame centre)."""

    dx_px: float
    dy_px: float
    rotation_deg: float  # counter-clockwise as seen in the image

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Lighting:
    """Global photometric jitter of this frame (1.0 = nominal)."""

    brightness_gain: float
    contrast_gain: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SynthFrame:
    """One rendered frame: 8-bit grey image, 0/255 defect mask, the defects and the jitter used."""

    image: np.ndarray  # uint8 (H, W)
    mask: np.ndarray  # uint8 (H, W), 0 = good, 255 = defect
    defects: list[DefectRecord]
    pose: Pose
    lighting: Lighting


def pose_matrix(pose: Pose, center_xy: tuple[float, float]) -> np.ndarray:
    """Affine map (2x3, float64) from canonical to frame pixels for ``pose``."""
    forward = cv2.getRotationMatrix2D(center_xy, pose.rotation_deg, 1.0)
    forward[:, 2] += (pose.dx_px, pose.dy_px)
    return forward


def render_frame(config: SynthConfig, seed: int, index: int) -> SynthFrame:
    """Render frame ``index`` of the set ``seed``; same arguments give byte-identical output."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    rng = np.random.default_rng([seed, index])
    part = canonical_part(config.width_px, config.height_px)
    pose = Pose(
        dx_px=float(rng.uniform(-config.position_jitter_px, config.position_jitter_px)),
        dy_px=float(rng.uniform(-config.position_jitter_px, config.position_jitter_px)),
        rotation_deg=float(rng.uniform(-config.rotation_jitter_deg, config.rotation_jitter_deg)),
    )
    lighting = Lighting(
        brightness_gain=float(1.0 + rng.uniform(-config.brightness_jitter, config.brightness_jitter)),
        contrast_gain=float(1.0 + rng.uniform(-config.contrast_jitter, config.contrast_jitter)),
    )
    forward = pose_matrix(pose, part.center_xy)
    size = (config.width_px, config.height_px)
    image = cv2.warpAffine(part.image, forward, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = np.zeros((config.height_px, config.width_px), dtype=np.uint8)
    target = DrawTarget(image=image, mask=mask, canonical_metal=part.metal, forward=forward)
    defects = _draw_defects(target, part, config, rng)
    gain = _gain_field(config, rng)
    return SynthFrame(
        image=_expose(image, gain, config, lighting, rng=rng),
        mask=mask,
        defects=defects,
        pose=pose,
        lighting=lighting,
    )


def _draw_defects(
    target: DrawTarget, part: CanonicalPart, config: SynthConfig, rng: np.random.Generator
) -> list[DefectRecord]:
    """Poisson-many defects of randomly chosen kinds, placed on the part (canonical -> frame)."""
    count = int(rng.poisson(config.defects_per_frame))
    if count == 0:
        return []
    kinds = rng.choice(len(DEFECT_KINDS), size=count, p=config.kind_weights.probabilities())
    records = []
    for kind_index in kinds:
        record = _draw_one(target, part, DEFECT_KINDS[int(kind_index)], rng)
        if record is not None:
            records.append(record)
    return records


def _draw_one(target: DrawTarget, part: CanonicalPart, kind: str, rng: np.random.Generator) -> DefectRecord | None:
    if kind == "chip":
        return _draw_chip_on_edge(target, part, rng)
    point = _surface_point(part, rng)
    if point is None:
        return None
    center_xy = _to_frame(target.forward, point)
    if kind == "scratch":
        return draw_scratch(target, center_xy, part.scale, rng)
    if kind == "pit":
        return draw_pit(target, center_xy, part.scale, rng)
    return draw_contamination(target, center_xy, part.scale, rng)


def _draw_chip_on_edge(target: DrawTarget, part: CanonicalPart, rng: np.random.Generator) -> DefectRecord | None:
    """A chip at an edge point drawn with the same centre-weighted density as surface defects."""
    if not part.edges:
        return None
    points = np.concatenate([edge.points_xy for edge in part.edges])
    weights = _placement_weight(part, points)
    chosen = int(rng.choice(len(points), p=weights / weights.sum()))
    starts = np.cumsum([0, *(len(edge.points_xy) for edge in part.edges)])
    edge_index = int(np.searchsorted(starts, chosen, side="right")) - 1
    edge = part.edges[edge_index]
    point_index = chosen - int(starts[edge_index])
    edge_xy = _to_frame(target.forward, edge.points_xy[point_index])
    normal_xy = target.forward[:, :2] @ edge.normals_xy[point_index].astype(np.float64)
    return draw_chip(
        target, edge_xy, (float(normal_xy[0]), float(normal_xy[1])), edge.radius_px, scale=part.scale, rng=rng
    )


def _placement_weight(part: CanonicalPart, points_xy: np.ndarray) -> np.ndarray:
    """Relative defect density at canonical points: a Gaussian falloff from the part centre.

    Defects concentrate on the inspected faces inside the centre crop, as in the thesis data;
    the flange rim, half of which lies outside the crop, gets fewer.
    """
    offsets = (points_xy - np.asarray(part.center_xy)) / (_PLACEMENT_SIGMA_R * part.radius_px)
    return np.exp(-0.5 * np.sum(offsets * offsets, axis=1))


def _surface_point(part: CanonicalPart, rng: np.random.Generator) -> tuple[float, float] | None:
    """A canonical point on the defect surface with density :func:`_placement_weight` (rejection)."""
    height, width = part.surface.shape
    sigma_px = _PLACEMENT_SIGMA_R * part.radius_px
    candidates = rng.normal(part.center_xy, sigma_px, size=(_SURFACE_TRIES, 2))
    candidates = np.clip(candidates, 0.0, (width - 1.0, height - 1.0))
    cols = np.round(candidates[:, 0]).astype(np.intp)
    rows = np.round(candidates[:, 1]).astype(np.intp)
    hits = np.flatnonzero(part.surface[rows, cols])
    if len(hits) == 0:
        return None
    x, y = candidates[hits[0]]
    return float(x), float(y)


def _to_frame(forward: np.ndarray, point_xy) -> tuple[float, float]:
    x, y = float(point_xy[0]), float(point_xy[1])
    return (
        float(forward[0, 0] * x + forward[0, 1] * y + forward[0, 2]),
        float(forward[1, 0] * x + forward[1, 1] * y + forward[1, 2]),
    )


def _gain_field(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Full-size float32 multiplicative gain: vignetting x smooth finish variation x fine grain."""
    width, height = config.width_px, config.height_px
    low_w = max(2, math.ceil(width / _GAIN_LOW_RES_DIV))
    low_h = max(2, math.ceil(height / _GAIN_LOW_RES_DIV))
    x = np.linspace(-1.0, 1.0, low_w, dtype=np.float32)[None, :]
    y = np.linspace(-1.0, 1.0, low_h, dtype=np.float32)[:, None]
    gain = 1.0 - np.float32(config.vignetting) * (x * x + y * y) / np.float32(2.0)
    finish = cv2.GaussianBlur(rng.standard_normal((low_h, low_w), dtype=np.float32), (0, 0), 3.0)
    finish *= np.float32(config.texture_variation / max(float(finish.std()), 1e-6))
    gain = gain * (1.0 + finish)
    grain_w = max(2, math.ceil(width / _GRAIN_RES_DIV))
    grain_h = max(2, math.ceil(height / _GRAIN_RES_DIV))
    gain = cv2.resize(gain, (grain_w, grain_h), interpolation=cv2.INTER_LINEAR)
    grain = rng.standard_normal((grain_h, grain_w), dtype=np.float32)
    gain += grain * np.float32(config.grain_variation)
    return cv2.resize(gain, (width, height), interpolation=cv2.INTER_LINEAR)


def _expose(
    image: np.ndarray, gain: np.ndarray, config: SynthConfig, lighting: Lighting, *, rng: np.random.Generator
) -> np.ndarray:
    """Contrast about mid grey, brightness, gain field and sensor noise, then saturate to uint8."""
    scale = lighting.contrast_gain * lighting.brightness_gain
    offset = _MID_GREY * (1.0 - lighting.contrast_gain) * lighting.brightness_gain
    exposed = cv2.multiply(image, gain, scale=scale)
    exposed = cv2.scaleAdd(gain, offset, exposed)
    if config.noise_sigma <= 0.0:
        return cv2.convertScaleAbs(np.maximum(exposed, 0.0, out=exposed))
    noise = rng.standard_normal(exposed.shape, dtype=np.float32)
    return cv2.addWeighted(exposed, 1.0, noise, config.noise_sigma, 0.0, dtype=cv2.CV_8U)
