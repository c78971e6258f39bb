import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from training.cli import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "import", "patches", "paste", "show", "demo"):
        assert command in result.output


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PUMP_PATCHES__PATCHES_PER_IMAGE", "7")
    result = runner.invoke(app, ["patches", str(tmp_path / "ds"), str(tmp_path / "out"), "--tile", "64", "--dry-run"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["geometry"]["tile_px"] == 64 and resolved["patches"]["patches_per_image"] == 7
    assert not (tmp_path / "out").exists()


def test_import_patches_paste_show_chain_from_the_command_line(folder_source: Path, tmp_path: Path):
    steps = [
        ["import", "folder", str(folder_source), str(tmp_path / "ds"), "-q"],
        [
            "patches",
            str(tmp_path / "ds"),
            str(tmp_path / "p"),
            "--mode",
            "grid",
            "--crop",
            "256",
            "--tile",
            "64",
            "--patch",
            "32",
            "-q",
        ],
        ["paste", str(tmp_path / "p"), str(tmp_path / "pasted"), "-k", "2", "--location", "fixed", "-q"],
        ["show", str(tmp_path / "pasted"), "--out", str(tmp_path / "grid.png"), "--rows", "2", "--columns", "3"],
    ]
    for step in steps:
        result = runner.invoke(app, step)
        assert result.exit_code == 0, (step, result.output)
    meta = json.loads((tmp_path / "pasted" / "patchset.json").read_text())
    assert meta["summary"]["location"] == "fixed" and meta["provenance"]["seed"] == 0
    assert "versions" in meta["provenance"] and (tmp_path / "grid.png").stat().st_size > 0


def _pump_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True, text=True, timeout=120)


def test_errors_are_one_clear_message_and_exit_code_2(tmp_path: Path):
    result = _pump_train("patches", str(tmp_path / "nowhere"), str(tmp_path / "out"))
    assert result.returncode == 2
    assert "not a dataset folder" in result.stderr and "Traceback" not in result.stderr
    result = _pump_train("import", "coco", str(tmp_path), str(tmp_path / "out"))
    assert result.returncode == 2 and "unknown import kind" in result.stderr


def _pump_train_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.upper().startswith("PUMP_")}
    return subprocess.run(
        [sys.executable, "-m", "training.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "COLUMNS": "200", **env},
    )


def test_settings_problems_exit_2_naming_the_file_or_variable(tmp_path: Path):
    out = str(tmp_path / "out")
    result = _pump_train_with({"PUMP_CONFIG": str(tmp_path)}, "synth", out, "--dry-run")
    assert result.returncode == 2, result.stderr  # was: IsADirectoryError traceback, exit 1
    assert f"config file {tmp_path} (named by PUMP_CONFIG): is a folder" in " ".join(result.stderr.split())
    result = _pump_train_with({"PUMP_SEDD": "3"}, "synth", out, "--dry-run")
    assert result.returncode == 2  # was: exit 0 with seed 0
    assert "PUMP_SEDD" in result.stderr and "did you mean PUMP_SEED?" in " ".join(result.stderr.split())
    assert not (tmp_path / "out").exists()
