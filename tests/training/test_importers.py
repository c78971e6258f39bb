import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.edge.hostile_frames import png_bomb, png_bytes, png_chunk, png_header_only
from training.data.dataset import load_dataset
from training.data.importers import ImportOptions, ImportProblemsError, get_importer, run_import
from training.data.importers.magnetic_tile import assign_groups
from training.outputs import OutputExistsError, sha256_file


def _import(kind: str, src: Path, out: Path, **options) -> dict:
    return run_import(get_importer(kind), src, out, ImportOptions(**options), progress=False)


def test_folder_import_writes_images_masks_manifest_and_checksums(folder_source: Path, tmp_path: Path):
    report = _import("folder", folder_source, tmp_path / "ds")
    dataset = load_dataset(tmp_path / "ds")
    assert report["imported"] == len(dataset.records) == 6
    for record in dataset.records:
        assert sha256_file(dataset.root / record.image) == record.image_sha256
        assert sha256_file(dataset.root / record.mask) == record.mask_sha256
        mask = dataset.read_mask(record)
        assert set(np.unique(mask)) <= {0, 255}
        assert record.label == ("defect" if record.defect_pixels else "good")
        assert record.group == record.id, "default group: the image itself"
    assert sum(r.defect_pixels > 0 for r in dataset.records) == 3
    assert len(dataset.fingerprint) == 64


def test_folder_import_derives_groups_from_a_regex(folder_source: Path, tmp_path: Path):
    _import("folder", folder_source, tmp_path / "ds", group_regex=r"^(part0)")
    groups = {r.group for r in load_dataset(tmp_path / "ds").records}
    assert groups == {"part0"}


def _write_mvtec(root: Path) -> Path:
    category = root / "screw"
    for folder in ("train/good", "test/good", "test/scratch", "ground_truth/scratch"):
        (category / folder).mkdir(parents=True)
    color = np.zeros((64, 80, 3), np.uint8)
    color[..., 2] = 200  # red
    cv2.imwrite(str(category / "train/good/000.png"), color)
    cv2.imwrite(str(category / "test/good/000.png"), color)
    cv2.imwrite(str(category / "test/scratch/000.png"), color)
    mask = np.zeros((64, 80), np.uint8)
    mask[10:20, 10:30] = 255
    cv2.imwrite(str(category / "ground_truth/scratch/000_mask.png"), mask)
    return root


def test_mvtec_import_keeps_the_declared_split_and_converts_color_to_gray(tmp_path: Path):
    report = _import("mvtec", _write_mvtec(tmp_path / "mvtec"), tmp_path / "ds")
    dataset = load_dataset(tmp_path / "ds")
    by_id = {r.id: r for r in dataset.records}
    assert set(by_id) == {"screw-train-good-000", "screw-test-good-000", "screw-test-scratch-000"}
    assert by_id["screw-train-good-000"].split == "train" and by_id["screw-test-scratch-000"].split == "test"
    assert by_id["screw-test-scratch-000"].defect_pixels == 200 and by_id["screw-test-good-000"].defect_pixels == 0
    assert all(r.channels == 1 for r in dataset.records)
    assert report["decisions"]["color"] == {"policy": "gray", "color_inputs": 3}
    gray = dataset.read_image(by_id["screw-train-good-000"])
    assert gray.ndim == 2 and abs(int(gray.mean()) - round(0.299 * 200)) <= 1


def test_color_can_be_kept_and_sixteen_bit_is_scaled_and_recorded(tmp_path: Path):
    src = _write_mvtec(tmp_path / "mvtec")
    report = _import("mvtec", src, tmp_path / "keep", color="keep")
    assert {r.channels for r in load_dataset(tmp_path / "keep").records} == {3}
    folder = tmp_path / "deep"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    cv2.imwrite(str(folder / "images/a.png"), np.full((32, 32), 4095, np.uint16))
    cv2.imwrite(str(folder / "masks/a.png"), np.zeros((32, 32), np.uint8))
    report = _import("folder", folder, tmp_path / "ds12", depth="scale12")
    assert report["decisions"]["depth"] == {"policy": "scale12", "sixteen_bit_inputs": 1}
    dataset = load_dataset(tmp_path / "ds12")
    assert int(dataset.read_image(dataset.records[0]).max()) == 255
    assert load_dataset(tmp_path / "ds12").meta["options"]["depth"] == "scale12"


def _write_magnetic_tile(root: Path) -> Path:
    rng = np.random.default_rng(0)
    names = {
        "Crack": ["exp1_num_100", "exp2_num_101", "exp3_num_102", "exp1_num_900", "exp2_num_901"],
        "Uneven": ["exp1_num_5000", "exp2_num_5001"],
        "Free": ["exp0_num_7", "exp1_num_8"],
    }
    for label, stems in names.items():
        folder = root / f"MT_{label}" / "Imgs"
        folder.mkdir(parents=True)
        for stem in stems:
            cv2.imwrite(str(folder / f"{stem}.jpg"), rng.integers(0, 255, (150, 120), dtype=np.uint8))
            mask = np.zeros((150, 120), np.uint8)
            if label == "Crack":
                mask[50:60, 40:80] = 255
                mask[60:62, 40:80] = 100  # below the threshold: ambiguous, not defect
                mask[62:64, 40:80] = 200  # above: ambiguous, defect
            elif label == "Uneven" and stem.startswith("exp1"):
                mask[:30, :30] = 255  # the other Uneven mask stays empty
            cv2.imwrite(str(folder / f"{stem}.png"), mask)
    return root


def test_magnetic_tile_binarises_grey_masks_lists_empty_defect_masks_and_groups_exposures(tmp_path: Path):
    report = _import("magnetic-tile", _write_magnetic_tile(tmp_path / "mt"), tmp_path / "ds")
    dataset = load_dataset(tmp_path / "ds")
    crack = [r for r in dataset.records if r.label == "Crack"]
    assert {r.defect_pixels for r in crack} == {10 * 40 + 2 * 40}
    mask_rule = report["decisions"]["mask_binarisation"]
    assert mask_rule["ambiguous_pixels_per_label"]["Crack"] == 5 * 4 * 40
    assert report["decisions"]["empty_masks_in_defect_classes"]["ids"] == ["Uneven-exp2_num_5001"]
    groups = {r.id: r.group for r in crack}
    assert groups["Crack-exp1_num_100"] == groups["Crack-exp3_num_102"] != groups["Crack-exp1_num_900"]
    assert report["groups"] == 2 + 1 + 1  # Crack: two regions; Uneven and Free: one each (exp rises)
    assert sorted({r.label for r in dataset.records}) == ["Crack", "Free", "Uneven"]


def test_magnetic_tile_grouping_rule_opens_groups_on_exp_reset_num_gap_and_size_jump():
    entries = [
        ("exp1_num_1", 1, 1, (100, 200)),
        ("exp2_num_2", 2, 2, (100, 200)),
        ("exp1_num_3", 1, 3, (100, 200)),  # exp does not rise
        ("exp2_num_500", 2, 500, (100, 200)),  # num gap > 200
        ("exp3_num_501", 3, 501, (300, 200)),  # width jump > 80
    ]
    groups = assign_groups(entries)
    assert groups["exp1_num_1"] == groups["exp2_num_2"]
    assert len(set(groups.values())) == 4


def _write_bad_folder(root: Path) -> Path:
    src = root / "bad"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    good = np.full((40, 40), 100, np.uint8)
    cv2.imwrite(str(src / "images/ok.png"), good)
    cv2.imwrite(str(src / "masks/ok.png"), np.zeros((40, 40), np.uint8))
    (src / "images/garbage.png").write_bytes(b"this is not an image")
    jpeg = cv2.imencode(".jpg", good)[1].tobytes()
    (src / "images/truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    cv2.imwrite(str(src / "masks/truncated.png"), np.zeros((40, 40), np.uint8))
    cv2.imwrite(str(src / "images/wrongsize.png"), good)
    cv2.imwrite(str(src / "masks/wrongsize.png"), np.zeros((20, 40), np.uint8))
    cv2.imwrite(str(src / "images/nomask.png"), good)
    return src


def test_bad_inputs_fail_listing_every_offending_file_and_write_nothing(tmp_path: Path):
    src = _write_bad_folder(tmp_path)
    with pytest.raises(ImportProblemsError) as error:
        _import("folder", src, tmp_path / "ds")
    message = str(error.value)
    assert "garbage.png: not a PNG file" in message
    assert "truncated.jpg: truncated JPEG" in message
    assert "wrongsize.png: mask is 40x20 but its image is 40x40" in message
    assert "nomask.png: missing mask" in message
    assert "ok.png" not in message
    assert not (tmp_path / "ds").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds")], "temporary folder removed"


def test_skip_bad_imports_the_rest_and_reports_what_was_skipped(tmp_path: Path):
    report = _import("folder", _write_bad_folder(tmp_path), tmp_path / "ds", skip_bad=True)
    assert report["imported"] == 1
    assert len(report["skipped"]) == 4
    saved = json.loads((tmp_path / "ds" / "import_report.json").read_text())
    assert {Path(s["file"]).name for s in saved["skipped"]} == {
        "garbage.png",
        "truncated.jpg",
        "wrongsize.png",
        "nomask.png",
    }


def test_an_empty_folder_is_a_clear_error(tmp_path: Path):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(ImportProblemsError, match="empty folder"):
        _import("folder", tmp_path / "empty", tmp_path / "ds")
    (tmp_path / "mt").mkdir()
    with pytest.raises(ImportProblemsError, match="empty folder"):
        _import("magnetic-tile", tmp_path / "mt", tmp_path / "ds")
    with pytest.raises(ValueError, match="unknown import kind 'coco'.*folder"):
        get_importer("coco")


def test_a_failed_reimport_leaves_the_existing_dataset_untouched(folder_source: Path, tmp_path: Path):
    _import("folder", folder_source, tmp_path / "ds")
    before = (tmp_path / "ds" / "manifest.csv").read_bytes()
    with pytest.raises(OutputExistsError):
        _import("folder", folder_source, tmp_path / "ds")
    (folder_source / "images" / "part01.png").write_bytes(b"broken")
    with pytest.raises(ImportProblemsError):
        run_import(
            get_importer("folder"), folder_source, tmp_path / "ds", ImportOptions(), overwrite=True, progress=False
        )
    assert (tmp_path / "ds" / "manifest.csv").read_bytes() == before


def test_synth_output_imports_as_a_fixed_structure_dataset(tmp_path: Path):
    src = tmp_path / "synth"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    lines = []
    for index in range(3):
        cv2.imwrite(str(src / f"images/frame_{index:05d}.png"), np.full((60, 80), 90, np.uint8))
        cv2.imwrite(str(src / f"masks/frame_{index:05d}.png"), np.zeros((60, 80), np.uint8))
        lines.append(
            json.dumps(
                {
                    "id": f"frame_{index:05d}",
                    "image": f"images/frame_{index:05d}.png",
                    "mask": f"masks/frame_{index:05d}.png",
                }
            )
        )
    (src / "frames.jsonl").write_text("\n".join(lines) + "\n")
    _import("synth", src, tmp_path / "ds")
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.fixed_structure and len(dataset.records) == 3
    with pytest.raises(ImportProblemsError, match="frames.jsonl"):
        _import("synth", tmp_path / "ds", tmp_path / "again")


# --- hostile inputs (issue 8): bombs and undecodable files are listed bad inputs -------------------


def _write_folder_with_bombs(root: Path) -> Path:
    """Two good images, the ~70-byte PNG declaring 100000 x 100000 and the 0.9 MB 30000 x 30000 PNG bomb."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem in ("a_good", "z_good"):
        cv2.imwrite(str(root / "images" / f"{stem}.png"), np.full((32, 40), 90, np.uint8))
    (root / "images" / "b_tiny_bomb.png").write_bytes(png_header_only(100000, 100000))
    (root / "images" / "c_deflate_bomb.png").write_bytes(png_bomb(30000))
    for stem in ("a_good", "z_good", "b_tiny_bomb", "c_deflate_bomb"):
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), np.zeros((32, 40), np.uint8))
    return root


def test_bombs_are_listed_bad_inputs_refused_before_decoding(tmp_path: Path):
    src = _write_folder_with_bombs(tmp_path / "src")
    with pytest.raises(ImportProblemsError) as caught:
        _import("folder", src, tmp_path / "ds")
    problems = {path.name: reason for path, reason in caught.value.problems}
    assert set(problems) == {"b_tiny_bomb.png", "c_deflate_bomb.png"}
    assert "100000 x 100000" in problems["b_tiny_bomb.png"]
    assert "import.max_image_pixels = 32000000" in problems["c_deflate_bomb.png"]
    assert all("refused before decoding" in reason for reason in problems.values())
    assert not (tmp_path / "ds").exists()


def test_skip_bad_skips_the_bombs_and_imports_the_rest(tmp_path: Path):
    report = _import("folder", _write_folder_with_bombs(tmp_path / "src"), tmp_path / "ds", skip_bad=True)
    assert report["imported"] == 2
    assert sorted(Path(entry["file"]).name for entry in report["skipped"]) == ["b_tiny_bomb.png", "c_deflate_bomb.png"]
    assert sorted(r.id for r in load_dataset(tmp_path / "ds").records) == ["a_good", "z_good"]


def test_the_pixel_budget_is_an_import_setting_inclusive_at_the_limit(tmp_path: Path):
    src = _write_folder_with_bombs(tmp_path / "src")
    report = _import("folder", src, tmp_path / "at", skip_bad=True, max_image_pixels=40 * 32)
    assert report["imported"] == 2
    with pytest.raises(ImportProblemsError) as caught:
        _import("folder", src, tmp_path / "below", skip_bad=True, max_image_pixels=40 * 32 - 1)
    assert len(caught.value.problems) == 4
    assert "declared size 40 x 32 px exceeds import.max_image_pixels = 1279" in str(caught.value)


def test_twelve_bit_images_without_a_stated_depth_are_bad_inputs_under_auto(tmp_path: Path):
    folder = tmp_path / "deep"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    cv2.imwrite(str(folder / "images/a.png"), np.full((8, 8), 2048, np.uint16))
    (folder / "images/b.png").write_bytes(
        png_bytes(np.full((8, 8), 2048, np.uint16), 0, before_idat=(png_chunk(b"sBIT", b"\x0c"),))
    )
    for stem in ("a", "b"):
        cv2.imwrite(str(folder / f"masks/{stem}.png"), np.zeros((8, 8), np.uint8))
    report = _import("folder", folder, tmp_path / "ds", skip_bad=True)
    assert [Path(entry["file"]).name for entry in report["skipped"]] == ["a.png"]
    assert "import.depth = auto" in report["skipped"][0]["reason"]
    dataset = load_dataset(tmp_path / "ds")
    assert int(dataset.read_image(dataset.records[0]).max()) == 128, "sBIT 12: 2048 / 4095 * 255"


def _pump_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.slow
def test_pump_train_import_reports_the_bombs_without_a_traceback_and_skip_bad_skips_them(tmp_path: Path):
    src = _write_folder_with_bombs(tmp_path / "src")
    refused = _pump_train("import", "folder", str(src), str(tmp_path / "ds"))
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and "b_tiny_bomb.png" in refused.stderr
    assert "refused before decoding" in refused.stderr
    skipped = _pump_train("import", "folder", str(src), str(tmp_path / "ds"), "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    assert "Traceback" not in skipped.stderr
    assert len(load_dataset(tmp_path / "ds").records) == 2
