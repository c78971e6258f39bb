"""``pump-edge build-engine``: build (or find) a bundle's TensorRT engine ahead of the station's first start.

The engine lands in the cache the station reads (``backend.engine_cache_dir`` under ``data_dir``),
keyed by the same settings (precision, batch sizes, workspace), so build with the station's own
config. A build takes minutes on a Jetson; the progress display shows TensorRT's phases.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edge.backends import BackendConfig, BackendKind, BuildProgress, EngineInfo, Precision, build_engine
from edge.backends.device import cuda_device_count, cuda_python_importable, tensorrt_importable
from edge.config import EdgeSettings
from edge.doctor import backend_config
from shared.bundle import load_bundle

NEEDS = "needs TensorRT and an NVIDIA GPU"


def tensorrt_missing() -> str | None:
    """Why no engine can be built on this machine (None: TensorRT, cuda-python and a GPU are present)."""
    missing = []
    if not tensorrt_importable():
        missing.append("no tensorrt Python package (Jetson: sudo apt install python3-libnvinfer)")
    if not cuda_python_importable():
        missing.append("no cuda-python (pip install 'cuda-python==12.6.*' on JetPack 6)")
    if cuda_device_count() == 0:
        missing.append("no CUDA GPU visible")
    if not missing:
        return None
    return (
        f"build-engine {NEEDS}: {'; '.join(missing)}. Without them the station runs the bundle on ONNX Runtime "
        "(backend.kind = auto or onnxruntime) and needs no engine."
    )


def engine_config(settings: EdgeSettings, precision: Precision | None, calibration: Path | None) -> BackendConfig:
    """The station's backend settings with the command's overrides, validated as TensorRT's (int8: calibration)."""
    config = backend_config(settings)
    values = {**config.model_dump(), "kind": BackendKind.TENSORRT}
    if precision is not None:
        values["precision"] = precision
    if calibration is not None:
        values["calibration_dir"] = calibration
    return BackendConfig.model_validate(values)


def build_with_progress(bundle_dir: Path, config: BackendConfig, force: bool, console: Console) -> EngineInfo:
    """Load the bundle (checksum verified) and build its engine, showing TensorRT's progress."""
    bundle = load_bundle(bundle_dir)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task(f"{bundle.manifest.name} {bundle.manifest.version}: preparing", total=None)

        def on_progress(step: BuildProgress) -> None:
            if step.stage == "phase" and step.steps:
                progress.update(overall, description=step.phase, total=step.steps, completed=step.step)
            else:
                progress.update(overall, description=step.message)
                if step.stage in ("cached", "done"):
                    progress.update(overall, total=1, completed=1)

        return build_engine(bundle, config, on_progress, force=force)
