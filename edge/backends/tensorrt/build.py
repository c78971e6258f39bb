"""Building TensorRT engines from a bundle's ONNX model (TensorRT 10 API), with the cache.

``build_engine`` is what ``pump-edge build-engine`` and the backend's first start call: it
returns the cached engine when its metadata matches, else parses the ONNX, sets one
optimisation profile (batch 1..max_batch, tuned for opt_batch), the workspace cap and the
precision (FP16 by default; INT8 calibrated by entropy on a folder of patches), builds with
``build_serialized_network`` and stores the engine with its metadata. A timing cache per
GPU and TensorRT version makes rebuilds (new bundle versions) much faster on a Jetson.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.backends.base import BackendError
from edge.backends.config import BackendConfig, Precision
from edge.backends.tensorrt.cache import (
    EngineKey,
    cached_engine_problem,
    engine_paths,
    read_metadata,
    store_engine,
    timing_cache_path,
    write_atomic,
)
from edge.backends.tensorrt.cuda import CudaDevice, HostDeviceBuffer, check
from shared.bundle import LoadedBundle
from shared.pixels import ColorPolicy, normalize_pixels

log = logging.getLogger(__name__)

MIN_BATCH = 1
CALIBRATION_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class BuildProgress:
    """One step of preparing an engine, for the ``building-engine`` status and the CLI."""

    stage: str  # cached | parsing | building | phase | writing | done
    message: str
    phase: str = ""  # TensorRT's phase name while building
    step: int = 0
    steps: int = 0


@dataclass(frozen=True)
class EngineInfo:
    """A ready engine file and what it was built for."""

    path: Path
    key: EngineKey
    built: bool  # False: taken from the cache
    metadata: dict[str, Any]


ProgressCallback = Callable[[BuildProgress], None]


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as error:
        raise ImportError(
            "the TensorRT backend needs the tensorrt package (Jetson: JetPack's python3-libnvinfer; x86: pip "
            "install 'tensorrt>=10,<11')"
        ) from error
    return trt


_LOGGER: Any = None


def trt_logger(trt: Any) -> Any:
    """The process's one TensorRT logger (TensorRT keeps the first it sees): to ``logging``, errors kept."""
    global _LOGGER
    if _LOGGER is not None:
        return _LOGGER

    severity = trt.ILogger.Severity
    levels = {
        severity.INTERNAL_ERROR: logging.CRITICAL,
        severity.ERROR: logging.ERROR,
        severity.WARNING: logging.WARNING,
        severity.INFO: logging.DEBUG,
        severity.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: collections.deque[str] = collections.deque(maxlen=20)

        def log(self, level: Any, message: str) -> None:
            python_level = levels.get(level, logging.INFO)
            if python_level >= logging.ERROR:
                self.errors.append(message)
            log.log(python_level, "TensorRT: %s", message)

    _LOGGER = _Logger()
    return _LOGGER


def recent_errors(trt: Any) -> str:
    errors = list(trt_logger(trt).errors)
    return "; ".join(errors[-5:]) if errors else "no error message from TensorRT"


def calibration_patches(bundle: LoadedBundle, directory: Path, max_count: int) -> tuple[np.ndarray, str]:
    """Calibration batch (N, C, P, P) float32 in [0, 1] from a folder of patch images, and its fingerprint.

    Takes ``directory/images`` when it exists (a patch set), files in name order, at most
    ``max_count``; images of another size than the model's patch are skipped.
    """
    spec = bundle.manifest.input
    folder = directory / "images" if (directory / "images").is_dir() else directory
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in CALIBRATION_SUFFIXES)[:max_count]
    color = ColorPolicy.GRAY if spec.color == "gray" else ColorPolicy.KEEP
    patches, digest, skipped = [], hashlib.sha256(), 0
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            skipped += 1
            continue
        try:
            pixels = normalize_pixels(image, color)
        except ValueError:
            skipped += 1
            continue
        if pixels.shape[:2] != (spec.height_px, spec.width_px):
            skipped += 1
            continue
        patches.append(pixels)
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    if not patches:
        raise BackendError(
            f"int8 calibration: no usable {spec.height_px}x{spec.width_px} patch images in {folder} ({skipped} skipped)"
        )
    if skipped:
        log.warning(
            "int8 calibration: skipped %d of %d files in %s (unreadable or wrong size)", skipped, len(files), folder
        )
    stack = np.stack(patches).astype(np.float32) / np.float32(255.0)
    batch = stack[:, None] if stack.ndim == 3 else stack.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch), digest.hexdigest()[:16]


def engine_key(
    bundle: LoadedBundle, config: BackendConfig, device: CudaDevice, tensorrt_version: str, calibration: str = ""
) -> EngineKey:
    spec = bundle.manifest.input
    return EngineKey(
        bundle_sha256=bundle.manifest.model_sha256,
        model_name=bundle.manifest.name,
        input_shape=(spec.channels, spec.height_px, spec.width_px),
        gpu_name=device.name,
        compute_capability=device.compute_capability,
        tensorrt_version=tensorrt_version,
        precision=config.precision.value,
        min_batch=MIN_BATCH,
        opt_batch=config.opt_batch,
        max_batch=config.max_batch,
        workspace_mb=config.workspace_mb,
        calibration=calibration,
    )


def build_engine(
    bundle: LoadedBundle,
    config: BackendConfig,
    progress_callback: ProgressCallback | None = None,
    *,
    device: CudaDevice | None = None,
    force: bool = False,
) -> EngineInfo:
    """A usable engine for ``bundle`` on this GPU: from the cache, or built now (minutes on a Jetson).

    ``force`` rebuilds even when the cache looks good (e.g. after it failed to deserialize).
    """
    trt = import_tensorrt()
    notify = progress_callback or (lambda progress: None)
    own_device = device is None
    device = device or CudaDevice(config.device_id)
    try:
        with device.active():
            calibration_batch, calibration = None, ""
            if config.precision is Precision.INT8:
                if config.calibration_dir is None:  # the validator requires it for kind tensorrt, not for auto
                    raise BackendError(
                        "tensorrt: precision int8 needs backend.calibration_dir (a folder of patch PNGs) "
                        "to calibrate the engine"
                    )
                calibration_batch, calibration = calibration_patches(
                    bundle, config.calibration_dir, config.calibration_max_patches
                )
            key = engine_key(bundle, config, device, trt.__version__, calibration)
            problem = None if not force else "rebuild forced"
            problem = problem or cached_engine_problem(config.engine_cache_dir, key)
            if problem is None:
                notify(BuildProgress("cached", f"using cached engine {engine_paths(config.engine_cache_dir, key)[0]}"))
                return EngineInfo(
                    engine_paths(config.engine_cache_dir, key)[0],
                    key,
                    False,
                    read_metadata(config.engine_cache_dir, key),
                )
            if problem != "no cached engine":
                log.warning("refusing cached engine %s: %s; rebuilding", key.stem, problem)
            started = time.monotonic()
            with warnings.catch_warnings():
                # TensorRT >= 10.1 deprecates the weak-typing flags and calibrators used here on purpose:
                # JetPack 6 ships TensorRT 10.3, and the strongly typed path needs ModelOpt-converted models.
                warnings.simplefilter("ignore", DeprecationWarning)
                serialized = _build(trt, bundle, config, key, device, calibration_batch, notify)
            seconds = time.monotonic() - started
            notify(BuildProgress("writing", f"built in {seconds:.0f} s; writing {key.stem}"))
            extra = {
                "built_at": datetime.now(timezone.utc).isoformat(),
                "build_s": round(seconds, 3),
                "bundle_version": bundle.manifest.version,
                "bundle_task": bundle.manifest.task,
            }
            path = store_engine(config.engine_cache_dir, key, serialized, extra)
            notify(BuildProgress("done", f"engine ready: {path}"))
            return EngineInfo(path, key, True, read_metadata(config.engine_cache_dir, key))
    finally:
        if own_device:
            device.release()


def _build(
    trt: Any,
    bundle: LoadedBundle,
    config: BackendConfig,
    key: EngineKey,
    device: CudaDevice,
    calibration_batch: np.ndarray | None,
    notify: ProgressCallback,
) -> Any:
    if key.precision != Precision.FP32.value and not hasattr(trt.BuilderFlag, "FP16"):
        raise BackendError(
            f"TensorRT {trt.__version__} has no FP16/INT8 builder flags (TensorRT 11 builds strongly typed "
            "networks only): set backend.precision = 'fp32', or use TensorRT 10 (JetPack 6)"
        )
    logger = trt_logger(trt)
    notify(BuildProgress("parsing", f"parsing {bundle.model_path.name}"))
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle.model_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {bundle.model_path}: {errors or recent_errors(trt)}")
    input_names = [network.get_input(i).name for i in range(network.num_inputs)]
    if input_names != [bundle.manifest.input.name]:
        raise BackendError(f"{bundle.model_path}: inputs {input_names}, bundle declares {bundle.manifest.input.name!r}")

    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mb << 20)
    channels, height, width = key.input_shape
    profile = builder.create_optimization_profile()
    profile.set_shape(
        bundle.manifest.input.name,
        (key.min_batch, channels, height, width),
        (key.opt_batch, channels, height, width),
        (key.max_batch, channels, height, width),
    )
    builder_config.add_optimization_profile(profile)
    calibrator = None
    if key.precision in (Precision.FP16.value, Precision.INT8.value):
        builder_config.set_flag(trt.BuilderFlag.FP16)  # int8 too: layers without int8 kernels fall back to fp16
    if key.precision == Precision.INT8.value:
        assert calibration_batch is not None
        batch_size = min(key.opt_batch, len(calibration_batch))
        calibration_profile = builder.create_optimization_profile()  # calibration runs at one fixed shape
        fixed = (batch_size, channels, height, width)
        calibration_profile.set_shape(bundle.manifest.input.name, fixed, fixed, fixed)
        builder_config.set_flag(trt.BuilderFlag.INT8)
        cache_file = config.engine_cache_dir / f"{key.stem}.calibration"
        calibrator = make_calibrator(trt, device, calibration_batch, batch_size, cache_file)
        builder_config.int8_calibrator = calibrator
        builder_config.set_calibration_profile(calibration_profile)
    timing_file = timing_cache_path(config.engine_cache_dir, key)
    timing_cache = _attach_timing_cache(builder_config, timing_file)
    if hasattr(trt, "IProgressMonitor"):
        builder_config.progress_monitor = make_progress_monitor(trt, notify)
    notify(BuildProgress("building", f"building a {key.precision} engine for {key.gpu_name} (minutes on a Jetson)"))
    try:
        serialized = builder.build_serialized_network(network, builder_config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine for {bundle.model_path}: {recent_errors(trt)}")
    if timing_cache is not None:
        try:
            config.engine_cache_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(timing_file, builder_config.get_timing_cache().serialize())
        except (OSError, AttributeError, TypeError) as error:  # an optimisation only: never fail the build
            log.warning("could not save the TensorRT timing cache %s: %s", timing_file, error)
    return serialized


def _attach_timing_cache(builder_config: Any, path: Path) -> Any:
    try:
        blob = path.read_bytes() if path.is_file() else b""
        cache = builder_config.create_timing_cache(blob)
        builder_config.set_timing_cache(cache, False)
        return cache
    except Exception as error:  # a stale or foreign timing cache must never block a build
        log.warning("ignoring TensorRT timing cache %s: %s", path, error)
        return None


def make_progress_monitor(trt: Any, notify: ProgressCallback) -> Any:
    """A ``trt.IProgressMonitor`` that forwards phases and steps; exceptions never reach TensorRT."""

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            self._send(BuildProgress("phase", f"{phase_name} started", phase_name, 0, num_steps))

        def step_complete(self, phase_name: str, step: int) -> bool:
            self._send(BuildProgress("phase", phase_name, phase_name, step + 1, self.steps.get(phase_name, 0)))
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            steps = self.steps.pop(phase_name, 0)
            self._send(BuildProgress("phase", f"{phase_name} finished", phase_name, steps, steps))

        def _send(self, progress: BuildProgress) -> None:
            try:
                notify(progress)
            except Exception:  # a broken status publisher must not abort a 10-minute build
                log.exception("build progress callback failed")

    return _Monitor()


def make_calibrator(trt: Any, device: CudaDevice, batch: np.ndarray, batch_size: int, cache_file: Path) -> Any:
    """An entropy calibrator (``IInt8EntropyCalibrator2``) feeding ``batch`` in fixed-size chunks."""
    runtime = device.runtime

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.position = 0
            self.buffer: HostDeviceBuffer | None = HostDeviceBuffer(runtime, (batch_size, *batch.shape[1:]), np.float32)

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.buffer is None or self.position + batch_size > len(batch):
                return None  # calibration data exhausted (a partial last batch is dropped)
            np.copyto(self.buffer.host, batch[self.position : self.position + batch_size])
            kind = runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
            check(
                runtime.cudaMemcpy(self.buffer.device_ptr, self.buffer.host_ptr, self.buffer.nbytes, kind),
                "cudaMemcpy",
            )
            self.position += batch_size
            return [self.buffer.device_ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_file, cache)  # TensorRT hands a buffer; write it as is

        def free(self) -> None:
            if self.buffer is not None:
                self.buffer.free()
                self.buffer = None

    return _Calibrator()
