"""Settings loading: sources and their priority, and every way a bad setting is refused (issue 8, items 7 and 9)."""

import os
import types
import typing
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

import shared.config as shared_config
from edge.config import EdgeSettings, check_files
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


# --- issue 8 (items 7 and 9): config files of every bad kind name the file -------------------


def test_a_folder_as_config_file_is_refused_naming_it_and_pump_config(tmp_path: Path, monkeypatch):
    with pytest.raises(ConfigError, match=f"config file {tmp_path}: is a folder"):
        load_settings(EdgeSettings, tmp_path)
    monkeypatch.setenv("PUMP_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match=rf"{tmp_path} \(named by PUMP_CONFIG\): is a folder"):
        load_settings(EdgeSettings)


def test_a_config_file_that_is_not_utf8_is_refused_naming_the_file_and_the_byte(tmp_path: Path):
    binary = tmp_path / "edge.toml"
    binary.write_bytes(b'station_id = "s1"\n\xff\xfe\x00\x01')
    with pytest.raises(ConfigError, match=rf"{binary}: not UTF-8 text \(byte 0xff at offset 18\)"):
        load_settings(EdgeSettings, binary)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('station_id = "Büro"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=f"{latin1}: not UTF-8"):
        load_settings(EdgeSettings, latin1)


def test_an_unreadable_config_file_is_refused_naming_the_file(tmp_path: Path, monkeypatch):
    config = tmp_path / "edge.toml"
    config.write_text('station_id = "s1"\n')

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(config))

    monkeypatch.setattr(shared_config, "open", denied, raising=False)  # root reads any file; fake the refusal
    with pytest.raises(ConfigError, match=f"{config}: cannot read the config file \\(permission denied\\)"):
        load_settings(EdgeSettings, config)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_a_config_file_without_read_permission_is_refused(tmp_path: Path):
    config = tmp_path / "edge.toml"
    config.write_text('station_id = "s1"\n')
    config.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        load_settings(EdgeSettings, config)


def test_missing_and_oversized_config_files_are_refused_naming_them(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PUMP_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone.toml \(named by PUMP_CONFIG\): config file not found"):
        load_settings(EdgeSettings)
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match=f"{big}: larger than 1024 KiB"):
        load_settings(EdgeSettings, big)


# --- strict values ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ['"yes"', '"on"', "1", '"2"', '""'])
def test_booleans_in_the_file_are_only_true_or_false(tmp_path: Path, value: str):
    config = tmp_path / "edge.toml"
    config.write_text(f"[pipeline]\ncascade = {value}\n")
    with pytest.raises(ConfigError, match=r"pipeline.cascade \(from config file .*\): .*must be true or false"):
        load_settings(EdgeSettings, config)
    config.write_text("[pipeline]\ncascade = true\n")
    assert load_settings(EdgeSettings, config).pipeline.cascade is True


def test_booleans_from_env_take_true_false_1_0_in_any_case_and_nothing_else(monkeypatch):
    for text, expected in (("TRUE", True), ("false", False), ("1", True), ("0", False), ("True", True)):
        monkeypatch.setenv("PUMP_PIPELINE__CASCADE", text)
        assert load_settings(EdgeSettings).pipeline.cascade is expected, text
    for text in ("yes", "no", "on", "off", "y", "2", ""):
        monkeypatch.setenv("PUMP_PIPELINE__CASCADE", text)
        with pytest.raises(ConfigError, match="pipeline.cascade .*PUMP_PIPELINE__CASCADE.*must be true or false"):
            load_settings(EdgeSettings)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("pipeline", "queue_size", "1e9"),
        ("pipeline", "queue_size", "1000000000"),
        ("pipeline", "watchdog_timeout_s", "1e12"),
        ("mqtt", "stats_interval_s", "86400000"),
        ("mqtt", "outbox_max_rows", "1000000000"),
        ("store", "max_disk_mb", "1e12"),
        ("backend", "opt_batch", "100000"),
        ("source", "poll_s", "1e6"),
        ("geometry", "tile_px", "100000"),
    ],
)
def test_numbers_have_upper_bounds(tmp_path: Path, section: str, key: str, value: str):
    config = tmp_path / "edge.toml"
    config.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"{section}\.{key} \(from config file .*\): Input should be less than"):
        load_settings(EdgeSettings, config)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_in_float_fields(tmp_path: Path, monkeypatch, value: str):
    config = tmp_path / "edge.toml"
    config.write_text(f"[store]\nmax_disk_mb = {value}\n[postprocess]\ndecision_threshold = {value}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(EdgeSettings, config)
    assert "store.max_disk_mb" in str(error.value) and "postprocess.decision_threshold" in str(error.value)
    assert "finite number" in str(error.value)
    monkeypatch.setenv("PUMP_SOURCE__SETTLE_S", value)
    with pytest.raises(ConfigError, match=r"source.settle_s \(from environment variable PUMP_SOURCE__SETTLE_S\)"):
        load_settings(EdgeSettings)


def test_thresholds_stay_within_0_and_1():
    with pytest.raises(ConfigError, match="store.disagreement.classifier_threshold"):
        load_settings(EdgeSettings, None, {"store": {"disagreement": {"classifier_threshold": 1.5}}})
    with pytest.raises(ConfigError, match="postprocess.pixel_threshold"):
        load_settings(EdgeSettings, None, {"postprocess": {"pixel_threshold": -0.1}})


def test_an_empty_path_is_refused_instead_of_meaning_the_current_folder(tmp_path: Path, monkeypatch):
    config = tmp_path / "edge.toml"
    config.write_text('data_dir = ""\n')
    with pytest.raises(ConfigError, match=r"data_dir \(from config file .*\): .*must not be empty"):
        load_settings(EdgeSettings, config)
    monkeypatch.setenv("PUMP_MQTT__PASSWORD_FILE", " ")
    with pytest.raises(ConfigError, match="mqtt.password_file .*PUMP_MQTT__PASSWORD_FILE.*must not be empty"):
        load_settings(EdgeSettings)


# --- PUMP_* variables -------------------------------------------------------------------------


def test_an_unknown_top_level_pump_variable_is_an_error_naming_it_and_the_closest_name(monkeypatch):
    monkeypatch.setenv("PUMP_STATON_ID", "x")
    with pytest.raises(ConfigError, match=r"PUMP_STATON_ID .*not a setting.*did you mean PUMP_STATION_ID\?"):
        load_settings(EdgeSettings)
    monkeypatch.delenv("PUMP_STATON_ID")
    monkeypatch.setenv("PUMP_QUEUESIZE", "3")
    with pytest.raises(ConfigError, match=r"PUMP_QUEUESIZE .*did you mean PUMP_PIPELINE__QUEUE_SIZE\?"):
        load_settings(EdgeSettings)
    monkeypatch.delenv("PUMP_QUEUESIZE")
    monkeypatch.setenv("pump_mqtt_hots", "broker")  # pydantic-settings ignores case, so does the check
    with pytest.raises(ConfigError, match=r"pump_mqtt_hots .*did you mean PUMP_MQTT__HOST\?"):
        load_settings(EdgeSettings)


def test_a_misspelt_nested_key_suggests_the_closest_field(monkeypatch):
    monkeypatch.setenv("PUMP_PIPELINE__QUEUESIZE", "3")
    with pytest.raises(ConfigError, match=r"pipeline.queuesize .*Extra inputs are not permitted; did you mean 'queue_"):
        load_settings(EdgeSettings)


def test_an_aliased_section_is_read_from_its_documented_pump_variable(monkeypatch):
    from training.config import TrainSettings

    monkeypatch.setenv("PUMP_IMPORT__MASK_THRESHOLD", "99")  # [import] is the field import_: was silently ignored
    assert load_settings(TrainSettings).import_.mask_threshold == 99
    monkeypatch.setenv("PUMP_IMPORT__MASK_THRESHOLD", "999")
    with pytest.raises(ConfigError, match=r"import.mask_threshold \(from environment variable PUMP_IMPORT__MASK"):
        load_settings(TrainSettings)


def test_pump_config_and_test_variables_are_not_settings_and_pass(tmp_path: Path, monkeypatch):
    config = tmp_path / "edge.toml"
    config.write_text('station_id = "s2"\n')
    monkeypatch.setenv("PUMP_CONFIG", str(config))
    monkeypatch.setenv("PUMP_TEST_POSTGRES_URL", "postgresql://nowhere/x")
    assert load_settings(EdgeSettings).station_id == "s2"


# --- the error names the source the value really came from ------------------------------------


def test_a_flag_that_overrides_the_file_is_reported_as_the_command_line(tmp_path: Path):
    config = tmp_path / "edge.toml"
    config.write_text('station_id = "s1"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(EdgeSettings, config, {"station_id": "bad id"})
    assert "station_id (from command line)" in str(error.value)  # was: "from config file"


def test_a_value_inside_a_json_env_variable_is_reported_as_that_variable(tmp_path: Path, monkeypatch):
    config = tmp_path / "edge.toml"
    config.write_text("[geometry]\ntile_px = 256\n")
    monkeypatch.setenv("PUMP_GEOMETRY", '{"tile_px": -1}')
    with pytest.raises(ConfigError, match=r"geometry.tile_px \(from environment variable PUMP_GEOMETRY\)"):
        load_settings(EdgeSettings, config)  # was: "command line or defaults"


def test_a_lower_case_env_variable_is_reported_as_the_source_not_the_file(tmp_path: Path, monkeypatch):
    config = tmp_path / "edge.toml"
    config.write_text('station_id = "s1"\n')
    monkeypatch.setenv("pump_station_id", "bad id")
    with pytest.raises(ConfigError, match=r"station_id \(from environment variable pump_station_id\)"):
        load_settings(EdgeSettings, config)


def test_a_rule_across_fields_names_every_source_that_fed_it(tmp_path: Path, monkeypatch):
    config = tmp_path / "edge.toml"
    config.write_text("[geometry]\nmin_overlap_px = 64\n")
    monkeypatch.setenv("PUMP_GEOMETRY__TILE_PX", "32")
    with pytest.raises(ConfigError) as error:
        load_settings(EdgeSettings, config)
    assert f"geometry (from environment variable PUMP_GEOMETRY__TILE_PX + config file {config})" in str(error.value)


def test_a_password_in_an_error_is_masked(tmp_path: Path):
    config = tmp_path / "edge.toml"
    config.write_text('[mqtt]\npassword = "hunter2"\npassword_file = "/etc/pw"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(EdgeSettings, config)
    assert "not both" in str(error.value) and "hunter2" not in str(error.value) and "/etc/pw" in str(error.value)


# --- files the settings name: a start-up step, not a validator --------------------------------


def test_check_files_names_each_missing_file_and_its_field(tmp_path: Path):
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[mqtt]\nusername = "u"\npassword_file = "{tmp_path}/pw"\n[mqtt.tls]\nca_file = "{tmp_path}"\n'
        f'[bundles]\nclassifier = "{tmp_path}/cls"\n'
    )
    settings = load_settings(EdgeSettings, config)  # loading never touches the files (config is data)
    with pytest.raises(ConfigError) as error:
        check_files(settings)
    text = str(error.value)
    assert f"mqtt.password_file: {tmp_path}/pw: file not found" in text
    assert f"mqtt.tls.ca_file: {tmp_path}: is a folder; expected a file" in text
    assert f"bundles.classifier: {tmp_path}/cls: folder not found" in text
    assert "bundles" not in str(pytest.raises(ConfigError, check_files, settings, ("mqtt",)).value)
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "cls").mkdir()
    fixed = load_settings(
        EdgeSettings, None, {"mqtt": {"password_file": tmp_path / "pw"}, "bundles": {"classifier": tmp_path / "cls"}}
    )
    assert check_files(fixed) is fixed


# --- every setting, including ones added later, keeps to the rules ----------------------------

# Numbers with no sane upper bound (a count of frames) or bounded by a rule across fields.
UNBOUNDED_OK = frozenset({"SourceConfig.max_frames", "MqttConfig.dead_letter_max_rows"})


def _metadata(info: FieldInfo) -> list[object]:
    found = list(info.metadata)
    stack = [info.annotation]
    while stack:
        annotation = stack.pop()
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is typing.Annotated:
            for extra in annotation.__metadata__:
                found.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
            stack.append(args[0])
        else:
            stack.extend(args)
    return found


def _base_types(annotation: object) -> set[object]:
    if typing.get_origin(annotation) is typing.Annotated:
        return _base_types(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_base_types(arg) for arg in args))
    return {annotation}


def _rule_breaks(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> list[str]:
    breaks = []
    config = model.model_config
    if config.get("extra") != "forbid" or config.get("allow_inf_nan", True):
        breaks.append(f"{model.__name__}: model_config needs extra='forbid', allow_inf_nan=False")
    for name, info in model.model_fields.items():
        where = f"{model.__name__}.{name}"
        if name in skip or (info.alias or "") in skip:
            continue
        if not info.description:
            breaks.append(f"{where}: no description")
        metadata = _metadata(info)
        validators = {getattr(item, "func", None) for item in metadata}
        kinds = _base_types(info.annotation)
        if bool in kinds and shared_config._strict_bool not in validators:
            breaks.append(f"{where}: bool must be ConfigBool")
        is_path = any(isinstance(kind, type) and issubclass(kind, Path) for kind in kinds)
        if is_path and shared_config._non_empty_path not in validators:
            breaks.append(f"{where}: Path must be NonEmptyPath")
        bounded = any(isinstance(item, annotated_types.Le | annotated_types.Lt) for item in metadata)
        if kinds & {int, float} and bool not in kinds and where not in UNBOUNDED_OK and not bounded:
            breaks.append(f"{where}: number without an upper bound (le=...)")
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                breaks.extend(_rule_breaks(kind))
    return breaks


def test_every_edge_setting_is_described_strict_and_bounded():
    assert _rule_breaks(EdgeSettings) == []


def test_every_training_setting_is_described_strict_and_bounded():
    from training.config import TrainSettings

    assert _rule_breaks(TrainSettings) == []


def test_the_rule_check_itself_catches_a_loose_field():
    class Loose(BaseModel):
        model_config = ConfigDict(extra="forbid")
        flag: bool = True
        size: int = Field(1, ge=0)
        where: Path | None = None

    assert sorted(_rule_breaks(Loose)) == [
        "Loose.flag: bool must be ConfigBool",
        "Loose.flag: no description",
        "Loose.size: no description",
        "Loose.size: number without an upper bound (le=...)",
        "Loose.where: Path must be NonEmptyPath",
        "Loose.where: no description",
        "Loose: model_config needs extra='forbid', allow_inf_nan=False",
    ]
