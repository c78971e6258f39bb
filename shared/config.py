"""Config pieces both sides use, and the one way settings are loaded.

Each side has one pydantic-settings model (``training.config.TrainSettings``,
``edge.config.EdgeSettings``). Values come, highest priority first, from command-line
flags, ``PUMP_*`` environment variables (nested with ``__``, e.g.
``PUMP_GEOMETRY__TILE_PX=128``), a TOML file (``--config`` or ``PUMP_CONFIG``), and the
defaults. Invalid values stop the program at start with the field and the reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

ENV_PREFIX = "PUMP_"
CONFIG_FILE_ENV = "PUMP_CONFIG"

Settings = TypeVar("Settings", bound=BaseSettings)


class GeometryConfig(BaseModel):
    """How frames become patches; training and the edge must use the same values."""

    model_config = ConfigDict(extra="forbid")

    crop_px: int = Field(
        1920,
        ge=0,
        description="Side of the square center crop (ROI) in frame pixels; 0 = whole frame. "
        "A frame smaller than the crop keeps its full extent along that axis.",
    )
    tile_px: int = Field(256, gt=0, description="Side of a tile cut from the ROI, in frame pixels.")
    patch_px: int = Field(128, gt=0, description="Side of the patch a tile is resized to (model input).")
    min_overlap_px: int = Field(0, ge=0, description="Least overlap between neighbouring grid tiles.")

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> GeometryConfig:
        if self.min_overlap_px >= self.tile_px:
            raise ValueError(f"min_overlap_px ({self.min_overlap_px}) must be smaller than tile_px ({self.tile_px})")
        return self


class ConfigError(ValueError):
    """Settings could not be loaded; the message names the file or variable, field and reason."""


class PumpSettings(BaseSettings):
    """Base for each side's settings: ``PUMP_*`` env vars, no unknown keys."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML config file as a dict; errors name the file and the position."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from None


class _DictSource(PydanticBaseSettingsSource):
    """Settings source over a dict read from a file (lower priority than the environment)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def _where(loc: tuple[Any, ...], file_values: dict[str, Any], config_file: Path | None) -> str:
    env_name = ENV_PREFIX + "__".join(str(part) for part in loc).upper()
    if env_name in os.environ:
        return f"environment variable {env_name}"
    node: Any = file_values
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return "command line" if config_file is None else "command line or defaults"
        node = node[part]
    return f"config file {config_file}"


def load_settings(
    settings_cls: type[Settings],
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build ``settings_cls`` from flags (``overrides``), env, TOML file and defaults.

    ``config_file`` defaults to ``$PUMP_CONFIG`` when set. Raises :class:`ConfigError`
    that names each bad field, where its value came from, and why it is wrong.
    """
    if config_file is None and os.environ.get(CONFIG_FILE_ENV):
        config_file = Path(os.environ[CONFIG_FILE_ENV])
    file_values = read_toml(config_file) if config_file is not None else {}

    class _Loaded(settings_cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        ):  # noqa: ANN001
            return (init_settings, env_settings, _DictSource(settings_cls, file_values))

    _Loaded.__name__ = _Loaded.__qualname__ = settings_cls.__name__
    try:
        loaded = _Loaded(**_drop_none(overrides or {}))
    except ValidationError as error:
        lines = []
        for item in error.errors():
            loc = tuple(item["loc"])
            field = ".".join(str(part) for part in loc) or "(root)"
            lines.append(
                f"  {field} (from {_where(loc, file_values, config_file)}): {item['msg']} (got {item.get('input')!r})"
            )
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
    return loaded


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    """Flags the user did not give arrive as None and must not override env or file values."""
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                cleaned[key] = nested
        elif value is not None:
            cleaned[key] = value
    return cleaned
