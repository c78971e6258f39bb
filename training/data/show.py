"""Sample grids of patches with their defect outlines, for a person to judge at a glance.

Real patch sets: defect patches first (then a few good ones). Pasted patch sets: one row
per real defect, the real source patch on the left and its pasted copies beside it.
Defect outlines are red (drawn 2 px outside the defect), padding (ignore) is tinted blue.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared.masks import MASK_DEFECT, MASK_IGNORE
from training.data.patchset import PatchOrigin, PatchRecord, PatchSet, load_patchset

_RED = (40, 40, 230)
_BLUE = (200, 120, 40)
_CAPTION_PX = 14


def draw_tile(image: np.ndarray, mask: np.ndarray, scale: int, caption: str) -> np.ndarray:
    """One annotated tile: image (BGR), defect outline, tinted padding, caption underneath."""
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    size = (bgr.shape[1] * scale, bgr.shape[0] * scale)
    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_NEAREST)
    big_mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    ignore = big_mask == MASK_IGNORE
    if ignore.any():
        bgr[ignore] = (0.6 * bgr[ignore] + 0.4 * np.array(_BLUE)).astype(np.uint8)
    # outline a ring 2 patch px outside the defect so thin defects stay visible under it
    ring = cv2.dilate((big_mask == MASK_DEFECT).astype(np.uint8), np.ones((4 * scale + 1, 4 * scale + 1), np.uint8))
    contours, _ = cv2.findContours(ring, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(bgr, contours, -1, _RED, 1)
    strip = np.full((_CAPTION_PX, bgr.shape[1], 3), 255, np.uint8)
    cv2.putText(
        strip,
        caption[: bgr.shape[1] // 6],
        (2, _CAPTION_PX - 4),
        cv2.FONT_HERSHEY_PLAIN,
        0.8,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return np.vstack([bgr, strip])


def _grid(tiles: list[list[np.ndarray]], gap_px: int = 4) -> np.ndarray:
    """Rows of equally sized tiles on a white background (short rows are left-aligned)."""
    height, width = tiles[0][0].shape[:2]
    columns = max(len(row) for row in tiles)
    canvas = np.full((len(tiles) * (height + gap_px) + gap_px, columns * (width + gap_px) + gap_px, 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            y, x = gap_px + r * (height + gap_px), gap_px + c * (width + gap_px)
            canvas[y : y + height, x : x + width] = tile
    return canvas


def _tile(patchset: PatchSet, record: PatchRecord, scale: int) -> np.ndarray:
    caption = f"{record.origin} {record.defect_fraction * 100:.1f}% {record.id}"
    return draw_tile(patchset.read_image(record), patchset.read_mask(record), scale, caption)


def render_grid(root: Path, rows: int = 6, columns: int = 8, scale: int = 1, *, seed: int = 0) -> np.ndarray:
    """The grid image for the patch set at ``root`` (see module docstring)."""
    patchset = load_patchset(root)
    rng = np.random.default_rng(seed)
    if patchset.meta.get("origin") == PatchOrigin.PASTED.value:
        parent = load_patchset(Path(patchset.meta["parent"]["path"]))
        parents = parent.by_id()
        by_source: dict[str, list[PatchRecord]] = {}
        for record in patchset.records:
            by_source.setdefault(record.source_patch, []).append(record)
        chosen = [list(by_source)[i] for i in sorted(rng.permutation(len(by_source))[:rows])]
        tiles = [
            [_tile(parent, parents[source], scale)]
            + [_tile(patchset, r, scale) for r in by_source[source][: columns - 1]]
            for source in chosen
        ]
    else:
        records = list(patchset.records)
        defective = [r for r in records if r.has_defect]
        good = [r for r in records if not r.has_defect]
        wanted = rows * columns
        picked = [defective[i] for i in rng.permutation(len(defective))[: wanted - min(columns, len(good))]]
        picked += [good[i] for i in rng.permutation(len(good))[: wanted - len(picked)]]
        flat = [_tile(patchset, record, scale) for record in picked]
        tiles = [flat[i : i + columns] for i in range(0, len(flat), columns)]
    if not tiles or not tiles[0]:
        raise ValueError(f"{root}: no patches to show")
    return _grid(tiles)


def write_grid(root: Path, out: Path, rows: int = 6, columns: int = 8, *, scale: int = 1, seed: int = 0) -> Path:
    """Render and save the grid as PNG; returns the path."""
    grid = render_grid(root, rows=rows, columns=columns, scale=scale, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), grid):
        raise OSError(f"could not write {out}")
    return out
