"""`pump-train label`: a CSV of verdicts turns ingested line patches into training rows."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from shared.masks import MASK_DEFECT, MASK_GOOD, MASK_IGNORE
from training.cli import app
from training.data.arrays import load_arrays
from training.data.ingest import ingest_export, line_records
from training.data.label import LABELLED_LINE_SPLIT, LabelError, apply_labels
from training.data.library import split_records
from training.data.patchset import PatchSet, load_patchset
from training.gan.data import select_records

from .test_ingest import _store_with_frames, patchset_128  # noqa: F401  (fixture)


@pytest.fixture
def with_line(tmp_path: Path, patchset_128: PatchSet) -> tuple[Path, list[str]]:  # noqa: F811
    """The patch set with four ingested (unlabelled) line patches; returns (folder, their ids)."""
    store = _store_with_frames(tmp_path, 2)
    store.export(tmp_path / "u.tar.gz")
    ingest_export(tmp_path / "u.tar.gz", patchset_128.root)
    ids = sorted(r.id for r in line_records(load_patchset(patchset_128.root)))
    assert len(ids) == 4
    return patchset_128.root, ids


def _write_csv(path: Path, rows: list[tuple[str, ...]], header: str = "id,label,mask") -> Path:
    path.write_text(header + "\n" + "".join(",".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _mask(path: Path, size: int, box: tuple[int, int, int, int] | None, value: int = 255) -> str:
    mask = np.zeros((size, size), np.uint8)
    if box:
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = value
    cv2.imwrite(str(path), mask)
    return path.name


def test_labelled_line_patches_become_training_rows_with_their_masks(tmp_path, with_line):
    root, ids = with_line
    splits_before = split_records(load_patchset(root), None)
    rows = [
        (ids[0], "defect", _mask(tmp_path / "m0.png", 128, (10, 20, 30, 40))),
        (ids[1], "defect", _mask(tmp_path / "m1.png", 256, (0, 0, 64, 64))),  # the logged crop's size
        (ids[2], "good", ""),
    ]
    report = apply_labels(_write_csv(tmp_path / "labels.csv", rows), root)
    assert (report["labelled"], report["good"], report["defect"], report["with_mask"]) == (3, 1, 2, 2)
    assert report["unlabelled_left"] == 1 and report["written"]

    patchset = load_patchset(root)
    by_id = patchset.by_id()
    assert by_id[ids[0]].has_defect and by_id[ids[0]].split == LABELLED_LINE_SPLIT
    assert by_id[ids[0]].defect_fraction == pytest.approx(20 * 20 / 128**2)
    assert by_id[ids[1]].defect_fraction == pytest.approx(32 * 32 / 128**2), "256 px mask resized to the patch"
    assert not by_id[ids[2]].has_defect and by_id[ids[2]].label == "good"
    assert by_id[ids[3]].split == "pool", "an id not in the CSV stays unlabelled"
    mask0 = patchset.read_mask(by_id[ids[0]])
    assert set(np.unique(mask0).tolist()) == {MASK_GOOD, MASK_DEFECT} and (mask0[20:40, 10:30] == MASK_DEFECT).all()
    assert (patchset.read_mask(by_id[ids[2]]) == MASK_GOOD).all()
    assert (patchset.read_mask(by_id[ids[3]]) == MASK_IGNORE).all()

    splits = split_records(patchset, None)
    assert len(splits.train) == len(splits_before.train) + 3
    assert splits.val == splits_before.val and splits.test == splits_before.test, "test and validation unchanged"
    assert set(ids[:3]) <= {r.id for r in split_records(patchset, 7).train}, "train rows whatever the seed"
    arrays = load_arrays(patchset, [by_id[i] for i in ids[:3]])
    assert arrays.labels.tolist() == [1.0, 1.0, 0.0]
    gan_rows, counts = select_records(patchset, [])
    assert counts["line_labelled_defective"] == 2 and {ids[0], ids[1]} <= {r.id for _, r in gan_rows}
    meta = json.loads((root / "patchset.json").read_text())
    assert meta["line"]["labels"][-1]["labelled"] == 3


def test_a_defect_without_a_mask_keeps_ignore_pixels_and_relabelling_replaces(tmp_path, with_line):
    root, ids = with_line
    apply_labels(_write_csv(tmp_path / "a.csv", [(ids[0], "defect")], header="id,label"), root)
    record = load_patchset(root).by_id()[ids[0]]
    assert record.has_defect and record.defect_fraction == 0.0
    assert (load_patchset(root).read_mask(record) == MASK_IGNORE).all()
    report = apply_labels(_write_csv(tmp_path / "b.csv", [(ids[0], "good", "")]), root)
    assert report["relabelled"] == 1
    assert not load_patchset(root).by_id()[ids[0]].has_defect


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (("nope", "good", ""), "row 2: unknown id 'nope'"),
        (("{real}", "good", ""), "has origin 'real'; only origin=line"),
        (("{line}", "scratchy", ""), "row 2: label 'scratchy'; expected good, defect"),
        (("{line}", "good", "defect.png"), "row 2: label good but mask 'defect.png' has defect pixels"),
        (("{line}", "defect", "empty.png"), "has no defect pixel"),
        (("{line}", "defect", "missing.png"), "row 2: mask 'missing.png': file not found"),
        (("{line}", "defect", "odd.png"), "values [7]; expected 0 (good), 64 (ignore) or >= 128"),
        (("{line}", "defect", "small.png"), "50x50 px; expected a square mask of 128 or 256 px"),
        (("{first}", "good", ""), "row 2: id '{first}' repeats row 1"),
    ],
)
def test_bad_rows_are_refused_with_their_row_number_and_nothing_is_written(tmp_path, with_line, row, expected):
    root, ids = with_line
    real = next(r.id for r in load_patchset(root).records if r.origin == "real")
    fill = {"real": real, "line": ids[1], "first": ids[0]}
    _mask(tmp_path / "defect.png", 128, (0, 0, 8, 8))
    _mask(tmp_path / "empty.png", 128, None)
    _mask(tmp_path / "odd.png", 128, (0, 0, 8, 8), value=7)
    _mask(tmp_path / "small.png", 50, (0, 0, 8, 8))
    row = tuple(part.format(**fill) for part in row)
    path = _write_csv(tmp_path / "labels.csv", [(ids[0], "good", ""), row])
    before = (root / "patches.csv").read_bytes()
    with pytest.raises(LabelError) as error:
        apply_labels(path, root)
    assert str(path) in str(error.value) and expected.format(**fill) in str(error.value)
    assert (root / "patches.csv").read_bytes() == before


def test_a_csv_without_the_columns_is_refused(tmp_path, with_line):
    root, _ = with_line
    with pytest.raises(LabelError, match="lacks \\['label'\\]; expected columns id,label"):
        apply_labels(_write_csv(tmp_path / "x.csv", [("a",)], header="id"), root)
    with pytest.raises(LabelError, match="unknown columns \\['score'\\]"):
        apply_labels(_write_csv(tmp_path / "y.csv", [("a", "good", "1")], header="id,label,score"), root)


def test_cli_label_dry_run_then_into_a_new_patch_set(tmp_path, with_line):
    root, ids = with_line
    path = _write_csv(tmp_path / "labels.csv", [(ids[0], "defect", _mask(tmp_path / "m.png", 128, (4, 4, 12, 12)))])
    runner = CliRunner()
    dry = runner.invoke(app, ["label", str(root), "--csv", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would label 1 line patches" in dry.output and load_patchset(root).by_id()[ids[0]].split == "pool"
    done = runner.invoke(app, ["label", str(root), "--csv", str(path), "--out", str(tmp_path / "labelled")])
    assert done.exit_code == 0, done.output
    assert load_patchset(tmp_path / "labelled").by_id()[ids[0]].has_defect
    assert load_patchset(root).by_id()[ids[0]].split == "pool", "--out leaves PATCHES as it was"
    bad = runner.invoke(app, ["label", str(root), "--csv", str(tmp_path / "none.csv")])
    assert bad.exit_code != 0
