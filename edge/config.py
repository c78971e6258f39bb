"""The edge side's settings: one pydantic-settings model, loaded once in ``pump-edge``.

Shares ``[geometry]`` (and its ``PUMP_GEOMETRY__*`` variables) with the training side so
both cut frames the same way. Each runtime part owns its section's model (sources,
backends, postprocess, store, mqtt, pipeline); this class only gathers them.

The models are data and never touch the disk (house style 10). The files and folders they
name are checked by :func:`check_files`, a start-up step the CLI runs right after loading:
a missing password file is a settings problem (exit 2, naming ``mqtt.password_file``), not
a traceback from deep inside the publisher.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from pydantic import Field

from edge.backends.config import BackendConfig
from edge.postprocess.config import PostprocessConfig
from edge.publish.config import MqttConfig
from edge.runtime.config import DEFAULT_DATA_DIR, BundlesConfig, PipelineConfig, RoiConfig
from edge.sources.config import SourceConfig
from edge.store.config import StoreConfig
from shared.config import ConfigError, GeometryConfig, NonEmptyPath, PumpSettings

FILE_PARTS = ("bundles", "mqtt", "backend")


class EdgeSettings(PumpSettings):
    """Everything `pump-edge` can be configured with."""

    line_id: str = Field(
        "line1", min_length=1, pattern=r"^[A-Za-z0-9_-]+$", description="Production line id (an MQTT topic level)."
    )
    station_id: str = Field(
        "station1",
        min_length=1,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Inspection station id (an MQTT topic level).",
    )
    data_dir: NonEmptyPath = Field(
        DEFAULT_DATA_DIR, description="Station data: outbox, uncertain-patch store, engine cache (default ./edge-data)."
    )
    geometry: GeometryConfig = Field(default_factory=GeometryConfig, description="Frame -> patch geometry.")
    bundles: BundlesConfig = Field(default_factory=BundlesConfig, description="Model bundles to run.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Queues, backpressure, watchdog.")
    roi: RoiConfig | None = Field(None, description="Fixed ROI box in frame px (default: geometry's center crop).")
    source: SourceConfig = Field(default_factory=SourceConfig, description="Where frames come from.")
    backend: BackendConfig = Field(default_factory=BackendConfig, description="Inference backend and its sizing.")
    postprocess: PostprocessConfig = Field(
        default_factory=PostprocessConfig, description="Defects, verdict rule and defect map."
    )
    store: StoreConfig = Field(default_factory=StoreConfig, description="Uncertain-patch logging (issue 4, §6).")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker, delivery and payload policies.")


def _problem(field: str, path: Path, folder: bool) -> str | None:
    kind = "folder" if folder else "file"
    if not path.exists():
        return f"  {field}: {path}: {kind} not found"
    if folder != path.is_dir():
        return f"  {field}: {path}: is {'not ' if folder else ''}a folder; expected a {kind}"
    if not os.access(path, os.R_OK | (os.X_OK if folder else 0)):
        return f"  {field}: {path}: cannot read the {kind} (permission denied)"
    return None


def named_files(settings: EdgeSettings, parts: Collection[str] = FILE_PARTS) -> list[tuple[str, Path, bool]]:
    """(field, path, is a folder) of each file or folder the settings name, in the ``parts`` asked for."""
    named: list[tuple[str, Path | None, bool]] = []
    if "bundles" in parts:
        named += [("bundles.classifier", settings.bundles.classifier, True)]
        named += [("bundles.segmenter", settings.bundles.segmenter, True)]
        named += [("bundles.watch_dir", settings.bundles.watch_dir, True)]
    if "mqtt" in parts:
        mqtt = settings.mqtt
        named.append(("mqtt.password_file", mqtt.password_file if mqtt.password is None else None, False))
        if mqtt.tls is not None:
            for name in ("ca_file", "cert_file", "key_file"):
                named.append((f"mqtt.tls.{name}", getattr(mqtt.tls, name), False))
    if "backend" in parts:
        named.append(("backend.calibration_dir", settings.backend.calibration_dir, True))
    return [(field, Path(path), folder) for field, path, folder in named if path is not None]


def check_files(settings: EdgeSettings, parts: Collection[str] = FILE_PARTS) -> EdgeSettings:
    """Start-up step: every file and folder the settings name exists and is readable.

    Kept out of the validators (config models are data and load anywhere, e.g. the deploy
    example on a laptop); each command calls it for the parts it will read: ``run`` and
    ``config`` for all, ``doctor`` and ``watch`` for ``mqtt`` (doctor checks bundles as rows).
    Raises :class:`ConfigError` naming each field and path, so the CLI exits 2.

    Returns ``settings`` so a loader can end with ``return check_files(load_settings(...))``.
    """
    problems = [
        problem for field, path, folder in named_files(settings, parts) if (problem := _problem(field, path, folder))
    ]
    if problems:
        raise ConfigError("settings name files that cannot be used:\n" + "\n".join(problems))
    return settings
