"""Writing command outputs safely and making them explain themselves.

Every command writes into a temporary sibling folder and renames it into place at the
end, so a failed or interrupted run never leaves a half-written dataset, and an
existing output is only replaced when the caller asks for it. Each output folder gets
a record of what made it (config, seed, versions, input fingerprint).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

_VERSIONED = (
    "pumpinspect",
    "numpy",
    "opencv-python-headless",
    "pydantic",
    "torch",
    "torchvision",
    "segmentation-models-pytorch",
    "onnx",
    "onnxruntime",
)


class OutputExistsError(FileExistsError):
    """The output path exists and the caller did not ask to overwrite it."""


@contextlib.contextmanager
def atomic_output_dir(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder that becomes ``out_dir`` only if the block succeeds.

    On error the temporary folder is removed and ``out_dir`` is left as it was.
    With ``overwrite`` an existing ``out_dir`` is replaced (after the new one is complete).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(f"{out_dir} already exists; pass --overwrite to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and a rename (a PNG, never half-written); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape results (absent ones are omitted)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def provenance(command: str, config: Any, seed: int | None, inputs: dict[str, str] | None = None) -> dict:
    """What made an output: command, resolved config, seed, input fingerprints, versions, time."""
    return {
        "command": command,
        "argv": sys.argv,
        "seed": seed,
        "config": config,
        "inputs": inputs or {},
        "versions": package_versions(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
