"""Training settings: presets as data beneath file, env and flags; dry runs; unknown keys named with their file."""

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli import app
from training.config import TrainSettings
from training.train.config import CLASSIFIER_PRESETS, SEGMENTER_PRESETS, ClassifierSettings, SegmenterSettings

runner = CliRunner()


def _dry_run(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pump.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_preset_name_is_a_valid_preset_value():
    for settings, presets in ((ClassifierSettings, CLASSIFIER_PRESETS), (SegmenterSettings, SEGMENTER_PRESETS)):
        assert set(typing.get_args(settings.model_fields["preset"].annotation)) == set(presets)
        for name in presets:
            assert settings(preset=name).preset == name


def test_every_training_section_field_is_described():
    def walk(model: type) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)

    for section in ("classifier", "segmenter", "export"):
        walk(TrainSettings.model_fields[section].annotation)


def test_classifier_dry_run_prints_the_cpu_preset_and_touches_no_data(tmp_path: Path):
    resolved = _dry_run("classifier", "train", str(tmp_path / "no-patches"), str(tmp_path / "run"))
    classifier = resolved["classifier"]
    assert classifier["preset"] == "cpu" and resolved["seed"] == 0
    assert classifier["model"] | {"width": 0.5, "internal_px": 64, "pooling": "max"} == classifier["model"]
    assert classifier["schedule"]["iterations"] == 2500 and classifier["schedule"]["precision"] == "bf16"
    assert not (tmp_path / "run").exists()


def test_order_is_defaults_then_preset_then_file_then_env_then_flags(tmp_path: Path, monkeypatch):
    config = _toml(
        tmp_path,
        'seed = 3\n[classifier]\npreset = "thesis"\n[classifier.model]\nwidth = 0.25\n'
        "[classifier.schedule]\niterations = 7\nval_every = 7\n",
    )
    args = ("classifier", "train", "P", "O", "--config", str(config))
    resolved = _dry_run(*args)["classifier"]
    assert resolved["preset"] == "thesis" and resolved["schedule"]["lr"] == 1e-3, "the preset from the file applies"
    assert resolved["model"]["width"] == 0.25 and resolved["schedule"]["iterations"] == 7, "the file beats the preset"
    assert resolved["model"]["pooling"] == "avg" and resolved["schedule"]["seed"] == 3, "seed defaults to `seed`"
    monkeypatch.setenv("PUMP_CLASSIFIER__SCHEDULE__ITERATIONS", "9")
    assert _dry_run(*args)["classifier"]["schedule"]["iterations"] == 9, "the environment beats the file"
    flagged = _dry_run(*args, "--iterations", "11", "--seed", "5", "--preset", "cpu")["classifier"]
    assert flagged["schedule"]["iterations"] == 11 and flagged["schedule"]["seed"] == 5, "flags beat everything"
    assert flagged["preset"] == "cpu" and flagged["model"]["width"] == 0.25, "a preset flag stays beneath the file"
    assert flagged["model"]["pooling"] == "max" and flagged["schedule"]["lr"] == 2e-3


def test_segmenter_experiment_and_export_commands_print_their_sections(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PUMP_SEGMENTER__PRESET", "thesis")
    segmenter = _dry_run("segmenter", "train", "P", "O", "--healthy-share", "0.5", "--encoder", "cpu")["segmenter"]
    assert segmenter["schedule"]["iterations"] == 20_000 and segmenter["healthy_share"] == 0.5
    assert segmenter["model"]["encoder"] == "cpu" and segmenter["threshold"] == 0.9
    experiment = _dry_run("experiment", "classification", "P", "--preset", "thesis", "--width", "0.5")
    assert experiment["classifier"]["model"]["width"] == 0.5 and experiment["classifier"]["schedule"]["lr"] == 1e-3
    assert _dry_run("experiment", "segmentation", "P")["segmenter"]["preset"] == "thesis"
    assert _dry_run("export", "RUN", "BUNDLE", "--opset", "18")["export"] == {"opset": 18, "atol": 1e-3}


def test_invalid_flag_values_are_config_errors_naming_the_field():
    result = runner.invoke(app, ["classifier", "train", "P", "O", "--pooling", "median", "--dry-run"])
    assert result.exit_code != 0 and "classifier.model.pooling" in str(result.exception)


@pytest.mark.parametrize(
    "command", [["classifier", "train", "P", "O"], ["segmenter", "train", "P", "O"], ["export", "RUN", "BUNDLE"]]
)
def test_an_unknown_key_in_the_config_file_exits_2_naming_the_key_and_the_file(tmp_path: Path, command):
    config = _toml(tmp_path, "[classifier.model]\nwidht = 0.5\n")
    result = subprocess.run(
        [sys.executable, "-m", "training.cli", *command, "--config", str(config), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "classifier.model.widht" in result.stderr and str(config) in result.stderr
    assert "Traceback" not in result.stderr
