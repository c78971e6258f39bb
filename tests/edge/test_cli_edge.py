"""`pump-edge doctor`, `build-engine`, `watch` and `export-uncertain`, plus the deploy example config.

Models are the threshold bundles of :mod:`tests.edge.fixtures`; the station config is a TOML
written per test. Commands run in-process (typer's CliRunner) except where the exit path of the
real entry point matters (subprocess ``python -m edge.cli``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.backends.device import tensorrt_usable
from edge.cli import app
from edge.config import EdgeSettings
from edge.publish.broker import MosquittoBroker, find_mosquitto, free_port
from shared.config import GeometryConfig, load_settings
from tests.edge.fixtures import make_threshold_bundles

REPO = Path(__file__).resolve().parents[2]
GEOMETRY = GeometryConfig(crop_px=0, tile_px=128, patch_px=64)
runner = CliRunner()
needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="needs the mosquitto binary")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_threshold_bundles(tmp_path_factory.mktemp("bundles"), GEOMETRY)


def write_config(tmp_path: Path, classifier: Path, segmenter: Path, mqtt: str = "") -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f"""
line_id = "l1"
station_id = "s1"
data_dir = "{tmp_path / "data"}"
[geometry]
crop_px = {GEOMETRY.crop_px}
tile_px = {GEOMETRY.tile_px}
patch_px = {GEOMETRY.patch_px}
[bundles]
classifier = "{classifier}"
segmenter = "{segmenter}"
[backend]
kind = "onnxruntime"
ort_threads = 1
[mqtt]
{mqtt or f"port = {free_port()}"}
"""
    )
    return path


def doctor_rows(*args: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = runner.invoke(app, ["doctor", "--json", *args])
    rows = json.loads(result.stdout)
    return result.exit_code, {row["check"]: row for row in rows}


@needs_mosquitto
def test_doctor_reports_a_healthy_station_ok(tmp_path, bundles):
    config = write_config(tmp_path, *bundles)
    code, rows = doctor_rows("--config", str(config))
    assert code == 0, rows
    for name in ("python", "settings", "bundle classifier", "bundle segmenter", "backend", "run classifier"):
        assert rows[name]["status"] == "ok", rows[name]
    for name in ("run segmenter", "broker", "data dir", "store"):
        assert rows[name]["status"] == "ok", rows[name]
    assert rows["disk"]["status"] in ("ok", "warn")
    assert (
        "sha256" in rows["bundle classifier"]["detail"]
        and "tile 128 -> patch 64" in rows["bundle classifier"]["detail"]
    )
    assert "onnxruntime" in rows["run segmenter"]["detail"]
    assert "0 patches" in rows["store"]["detail"]
    table = runner.invoke(app, ["doctor", "--config", str(config)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "bundle segmenter" in table.stdout and "0 fail" in table.stdout


def test_doctor_fails_on_a_missing_bundle_and_warns_about_a_dead_broker(tmp_path, bundles):
    classifier, _ = bundles
    port = free_port()
    config = write_config(tmp_path, classifier, tmp_path / "nowhere", mqtt=f'host = "127.0.0.1"\nport = {port}')
    code, rows = doctor_rows("--config", str(config), "--timeout", "0.5")
    assert code == 1
    assert rows["bundle segmenter"]["status"] == "fail" and "not found" in rows["bundle segmenter"]["detail"]
    assert rows["bundle classifier"]["status"] == "ok"
    assert rows["run classifier"]["status"] == "ok" and "run segmenter" not in rows
    # the station starts without its broker (results wait in the outbox), so this is a warning
    assert rows["broker"]["status"] == "warn" and f"127.0.0.1:{port}" in rows["broker"]["detail"]


def test_doctor_reports_invalid_settings_as_a_failed_row_and_exits_2_like_run(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[geometry]\ntile_px = -3\n")
    code, rows = doctor_rows("--config", str(bad))
    assert code == 2
    assert rows["settings"]["status"] == "fail" and "geometry.tile_px" in rows["settings"]["detail"]


@needs_mosquitto
def test_doctor_connects_to_a_configured_broker(tmp_path, bundles):
    with MosquittoBroker() as broker:
        config = write_config(tmp_path, *bundles, mqtt=f'host = "127.0.0.1"\nport = {broker.port}')
        code, rows = doctor_rows("--config", str(config))
    assert rows["broker"]["status"] == "ok" and f"127.0.0.1:{broker.port}" in rows["broker"]["detail"], rows
    assert code == 0


def pump_edge(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.skipif(tensorrt_usable(), reason="this machine has TensorRT and a GPU")
def test_build_engine_without_tensorrt_exits_2_with_a_clear_message(tmp_path, bundles):
    result = pump_edge("build-engine", str(bundles[0]), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2, result.stderr
    assert "needs TensorRT and an NVIDIA GPU" in " ".join(result.stderr.split())
    assert not (tmp_path / "data" / "engines").exists()


def test_build_engine_int8_without_calibration_is_a_usage_error(tmp_path, bundles):
    result = pump_edge("build-engine", str(bundles[0]), "--precision", "int8", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "calibration_dir" in result.stderr


def test_export_uncertain_on_an_empty_store_writes_an_empty_archive(tmp_path):
    out = tmp_path / "export" / "uncertain.tar.gz"
    args = ["export-uncertain", str(out), "--data-dir", str(tmp_path / "data"), "--since", "7d", "--only-new"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "exported 0 patches" in result.stdout
    with tarfile.open(out) as archive:
        assert any(name.endswith("manifest.json") for name in archive.getnames())
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    bad = runner.invoke(app, [*args, "--overwrite", "--since", "last tuesday"])
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_watch_without_a_broker_exits_2_quickly():
    started = time.monotonic()
    result = pump_edge("watch", "--broker", f"127.0.0.1:{free_port()}", "--duration", "1", timeout=20)
    assert result.returncode == 2
    assert "no MQTT broker answered" in " ".join(result.stderr.split())
    assert time.monotonic() - started < 15


def test_deploy_example_config_loads():
    settings = load_settings(EdgeSettings, REPO / "deploy" / "edge" / "edge.toml")
    assert settings.bundles.classifier is not None and settings.bundles.segmenter is not None
    assert settings.mqtt.host and settings.mqtt.tls is not None
    assert str(settings.data_dir).startswith("/var/lib/")


# --- issue 8 (item 7): every settings problem exits 2 through the real entry point --------------

PUMP_EDGE = Path(sys.executable).parent / "pump-edge"  # the console script systemd runs


def pump_edge_script(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.upper().startswith("PUMP_")}
    return subprocess.run(
        [str(PUMP_EDGE), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, "COLUMNS": "200", **(env or {})},
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    return " ".join(result.stderr.split())


@pytest.mark.parametrize(
    "command",
    [("config",), ("run", "--once", "--source", "synthetic:256x256"), ("doctor", "--timeout", "0.2"), ("watch",)],
)
def test_a_missing_password_file_exits_2_naming_the_field(tmp_path, bundles, command):
    password_file = tmp_path / "gone" / "mqtt-password"
    mqtt = f'host = "127.0.0.1"\nport = {free_port()}\nusername = "s1"\npassword_file = "{password_file}"'
    config = write_config(tmp_path, *bundles, mqtt=mqtt)
    result = pump_edge_script(*command, "--config", str(config))
    assert result.returncode == 2, result.stderr  # was: a traceback and exit 1 (systemd restarted it forever)
    assert "Traceback" not in result.stderr
    text = one_line(result) + " ".join(result.stdout.split())
    assert f"mqtt.password_file: {password_file}: file not found" in text


@pytest.mark.parametrize("command", [("config",), ("run", "--once"), ("tiles", "640", "480")])
def test_pump_config_naming_a_folder_exits_2_naming_it(tmp_path, command):
    result = pump_edge_script(*command, env={"PUMP_CONFIG": str(tmp_path)})
    assert result.returncode == 2, result.stderr  # was: IsADirectoryError traceback, exit 1
    assert f"config file {tmp_path} (named by PUMP_CONFIG): is a folder" in one_line(result)
    assert "Traceback" not in result.stderr


def test_a_config_file_that_is_not_utf8_exits_2_naming_the_file(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_bytes(b"\xff\xfe[mqtt]\x00")
    result = pump_edge_script("config", "--config", str(config))
    assert result.returncode == 2  # was: exit 2, but "'utf-8' codec can't decode byte 0xff" naming no file
    assert f"config file {config}: not UTF-8 text (byte 0xff at offset 0)" in one_line(result)


def test_an_unknown_pump_variable_exits_2_naming_it_and_the_closest_name(tmp_path):
    result = pump_edge_script("config", env={"PUMP_STATON_ID": "s7"})
    assert result.returncode == 2  # was: exit 0, the station silently kept station_id "station1"
    assert "PUMP_STATON_ID (environment variable): not a setting of EdgeSettings" in one_line(result)
    assert "did you mean PUMP_STATION_ID?" in one_line(result)


def test_tiles_shows_the_roi_the_station_uses_also_a_configured_box(tmp_path, bundles):
    config = write_config(tmp_path, *bundles)
    whole = runner.invoke(app, ["tiles", "640", "480", "--config", str(config)], env={"COLUMNS": "200"})
    assert whole.exit_code == 0, whole.output
    assert "x=0 y=0 640x480" in whole.output  # crop_px = 0: the whole frame
    config.write_text(config.read_text() + "[roi]\nx = 100\ny = 40\nwidth = 300\nheight = 200\n")
    boxed = runner.invoke(app, ["tiles", "640", "480", "--config", str(config)], env={"COLUMNS": "200"})
    assert boxed.exit_code == 0, boxed.output
    assert "x=100 y=40 300x200" in boxed.output  # was: the center crop, whatever [roi] said
