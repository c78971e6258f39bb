"""Config pieces both sides use, and the one way settings are loaded.

Each side has one pydantic-settings model (``training.config.TrainSettings``,
``edge.config.EdgeSettings``). Values come, highest priority first, from command-line
flags, ``PUMP_*`` environment variables (nested with ``__``, e.g.
``PUMP_GEOMETRY__TILE_PX=128``), a TOML file (``--config`` or ``PUMP_CONFIG``), and the
defaults. Invalid values stop the program at start with the field, where the value came
from and the reason (:class:`ConfigError`; both CLIs exit 2 on it).

Config models stay data (house style 10): the shared types here make every model strict
the same way - :data:`ConfigBool` (only true/false), :data:`NonEmptyPath` (``""`` is not
``.``), and ``allow_inf_nan=False`` in each model's ``model_config`` (no NaN/inf floats).
Files that settings name are checked by the CLI at start-up, never by a validator.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

ENV_PREFIX = "PUMP_"
CONFIG_FILE_ENV = "PUMP_CONFIG"
# PUMP_* variables that are not settings: the config file's name and test-only variables
# (e.g. PUMP_TEST_POSTGRES_URL). Every other PUMP_* variable must name a setting.
NON_SETTINGS_ENV = frozenset({CONFIG_FILE_ENV})
TEST_ENV_PREFIX = "PUMP_TEST_"
MAX_CONFIG_BYTES = 1 << 20  # a station config is a few KiB; this stops /dev/zero or a wrong file
TRUE_WORDS = frozenset({"true", "1"})
FALSE_WORDS = frozenset({"false", "0"})
_SECRET_MARKERS = ("password", "secret", "token")

Settings = TypeVar("Settings", bound=BaseSettings)


def _strict_bool(value: object) -> object:
    """A real bool, or (env vars and flags are text) ``true``/``false``/``1``/``0`` in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError("must be true or false (in environment variables also 1 or 0)")


def _non_empty_path(value: object) -> object:
    """Refuse ``""`` (``Path("")`` is ``.``, the current folder) and names with a NUL byte."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty (leave the key out for the default)")
        if "\x00" in value:
            raise ValueError("must not contain a NUL byte")
    return value


ConfigBool = Annotated[bool, BeforeValidator(_strict_bool)]
"""A setting's boolean: ``true``/``false`` (TOML), also ``1``/``0`` as text (env vars), any case; ``yes``, 2 fail."""

NonEmptyPath = Annotated[Path, BeforeValidator(_non_empty_path)]
"""A setting's path: ``""`` is refused instead of silently meaning the current folder."""

SeedInt = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A random seed as numpy and torch both take it: 0 ... 2**32-1."""


def refuse_renamed(values: Any, renamed: dict[str, str]) -> Any:
    """A ``mode="before"`` validator body: a setting given under its old name fails naming the new one.

    Renamed settings are refused, not silently mapped: a station config keeps one meaning per
    name, and the fix is a one-word edit the message spells out.

    >>> refuse_renamed({"tile_px": 256}, {"tile": "tile_px"})
    {'tile_px': 256}
    >>> refuse_renamed({"tile": 256}, {"tile": "tile_px"})
    Traceback (most recent call last):
    ...
    ValueError: 'tile' was renamed 'tile_px': rename the key (the values are unchanged)
    """
    if isinstance(values, dict):
        for old, new in renamed.items():
            if old in values:
                raise ValueError(f"{old!r} was renamed {new!r}: rename the key (the values are unchanged)")
    return values


class GeometryConfig(BaseModel):
    """How frames become patches; training and the edge must use the same values."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    crop_px: int = Field(
        1920,
        ge=0,
        le=32768,
        description="Side of the square center crop (ROI) in frame pixels; 0 = whole frame. "
        "A frame smaller than the crop keeps its full extent along that axis.",
    )
    tile_px: int = Field(256, gt=0, le=8192, description="Side of a tile cut from the ROI, in frame pixels.")
    patch_px: int = Field(128, gt=0, le=2048, description="Side of the patch a tile is resized to (model input).")
    min_overlap_px: int = Field(0, ge=0, le=8191, description="Least overlap between neighbouring grid tiles.")

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> GeometryConfig:
        if self.min_overlap_px >= self.tile_px:
            raise ValueError(f"min_overlap_px ({self.min_overlap_px}) must be smaller than tile_px ({self.tile_px})")
        return self


class ConfigError(ValueError):
    """Settings could not be loaded; the message names the file or variable, field and reason."""


class PumpSettings(BaseSettings):
    """Base for each side's settings: ``PUMP_*`` env vars, no unknown keys."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", allow_inf_nan=False
    )


def read_toml(path: Path, via: str | None = None) -> dict[str, Any]:
    """A TOML config file as a dict; every error is a :class:`ConfigError` naming the file.

    ``via`` says how the file was chosen (``PUMP_CONFIG``) so the message points at it.
    A folder, a missing or unreadable file, more than 1 MiB, bytes that are not UTF-8 and
    broken TOML are all refused here, before any value is looked at.
    """
    path = Path(path)
    where = _file_label(path, via)
    try:
        if path.is_dir():
            raise ConfigError(f"{where}: is a folder, not a TOML file")
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where}: config file not found") from None
    except PermissionError:
        raise ConfigError(f"{where}: cannot read the config file (permission denied)") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot read the config file ({error.strerror or error})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{where}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "TOML files must be UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: invalid TOML ({error})") from None


class _DictSource(PydanticBaseSettingsSource):
    """Settings source over a dict read from a file (lower priority than the environment)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class _AliasEnvSource(PydanticBaseSettingsSource):
    """``PUMP_<ALIAS>`` (JSON) and ``PUMP_<ALIAS>__KEY...`` for sections with an alias (``import_`` is ``[import]``).

    pydantic-settings looks an aliased field up by its bare alias (``IMPORT__...``), so the
    documented ``PUMP_IMPORT__MASK_THRESHOLD`` was silently ignored; this source reads it.
    """

    def __init__(self, settings_cls: type[BaseSettings], env: dict[str, str]) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            if not info.alias or info.alias == name:
                continue
            base = ENV_PREFIX + info.alias.upper()
            for upper, original in sorted(self._env.items()):
                text = os.environ[original]
                if upper == base:
                    try:
                        values[info.alias] = json.loads(text)
                    except json.JSONDecodeError:
                        values[info.alias] = text  # validation names the variable and refuses it
                elif upper.startswith(base + "__") and isinstance(values.setdefault(info.alias, {}), dict):
                    *path, leaf = upper[len(base) + 2 :].lower().split("__")
                    node = values[info.alias]
                    for part in path:
                        node = node.setdefault(part, {})
                    node[leaf] = text
        return values


# --- where a value came from, and what a misspelt name meant -----------------------------------


def _file_label(path: Path, via: str | None) -> str:
    return f"config file {path}" + (f" (named by {via})" if via else "")


def _pump_env() -> dict[str, str]:
    """``PUMP_*`` variables by upper-case name -> the name as set (pydantic-settings ignores case)."""
    return {name.upper(): name for name in os.environ if name.upper().startswith(ENV_PREFIX)}


def _has(values: Any, loc: tuple[Any, ...]) -> bool:
    for part in loc:
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def _sources_of(
    loc: tuple[Any, ...],
    overrides: dict[str, Any],
    env: dict[str, str],
    file_label: str | None,
    file_values: dict[str, Any],
) -> list[str]:
    """Every source holding a value at ``loc`` or below it, highest priority first."""
    found = ["command line"] if _has(overrides, loc) else []
    name = ENV_PREFIX + "__".join(str(part) for part in loc).upper()
    parents = [ENV_PREFIX + "__".join(str(part) for part in loc[:end]).upper() for end in range(len(loc), 0, -1)]
    names = [env[parent] for parent in parents if parent in env]  # PUMP_ROI='{"x": ...}' holds roi.x
    names += sorted(env[key] for key in env if key.startswith(name + "__"))
    found += [f"environment variable {env_name}" for env_name in dict.fromkeys(names)]
    if file_label is not None and _has(file_values, loc):
        found.append(file_label)
    return found


def _where(leaf: bool, sources: list[str]) -> str:
    """One value comes from the highest-priority source; a section (a rule across fields) from all."""
    if not sources:
        return "defaults"
    return sources[0] if leaf else " + ".join(sources)


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None`` or ``Annotated[X, ...]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            model = _unwrap_model(arg)
            if model is not None:
                return model
    return None


def _field_names(model: type[BaseModel]) -> dict[str, Any]:
    """Names a model accepts (aliases included) -> annotation."""
    names: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        names[info.alias or name] = info.annotation
    return names


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        if model is None:
            return None
        model = _unwrap_model(_field_names(model).get(str(part)))
    return model


def _env_names(model: type[BaseModel], prefix: str = ENV_PREFIX) -> dict[str, str]:
    """Every valid env name below ``model``: by full name and by its last part, for suggestions."""
    names: dict[str, str] = {}
    for name, annotation in _field_names(model).items():
        env_name = f"{prefix}{name.upper()}"
        names[env_name] = env_name
        nested = _unwrap_model(annotation)
        if nested is not None:
            names.update(_env_names(nested, env_name + "__"))
    return names


def _suggest(wrong: str, env_names: dict[str, str]) -> str:
    """`` (did you mean PUMP_X?)`` from the closest full name, or the closest last part of a name."""
    by_leaf: dict[str, str] = {}
    for name in env_names:
        by_leaf.setdefault(name.rsplit("__", 1)[-1].removeprefix(ENV_PREFIX), name)
    close = difflib.get_close_matches(wrong, list(env_names), n=1, cutoff=0.75)
    if not close:
        leaf = difflib.get_close_matches(wrong.removeprefix(ENV_PREFIX), list(by_leaf), n=1, cutoff=0.75)
        close = [by_leaf[leaf[0]]] if leaf else []
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown_env(settings_cls: type[BaseSettings], env: dict[str, str]) -> list[str]:
    """``PUMP_*`` variables whose first part names no setting (pydantic-settings would ignore them)."""
    top = {name.upper() for name in _field_names(settings_cls)}
    all_names = _env_names(settings_cls)
    problems = []
    for upper, name in sorted(env.items()):
        if upper in NON_SETTINGS_ENV or upper.startswith(TEST_ENV_PREFIX):
            continue
        if upper.removeprefix(ENV_PREFIX).split("__", 1)[0] not in top:
            problems.append(
                f"  {name} (environment variable): not a setting of {settings_cls.__name__}{_suggest(upper, all_names)}"
            )
    return problems


def _redact(value: Any, loc: tuple[Any, ...] = ()) -> Any:
    """Secrets never reach the log: a value whose key names a password/secret/token is masked (not ``*_file``)."""
    last = str(loc[-1]).lower() if loc else ""
    if any(marker in last for marker in _SECRET_MARKERS) and not last.endswith(("_file", "_path", "_dir")):
        return "***"
    if isinstance(value, dict):
        return {key: _redact(item, (key,)) for key, item in value.items()}
    return value


def _shown(value: Any, loc: tuple[Any, ...]) -> str:
    text = repr(_redact(value, loc))
    return text if len(text) <= 200 else text[:200] + "..."


def _extra_hint(settings_cls: type[BaseSettings], loc: tuple[Any, ...]) -> str:
    model = _model_at(settings_cls, loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(_field_names(model)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_settings(
    settings_cls: type[Settings],
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build ``settings_cls`` from flags (``overrides``), env, TOML file and defaults.

    ``config_file`` defaults to ``$PUMP_CONFIG`` when set. Raises :class:`ConfigError`
    that names each bad field, where its value came from, and why it is wrong; also for a
    ``PUMP_*`` variable that names no setting (except ``PUMP_CONFIG`` and ``PUMP_TEST_*``),
    with the closest valid name.
    """
    via = None
    if config_file is None and os.environ.get(CONFIG_FILE_ENV):
        config_file = Path(os.environ[CONFIG_FILE_ENV])
        via = CONFIG_FILE_ENV
    file_values = read_toml(config_file, via) if config_file is not None else {}
    file_label = _file_label(config_file, via) if config_file is not None else None
    env = _pump_env()
    unknown = _unknown_env(settings_cls, env)
    if unknown:
        raise ConfigError("invalid settings:\n" + "\n".join(unknown))
    given = _drop_none(overrides or {})

    class _Loaded(settings_cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        ):  # noqa: ANN001
            return (
                init_settings,
                env_settings,
                _AliasEnvSource(settings_cls, env),
                _DictSource(settings_cls, file_values),
            )

    _Loaded.__name__ = _Loaded.__qualname__ = settings_cls.__name__
    try:
        loaded = _Loaded(**given)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            loc = tuple(item["loc"])
            field = ".".join(str(part) for part in loc) or "(root)"
            sources = _sources_of(loc, given, env, file_label, file_values)
            where = _where(not isinstance(item.get("input"), dict), sources)
            hint = _extra_hint(settings_cls, loc) if item["type"] == "extra_forbidden" else ""
            lines.append(f"  {field} (from {where}): {item['msg']}{hint} (got {_shown(item.get('input'), loc)})")
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
