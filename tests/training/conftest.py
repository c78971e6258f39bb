from pathlib import Path

import pytest

from shared.config import GeometryConfig
from tests.conftest import write_folder_source
from training.data.dataset import Dataset, load_dataset
from training.data.importers import ImportOptions, get_importer, run_import
from training.data.patches import PatchMode, PatchOptions, make_patches
from training.data.patchset import PatchSet, load_patchset

SMALL_GEOMETRY = GeometryConfig(crop_px=256, tile_px=64, patch_px=32)


@pytest.fixture
def small_dataset(tmp_path: Path) -> Dataset:
    """Twelve 320x288 structured images, every second one with a 12 px defect square."""
    src = write_folder_source(tmp_path / "src", count=12)
    run_import(get_importer("folder"), src, tmp_path / "ds", ImportOptions(), progress=False)
    return load_dataset(tmp_path / "ds")


@pytest.fixture
def small_patchset(small_dataset: Dataset, tmp_path: Path) -> PatchSet:
    options = PatchOptions(mode=PatchMode.GRID, test_fraction=0.25)
    make_patches(small_dataset, tmp_path / "patches", SMALL_GEOMETRY, options, seed=0, progress=False)
    return load_patchset(tmp_path / "patches")
