"""The engine cache: file names and metadata that say exactly what an engine was built for.

An engine only runs on the TensorRT version and GPU model that built it, and only means
something for the bundle and settings it was built from. The key holds all of these; the
file name carries the readable part plus a hash of the whole key, and a JSON sidecar holds
the full key and the engine's sha256. An engine whose sidecar is missing or disagrees with
the key (a renamed file, a JetPack upgrade, a half-copied cache) is refused and rebuilt.
Pure: nothing here imports TensorRT, so it is tested on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ENGINE_SUFFIX = ".engine"
METADATA_SUFFIX = ".json"
CACHE_FORMAT = 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; two builds with equal keys are interchangeable."""

    bundle_sha256: str
    model_name: str
    input_shape: tuple[int, int, int]  # C, H, W
    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mb: int
    calibration: str = ""  # fingerprint of the int8 calibration set ('' otherwise)
    cache_format: int = CACHE_FORMAT

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["input_shape"] = list(self.input_shape)
        return values

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:10]

    @property
    def stem(self) -> str:
        """``<model>-<sha12>-<gpu>-sm<cc>-trt<version>-<precision>-b<opt>-<max>-<digest>``."""
        return "-".join(
            [
                _slug(self.model_name),
                self.bundle_sha256[:12],
                _slug(self.gpu_name),
                "sm" + self.compute_capability.replace(".", ""),
                "trt" + self.tensorrt_version,
                self.precision,
                f"b{self.opt_batch}-{self.max_batch}",
                self.digest,
            ]
        )


def engine_paths(cache_dir: Path, key: EngineKey) -> tuple[Path, Path]:
    """(engine file, metadata sidecar) for ``key`` in ``cache_dir``."""
    base = Path(cache_dir) / key.stem
    return base.with_name(base.name + ENGINE_SUFFIX), base.with_name(base.name + METADATA_SUFFIX)


def timing_cache_path(cache_dir: Path, key: EngineKey) -> Path:
    """TensorRT's timing cache for this GPU model and TensorRT version (shared by all bundles)."""
    name = f"timing-{_slug(key.gpu_name)}-sm{key.compute_capability.replace('.', '')}-trt{key.tensorrt_version}.cache"
    return Path(cache_dir) / name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_engine_problem(cache_dir: Path, key: EngineKey) -> str | None:
    """Why the cached engine for ``key`` must not be used, or None when it is good."""
    engine, metadata = engine_paths(cache_dir, key)
    if not engine.is_file():
        return "no cached engine"
    if not metadata.is_file():
        return f"{metadata.name} is missing (engine of unknown origin)"
    try:
        recorded = json.loads(metadata.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{metadata.name} is unreadable ({error})"
    if not isinstance(recorded, dict):
        return f"{metadata.name} is not a JSON object"
    wanted = key.as_dict()
    differing = [
        f"{name}: cached {recorded.get('key', {}).get(name)!r}, needed {value!r}"
        for name, value in wanted.items()
        if recorded.get("key", {}).get(name) != value
    ]
    if differing:
        return "built for something else (" + "; ".join(differing) + ")"
    if recorded.get("engine_sha256") != sha256_file(engine):
        return "engine file does not match the sha256 recorded when it was built"
    return None


def write_atomic(path: Path, data: Any) -> None:
    """Write any buffer (bytes, TensorRT's IHostMemory) to ``path`` via a temp file and rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def store_engine(cache_dir: Path, key: EngineKey, engine: Any, extra: dict[str, Any]) -> Path:
    """Write engine then sidecar atomically (a crash leaves no engine that passes the check)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    engine_path, metadata_path = engine_paths(cache_dir, key)
    metadata_path.unlink(missing_ok=True)
    write_atomic(engine_path, engine)
    record = {"key": key.as_dict(), "engine_sha256": sha256_file(engine_path), **extra}
    write_atomic(metadata_path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return engine_path


def read_metadata(cache_dir: Path, key: EngineKey) -> dict[str, Any]:
    """The sidecar of a cached engine (call after :func:`cached_engine_problem` said it is good)."""
    return json.loads(engine_paths(cache_dir, key)[1].read_text(encoding="utf-8"))
