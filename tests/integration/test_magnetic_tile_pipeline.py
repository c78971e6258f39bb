"""End to end on the real Magnetic Tile dataset: import -> patches -> paste -> show."""

import json
from pathlib import Path

import cv2
import pytest

from shared.config import GeometryConfig
from training.data.dataset import load_dataset
from training.data.importers import ImportOptions, get_importer, run_import
from training.data.paste import PasteOptions, make_pasted
from training.data.patches import PatchMode, PatchOptions, make_patches
from training.data.patchset import load_patchset
from training.data.show import write_grid

pytestmark = [pytest.mark.integration, pytest.mark.dataset, pytest.mark.slow]


def test_magnetic_tile_runs_through_the_whole_data_pipeline(magnetic_tile_dir: Path, tmp_path: Path):
    report = run_import(
        get_importer("magnetic-tile"), magnetic_tile_dir, tmp_path / "ds", ImportOptions(), progress=False
    )
    assert report["imported"] == 1344
    assert 250 <= report["groups"] <= 275
    assert len(report["decisions"]["empty_masks_in_defect_classes"]["ids"]) == 4
    assert report["decisions"]["mask_binarisation"]["ambiguous_share_of_nonzero_per_label"]["Crack"] > 0.5

    dataset = load_dataset(tmp_path / "ds")
    summary = make_patches(
        dataset,
        tmp_path / "p",
        GeometryConfig(crop_px=0, tile_px=128, patch_px=128),
        PatchOptions(mode=PatchMode.GRID),
        seed=0,
        progress=False,
    )
    patchset = load_patchset(tmp_path / "p")
    assert summary["images_without_patches"] == [], "even the 103 px wide images give a padded patch"
    splits_of_group: dict[str, set[str]] = {}
    for record in patchset.records:
        splits_of_group.setdefault(record.group, set()).add(record.split)
    assert all(len(s) == 1 for s in splits_of_group.values()), "no exposure group straddles splits"
    for label in ("Blowhole", "Break", "Crack", "Fray", "Uneven"):
        assert any(r.label == label and r.has_defect and r.split == "test" for r in patchset.records), label

    pasted = make_pasted(patchset, tmp_path / "pasted", PasteOptions(per_defect=2), seed=0, progress=False)
    assert pasted["location"] == "free" and pasted["pasted"] >= 0.9 * 2 * pasted["sources"]
    grid = cv2.imread(str(write_grid(tmp_path / "pasted", tmp_path / "grid.png", rows=4, columns=3)))
    assert grid is not None
    meta = json.loads((tmp_path / "pasted" / "patchset.json").read_text())
    assert meta["parent"]["path"] == str((tmp_path / "p").resolve())
