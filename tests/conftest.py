"""Shared fixtures: small generated image folders with known defects."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEAM_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def structured_image(width: int, height: int, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """A fixed 'part' (rings around the center) at a given brightness, with mild noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot(xx - width / 2, yy - height / 2)
    base = 90 + 40 * np.sin(radius / 9.0) + 30 * (radius < min(width, height) / 3)
    image = base * brightness + rng.normal(0, 2, size=base.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_folder_source(
    root: Path, count: int = 6, width: int = 320, height: int = 288, defect_every: int = 2, seed: int = 0
) -> Path:
    """SRC/images + SRC/masks with a bright square defect on every ``defect_every``-th image."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(count):
        image = structured_image(width, height, 0.95 + 0.02 * (index % 3), rng)
        mask = np.zeros((height, width), np.uint8)
        if index % defect_every == 0:
            x, y = 60 + 10 * index, 70
            image[y : y + 12, x : x + 12] = 250
            mask[y : y + 12, x : x + 12] = 255
        cv2.imwrite(str(root / "images" / f"part{index:02d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"part{index:02d}.png"), mask)
    return root


@pytest.fixture
def folder_source(tmp_path: Path) -> Path:
    return write_folder_source(tmp_path / "src")


@pytest.fixture
def magnetic_tile_dir() -> Path:
    path = TEAM_DATASETS / "magnetic-tile"
    if not (path / "MT_Free").is_dir():
        pytest.skip(f"needs the Magnetic Tile dataset at {path} (team folder ../shared/datasets)")
    return path
