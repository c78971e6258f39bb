"""`pump-train gan train`: what the GAN may see, the run folder, --resume, --dry-run, bad overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli import app
from training.data.paste import PasteOptions, make_pasted
from training.data.patchset import PatchSet, load_patchset
from training.data.splits import TRAIN
from training.gan.checkpoint import list_checkpoints
from training.gan.data import load_gan_data, select_records

from .conftest import TINY_TEST

runner = CliRunner()


def tiny_toml(path: Path) -> Path:
    lines = ["[gan]", "grid_size = 2", "tick_kimg = 0.008", "snapshot_kimg = 0.016", "threads = 1", "[gan.stylegan2]"]
    lines += [f"{key} = {value}" for key, value in TINY_TEST.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_gan_sees_train_split_defects_and_pasted_copies_of_train_groups_only(
    small_patchset: PatchSet, tmp_path: Path
):
    make_pasted(small_patchset, tmp_path / "pasted", PasteOptions(per_defect=2), seed=0, progress=False)
    pool = load_patchset(tmp_path / "pasted")
    chosen, counts = select_records(small_patchset, [pool])
    train_groups = {r.group for r in small_patchset.records if r.split == TRAIN}
    real = [r for _, r in chosen if r.origin == "real"]
    pasted = [r for _, r in chosen if r.origin == "pasted"]
    assert real and all(r.split == TRAIN and r.has_defect for r in real)
    assert pasted and all(r.source_group in train_groups for r in pasted)
    others = {r.group for r in small_patchset.records if r.split != TRAIN}
    assert not others & {r.group for r in real} and not others & {r.source_group for r in pasted}
    assert counts["total"] == len(chosen) == counts["real_train_defective"] + counts["pasted"]
    assert counts["pasted"] + counts["pasted_dropped_not_train_group"] == sum(r.has_defect for r in pool.records)
    data = load_gan_data(small_patchset.root, resolution=16, pasted=(tmp_path / "pasted",))
    assert data.images.shape == (len(chosen), 16, 16) and data.images.dtype.name == "uint8"
    assert data.describe()["split"] == TRAIN and data.describe()["counts"] == counts and len(data.fingerprint) == 64


def test_dry_run_prints_the_gan_section_and_the_family_config_it_resolves_to(tmp_path: Path):
    result = runner.invoke(app, ["gan", "train", "P", str(tmp_path / "run"), "--preset", "paper", "--dry-run"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["gan"]["preset"] == "paper" and printed["gan"]["kimg"] == 25000
    assert printed["stylegan2"]["resolution"] == 128 and printed["stylegan2"]["r1_gamma"] == pytest.approx(0.1024)
    assert not (tmp_path / "run").exists()


def test_a_bad_family_override_names_its_table_and_field(small_patchset: PatchSet, tmp_path: Path):
    config = tmp_path / "gan.toml"
    config.write_text("[gan.stylegan2]\nr1_gammma = 1.0\n")
    result = runner.invoke(app, ["gan", "train", str(small_patchset.root), str(tmp_path / "run"), "-c", str(config)])
    assert result.exit_code != 0
    assert "gan.stylegan2" in str(result.exception) and "r1_gammma" in str(result.exception)


def test_a_tiny_train_writes_a_self_explaining_run_folder_and_resume_continues_it(
    small_patchset: PatchSet, tmp_path: Path
):
    config, run = tiny_toml(tmp_path / "gan.toml"), tmp_path / "run"
    base = ["gan", "train", str(small_patchset.root), str(run), "-c", str(config), "--seed", "4", "-q"]
    result = runner.invoke(app, [*base, "--kimg", "0.016"])
    assert result.exit_code == 0, result.output
    for name in ("config.json", "data.json", "stats.jsonl", "result.json", "grids/reals.png", "grids/fakes-init.png"):
        assert (run / name).is_file(), name
    made = json.loads((run / "config.json").read_text())
    assert made["seed"] == 4 and made["config"]["family"] == "stylegan2" and made["versions"]["torch"]
    assert made["config"]["family_config"]["resolution"] == 16 and made["inputs"]["data_fingerprint"]
    assert json.loads((run / "data.json").read_text())["split"] == TRAIN
    assert [images for images, _ in list_checkpoints(run)] == [16]
    again = runner.invoke(app, [*base, "--kimg", "0.016"])
    assert again.exit_code != 0 and "--resume" in str(again.exception), "a finished run is not overwritten"
    resumed = runner.invoke(app, [*base, "--kimg", "0.032", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [images for images, _ in list_checkpoints(run)] == [16, 32]
    assert json.loads((run / "result.json").read_text())["kimg"] == pytest.approx(0.032)
    assert Path(json.loads((run / "result.json").read_text())["grid"]).is_file()
