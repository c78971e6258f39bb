from pathlib import Path

import pytest

from edge.config import EdgeSettings
from shared.config import ConfigError, load_settings


def test_values_come_from_flags_then_env_then_file_then_defaults(tmp_path: Path, monkeypatch):
    config = tmp_path / "pump.toml"
    config.write_text('station_id = "from-file"\nline_id = "L7"\n[geometry]\ntile_px = 200\npatch_px = 100\n')
    monkeypatch.setenv("PUMP_GEOMETRY__TILE_PX", "300")
    settings = load_settings(EdgeSettings, config, {"line_id": "from-flag", "station_id": None})
    assert settings.line_id == "from-flag"
    assert settings.station_id == "from-file"
    assert settings.geometry.tile_px == 300, "env beats the file"
    assert settings.geometry.patch_px == 100, "file beats the default; nested sections merge"
    assert settings.geometry.crop_px == 1920


def test_config_file_can_come_from_pump_config(tmp_path: Path, monkeypatch):
    config = tmp_path / "pump.toml"
    config.write_text('station_id = "s9"\n')
    monkeypatch.setenv("PUMP_CONFIG", str(config))
    assert load_settings(EdgeSettings).station_id == "s9"


def test_an_invalid_value_names_the_field_and_where_it_came_from(tmp_path: Path, monkeypatch):
    config = tmp_path / "pump.toml"
    config.write_text("[geometry]\npatch_px = -1\n")
    with pytest.raises(ConfigError) as error:
        load_settings(EdgeSettings, config)
    assert "geometry.patch_px" in str(error.value) and str(config) in str(error.value)
    assert "greater than 0" in str(error.value)
    monkeypatch.setenv("PUMP_STATION_ID", "has space")
    with pytest.raises(ConfigError, match="station_id.*PUMP_STATION_ID"):
        load_settings(EdgeSettings)


def test_unknown_keys_and_broken_toml_are_refused(tmp_path: Path):
    config = tmp_path / "pump.toml"
    config.write_text("[geometry]\ntile_size = 3\n")
    with pytest.raises(ConfigError, match="geometry.tile_size.*Extra inputs"):
        load_settings(EdgeSettings, config)
    config.write_text("[geometry\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(EdgeSettings, config)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(EdgeSettings, tmp_path / "missing.toml")


def test_overlap_must_be_smaller_than_the_tile():
    with pytest.raises(ConfigError, match="min_overlap_px"):
        load_settings(EdgeSettings, None, {"geometry": {"tile_px": 64, "min_overlap_px": 64}})
