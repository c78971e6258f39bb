"""Start-up pieces of a station: named steps, bundle loading and checks, paths under the data dir."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from edge.config import EdgeSettings
from shared.bundle import LoadedBundle, load_bundle
from shared.config import GeometryConfig

log = logging.getLogger("pump.edge")


def software_version() -> str:
    try:
        return metadata.version("pumpinspect")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


@contextmanager
def startup_step(number: int, total: int, name: str):
    """Log one named start-up step with its duration (what an operator reads when start-up hangs)."""
    started = time.perf_counter()
    log.info("start-up %d/%d: %s ...", number, total, name)
    yield
    log.info("start-up %d/%d: %s done (%.0f ms)", number, total, name, 1000 * (time.perf_counter() - started))


def resolve_data_path(path: Path, data_dir: Path) -> Path:
    return path if path.is_absolute() else data_dir / path


def load_station_bundles(settings: EdgeSettings) -> tuple[dict[str, LoadedBundle], GeometryConfig]:
    """Load and verify the configured bundles; returns them and the geometry in force.

    A bundle whose geometry differs from ``[geometry]`` is refused (it would see other patches
    than it was trained on) unless ``bundles.follow_bundle_geometry`` is set.
    """
    paths = {
        task: path
        for task, path in (("classifier", settings.bundles.classifier), ("segmenter", settings.bundles.segmenter))
        if path is not None
    }
    if not paths:
        raise ValueError("no model bundle configured: set bundles.classifier and/or bundles.segmenter (--classifier)")
    follow = settings.bundles.follow_bundle_geometry
    bundles = {task: load_bundle(path, None if follow else settings.geometry) for task, path in paths.items()}
    geometry = settings.geometry
    if follow:
        geometries = {task: bundle.manifest.geometry for task, bundle in bundles.items()}
        first = next(iter(geometries.values()))
        if any(g != first for g in geometries.values()):
            raise ValueError(f"bundles disagree on geometry: {geometries}")
        geometry = first
    for task, bundle in bundles.items():
        if bundle.manifest.task != task:
            raise ValueError(f"{paths[task]}: bundle task is {bundle.manifest.task!r}, configured as bundles.{task}")
    return bundles, geometry


def check_source_exists(settings: EdgeSettings) -> None:
    """A finite source that is not there is a configuration error (exit 2), not an empty run."""
    source = settings.source
    target = Path(source.target)
    if source.kind == "folder" and not source.watch and not target.is_dir():
        raise ValueError(f"source {source.spec}: folder not found (source.spec / --source)")
    if source.kind == "video" and not target.is_file():
        raise ValueError(f"source {source.spec}: video file not found (source.spec / --source)")
