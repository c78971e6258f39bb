"""``pump-edge bench``: how fast the station runs on this machine, and where the time goes.

One run, the same frames for every measurement:

- **pipeline**: the real :class:`~edge.runtime.station.Station` (``once``) on a folder of
  frames — source thread → bounded queue → inference worker → publisher with its durable
  outbox → uncertain-patch store — against an embedded Mosquitto on a free loopback port
  (without the binary, results go to the outbox only and the report says so). Frames/s is
  counted from the start of the source thread to the last finished frame (start-up, bundle
  loading and warm-up excluded); latency p50/p99 is the station's own (capture → published,
  including time waiting in the queue, which blocks on a finite folder).
- **bare**: the same frames, pre-tiled, through the same inference backends only.
- **naive**: the same model at batch 1 per patch (and eager PyTorch at batch 1, rebuilt from
  the bundle's ``spec`` with random weights, when ``benchmarks/edge_vs_eager.py`` runs the bench).
- **stages**: the station's per-stage times plus the decode time of the frames.
- **memory**: peak RSS of the process during the pipeline run.
- **ROI scaling**: one inspection (tile → infer → postprocess) of a 4000² frame with a 1920² and
  a 3840² ROI.

Everything the station would keep (outbox, store, broker) lives in a temporary folder; only a
TensorRT engine cache is shared with the configured ``data_dir`` (so no engine is rebuilt).
No edge module imports torch or the training package: eager PyTorch is measured only when the
training side's ``benchmarks/edge_vs_eager.py`` hands the measurement in (:data:`EagerMeasure`).
"""

from __future__ import annotations

import os
import platform
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.backends import InferenceBackend, create_backend
from edge.bench_frames import (
    decode_and_tile,
    peak_rss_mb,
    process_peak_rss_mb,
    reset_peak_rss,
    synthetic_pump_frame,
    write_frames,
)
from edge.bench_report import report_tables  # noqa: F401 - re-exported for the CLI
from edge.config import EdgeSettings
from edge.postprocess import Thresholds, select_for_segmenter
from edge.postprocess.scores import sigmoid
from edge.publish.broker import LOOPBACK, find_mosquitto, free_port
from edge.runtime.inspector import Inspector
from edge.runtime.station import Station, load_station_bundles, resolve_data_path
from edge.runtime.stats import RuntimeStats
from edge.sources.base import Frame, FrameSource
from edge.sources.decode import IMAGE_SUFFIXES
from edge.tiling import FrameTiler, RoiConfig
from shared.bundle import LoadedBundle

TimePerPatch = Callable[[list[np.ndarray], Callable[[np.ndarray], None]], float]
EagerMeasure = Callable[
    [dict[str, dict[str, Any]], list[np.ndarray], int, TimePerPatch], tuple[float | None, dict[str, Any]]
]
"""(bundle specs by task, frames' patch batches, seed, timer) -> (seconds or None, details)."""
EAGER_ELSEWHERE = "measured by benchmarks/edge_vs_eager.py on a training install (the edge has no torch)"

BENCH_SCHEMA_VERSION = 1
DEFAULT_FRAME_SIZE = (3200, 2224)  # the synthetic pump frames' size (training.synth)
ROI_FRAME_PX = 4000
ROI_SIZES_PX = (1920, 3840)
STAGES = ("decode", "tile", "classify", "segment", "postprocess", "publish", "log")

# Targets of issue §8; ``op`` is how the measured value compares with ``target``.
TARGET_PIPELINE_OVER_BARE = 0.9
TARGET_PIPELINE_OVER_NAIVE = 3.0
TARGET_PEAK_RSS_MB = 1024.0
TARGET_ROI_COST_PER_TILE = 4.2 / 4.0  # 4x the tiles may cost at most 4.2x the time


@dataclass
class BenchConfig:
    """What one bench run measures; ``settings`` supplies bundles, geometry, backend, pipeline."""

    settings: EdgeSettings
    frames: int = 16
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE
    frames_dir: Path | None = None  # None: generate ``frames`` synthetic frames
    seed: int = 0
    quick: bool = False
    naive_frames: int = 2  # frames whose patches run one by one (slow by design)
    roi_repeats: int = 3
    eager: bool = True
    eager_measure: EagerMeasure | None = None  # handed in by benchmarks/edge_vs_eager.py (needs torch)
    broker: bool = True  # embedded Mosquitto when the binary is there
    progress: Callable[[str], None] = field(default=lambda message: None)

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"--frames must be at least 1, got {self.frames}")
        if min(self.frame_size) < 1:
            raise ValueError(f"frame size must be positive, got {self.frame_size}")
        if self.frames_dir is not None and not Path(self.frames_dir).is_dir():
            raise ValueError(f"--frames-dir {self.frames_dir}: not a folder")
        if self.quick:
            self.naive_frames, self.roi_repeats, self.eager = 1, 1, False


# --- the pipeline ---------------------------------------------------------------------------


class _TimedStats(RuntimeStats):
    """RuntimeStats that also remember when each frame finished and how long its processing took."""

    def __init__(self) -> None:
        super().__init__()
        self.done_at: list[float] = []
        self.processing_s: list[float] = []

    def frame_done(self, ng: bool, latency_ms: float, stages: dict[str, float]) -> None:
        super().frame_done(ng, latency_ms, stages)
        with self._lock:
            self.done_at.append(time.perf_counter())
            self.processing_s.append(sum(stages.values()))


class _TimedStation(Station):
    """The station, plus the moment its source thread starts (frames/s counts from there)."""

    source_started: float | None = None

    def _source_loop(self, source: FrameSource) -> None:
        self.source_started = time.perf_counter()
        super()._source_loop(source)


def pipeline_settings(base: EdgeSettings, frames_dir: Path, work_dir: Path, broker: bool) -> EdgeSettings:
    """``base`` pointed at the frames, a throw-away data folder and a loopback broker.

    ``broker`` False points the publisher at a closed loopback port: results still go through
    the durable outbox (timed as publish) but are never sent.
    """
    engines = resolve_data_path(base.backend.engine_cache_dir, Path(base.data_dir)).resolve()  # keep built engines
    mqtt = base.mqtt.model_copy(
        update={
            "host": None if broker else LOOPBACK,
            "port": 0 if broker else free_port(),
            "tls": None,
            "username": None,
            "password": None,
            "password_file": None,
            "outbox_path": None,
        }
    )
    return base.model_copy(
        update={
            "data_dir": work_dir / "data",
            "source": base.source.model_copy(
                update={"spec": f"folder:{frames_dir}", "watch": False, "max_frames": None}
            ),
            "backend": base.backend.model_copy(update={"engine_cache_dir": engines}),
            "mqtt": mqtt,
            "pipeline": base.pipeline.model_copy(
                update={"backpressure": "block", "drain_timeout_s": 30.0 if broker else 1.0}
            ),
        }
    )


@contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """Station.run installs SIGTERM/SIGINT handlers in the main thread; put the old ones back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_pipeline(settings: EdgeSettings, expected_frames: int) -> dict[str, Any]:
    """Run the station once over its folder; frames/s, latency, per-stage ms and peak RSS."""
    station = _TimedStation(settings, once=True)
    stats = station.stats = _TimedStats()
    reset = reset_peak_rss()
    started = time.perf_counter()
    with _keep_signal_handlers():
        code = station.run()
    done = stats.frames_done
    first = station.source_started if station.source_started is not None else started
    seconds = (stats.done_at[-1] - first) if done else None
    p50, p99 = stats.latency_percentiles()
    processing = np.asarray(stats.processing_s, dtype=np.float64) * 1000.0
    return {
        "exit_code": code,
        "frames": done,
        "frames_expected": expected_frames,
        "errors": stats.errors,
        "frames_ng": stats.frames_ng,
        "uncertain_logged": stats.uncertain_logged,
        "startup_s": round(first - started, 3),
        "seconds": _round(seconds, 3),
        "fps": _fps(done, seconds) or 0.0,
        "latency_ms": {"p50": _round(p50), "p99": _round(p99)},
        "processing_ms": {
            "p50": _round(float(np.percentile(processing, 50))) if done else None,
            "p99": _round(float(np.percentile(processing, 99))) if done else None,
        },
        "stage_ms": {stage: 1000.0 * total / done for stage, total in stats.stage_seconds().items()} if done else {},
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_scope": "pipeline run (peak mark reset before it)" if reset else "process so far (no reset)",
    }


# --- bare and naive inference ----------------------------------------------------------------


def open_backends(settings: EdgeSettings, bundles: dict[str, LoadedBundle]) -> dict[str, InferenceBackend]:
    """The station's backends (same factory, same config), warmed up like the station's."""
    config = settings.backend
    backends: dict[str, InferenceBackend] = {}
    try:
        for task, bundle in bundles.items():
            backends[task] = create_backend(None, bundle, config)
            backends[task].warmup()
    except BaseException:
        close_backends(backends)
        raise
    return backends


def close_backends(backends: dict[str, InferenceBackend]) -> None:
    for backend in backends.values():
        backend.close()


def infer_frame(batch: np.ndarray, backends: dict[str, InferenceBackend], cascade: float | None) -> None:
    """What the inspector runs on one frame's batch: classifier, then the segmenter (cascade or all)."""
    classifier, segmenter = backends.get("classifier"), backends.get("segmenter")
    logits = classifier.infer(batch) if classifier is not None else None
    if segmenter is None:
        return
    if cascade is not None and logits is not None:
        batch = batch[select_for_segmenter(sigmoid(logits[:, 0]), len(batch), cascade)]
    segmenter.infer(batch)


def time_bare(batches: list[np.ndarray], backends: dict[str, InferenceBackend], cascade: float | None) -> float:
    """Seconds for all pre-tiled batches through the backends (batched, as the station calls them)."""
    started = time.perf_counter()
    for batch in batches:
        infer_frame(batch, backends, cascade)
    return time.perf_counter() - started


def time_per_patch(batches: list[np.ndarray], run_one: Callable[[np.ndarray], None]) -> float:
    """Seconds for every patch of ``batches`` through ``run_one`` at batch 1 (after one warm-up call)."""
    run_one(batches[0][:1])
    started = time.perf_counter()
    for batch in batches:
        for index in range(len(batch)):
            run_one(batch[index : index + 1])
    return time.perf_counter() - started


def naive_backend_runner(backends: dict[str, InferenceBackend]) -> Callable[[np.ndarray], None]:
    def run_one(patch: np.ndarray) -> None:
        for backend in backends.values():
            backend.infer(patch)

    return run_one


def measure_eager(
    measure: EagerMeasure | None, bundles: dict[str, LoadedBundle], batches: list[np.ndarray], seed: int
) -> tuple[float | None, dict[str, Any]]:
    """Seconds of eager PyTorch at batch 1 over ``batches``' patches, or None and why not.

    The edge has no torch and never imports the training package: the measurement is handed in
    (``BenchConfig.eager_measure``) by ``benchmarks/edge_vs_eager.py``, which runs on a training install.
    """
    if measure is None:
        return None, {"status": "skipped", "reason": EAGER_ELSEWHERE}
    specs = {task: dict(bundle.manifest.spec) for task, bundle in bundles.items()}
    return measure(specs, batches, seed, time_per_patch)


# --- ROI scaling ------------------------------------------------------------------------------


def measure_roi_scaling(
    settings: EdgeSettings,
    bundles: dict[str, LoadedBundle],
    backends: dict[str, InferenceBackend],
    seed: int,
    repeats: int,
    frame_px: int = ROI_FRAME_PX,
    roi_sizes: tuple[int, ...] = ROI_SIZES_PX,
) -> dict[str, Any]:
    """Inspector time (tile → infer → postprocess) of one ``frame_px``² frame per centred ROI size (best of repeats)."""
    image = synthetic_pump_frame(frame_px, frame_px, np.random.default_rng(seed + 1))
    thresholds = station_thresholds(settings, bundles)
    first = next(iter(bundles.values())).manifest
    frame = Frame("roi-bench", "bench", 0, datetime.now(timezone.utc), image)
    rows = []
    for side in roi_sizes:
        offset = (frame_px - side) // 2
        roi = RoiConfig(x=offset, y=offset, width=side, height=side)
        tiler = FrameTiler(settings.geometry, first.input, roi)
        inspector = Inspector(
            tiler,
            thresholds,
            settings.postprocess,
            backends.get("classifier"),
            backends.get("segmenter"),
            settings.pipeline.cascade,
        )
        inspector.inspect(frame)  # warm-up: a new batch size
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            inspector.inspect(frame)
            times.append(time.perf_counter() - started)
        rows.append({"roi_px": side, "tiles": tiler.layout(frame_px, frame_px).count, "seconds": round(min(times), 4)})
    small, large = rows[0], rows[-1]
    tile_ratio = large["tiles"] / small["tiles"]
    time_ratio = large["seconds"] / small["seconds"] if small["seconds"] > 0 else float("nan")
    return {
        "frame_px": frame_px,
        "repeats": repeats,
        "rois": rows,
        "tile_ratio": round(tile_ratio, 3),
        "time_ratio": round(time_ratio, 3),
        "cost_per_tile_ratio": round(time_ratio / tile_ratio, 3),
    }


# --- the report -------------------------------------------------------------------------------


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def _target(name: str, value: float | None, op: str, target: float, skipped: str | None = None) -> dict[str, Any]:
    if value is None or skipped is not None or not np.isfinite(value):
        return {"name": name, "value": None, "op": op, "target": target, "passed": None, "note": skipped or "n/a"}
    passed = value >= target if op == ">=" else value <= target
    return {"name": name, "value": round(float(value), 3), "op": op, "target": target, "passed": bool(passed)}


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and pass/fail (None: not measured)."""
    ratios = result["ratios"]
    eager = result["eager"]
    return [
        _target("pipeline / bare fps", ratios["pipeline_over_bare"], ">=", TARGET_PIPELINE_OVER_BARE),
        _target(
            "pipeline / naive fps (same backend, batch 1)",
            ratios["pipeline_over_naive"],
            ">=",
            TARGET_PIPELINE_OVER_NAIVE,
        ),
        _target(
            "pipeline / naive fps (eager PyTorch, batch 1)",
            ratios.get("pipeline_over_eager"),
            ">=",
            TARGET_PIPELINE_OVER_NAIVE,
            None if eager["status"] == "measured" else eager["reason"],
        ),
        _target("peak RSS MiB (pipeline)", result["pipeline"]["peak_rss_mb"], "<=", TARGET_PEAK_RSS_MB),
        _target(
            "ROI 3840² / 1920²: time ratio / tile ratio",
            result["roi_scaling"]["cost_per_tile_ratio"],
            "<=",
            TARGET_ROI_COST_PER_TILE,
        ),
    ]


def _fps(frames: int, seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return frames / seconds if seconds > 0 else 0.0


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def station_thresholds(settings: EdgeSettings, bundles: dict[str, LoadedBundle]) -> Thresholds:
    """The thresholds the station derives from its bundles and ``[postprocess]``."""
    manifests = {task: bundle.manifest for task, bundle in bundles.items()}
    return Thresholds.from_bundles(manifests.get("classifier"), manifests.get("segmenter"), settings.postprocess)


def measure_inference(
    config: BenchConfig, settings: EdgeSettings, bundles: dict[str, LoadedBundle], batches: list[np.ndarray]
) -> dict[str, Any]:
    """Bare (batched), naive (batch 1 per patch) and ROI scaling on one set of the station's backends."""
    backends = open_backends(settings, bundles)
    try:
        config.progress("bare backend inference")
        cascade = station_thresholds(settings, bundles).cascade if settings.pipeline.cascade else None
        bare_s = time_bare(batches, backends, cascade)
        naive_batches = batches[: config.naive_frames]
        config.progress(f"naive: batch 1 per patch on {len(naive_batches)} frame(s)")
        naive_s = time_per_patch(naive_batches, naive_backend_runner(backends))
        config.progress("ROI scaling")
        roi = measure_roi_scaling(settings, bundles, backends, config.seed, config.roi_repeats)
        return {
            "bare": {"frames": len(batches), "seconds": round(bare_s, 3), "fps": _fps(len(batches), bare_s)},
            "naive": {
                "frames": len(naive_batches),
                "patches": sum(len(batch) for batch in naive_batches),
                "seconds": round(naive_s, 3),
                "fps": _fps(len(naive_batches), naive_s),
            },
            "roi_scaling": roi,
            "backends": {task: backend.describe() for task, backend in backends.items()},
            "providers": {task: list(getattr(backend, "providers", [])) for task, backend in backends.items()},
        }
    finally:
        close_backends(backends)


def measure_eager_naive(config: BenchConfig, bundles: dict[str, LoadedBundle], batches: list[np.ndarray]) -> dict:
    frames = batches[: config.naive_frames]
    if not config.eager:
        reason = "--quick" if config.quick else EAGER_ELSEWHERE
        eager_s, eager = None, {"status": "skipped", "reason": reason}
    else:
        config.progress("naive eager PyTorch (batch 1)")
        eager_s, eager = measure_eager(config.eager_measure, bundles, frames, config.seed)
    return {**eager, "frames": len(frames), "seconds": _round(eager_s, 3), "fps": _fps(len(frames), eager_s)}


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Measure everything the module docstring lists; returns the JSON-ready report."""
    bundles, geometry = load_station_bundles(config.settings)
    engines = resolve_data_path(config.settings.backend.engine_cache_dir, Path(config.settings.data_dir)).resolve()
    settings = config.settings.model_copy(
        update={
            "geometry": geometry,
            "backend": config.settings.backend.model_copy(update={"engine_cache_dir": engines}),
        }
    )
    broker = config.broker and find_mosquitto() is not None
    notes = []
    if not broker:
        notes.append(
            "no broker (mosquitto not installed, or --no-broker): results went through the durable outbox "
            "but were not sent, so publish time excludes the network"
        )
    load_before = machine_info()["load_average_1m"]
    with tempfile.TemporaryDirectory(prefix="pump-bench-") as tmp:
        work = Path(tmp)
        frames_dir = config.frames_dir
        if frames_dir is None:
            width, height = config.frame_size
            config.progress(f"writing {config.frames} synthetic {width}x{height} frames")
            frames_dir = work / "frames"
            write_frames(frames_dir, config.frames, config.frame_size, config.seed)
        expected = sum(1 for path in frames_dir.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        config.progress("pipeline: the station (--once) on the frames")
        pipeline = run_pipeline(pipeline_settings(settings, frames_dir, work, broker), expected)
        config.progress("decode + tile the same frames")
        tiler = FrameTiler(geometry, next(iter(bundles.values())).manifest.input, settings.roi)
        decoded = decode_and_tile(frames_dir, settings, tiler)
    if not decoded.batches:
        raise ValueError(f"no readable frames in {frames_dir}")
    if decoded.bad:
        notes.append(f"{decoded.bad} unreadable file(s) in the frames folder were skipped")
    inference = measure_inference(config, settings, bundles, decoded.batches)
    eager = measure_eager_naive(config, bundles, decoded.batches)
    stage_ms = {"decode": 1000.0 * float(np.mean(decoded.decode_s)), **pipeline.pop("stage_ms")}
    machine = machine_info()
    result = {
        "schema_version": BENCH_SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_1m": {"before": load_before, "after": machine["load_average_1m"]}},
        "setup": {
            "frames": len(decoded.batches),
            "frame_size": list(decoded.size),
            "frames_dir": str(config.frames_dir) if config.frames_dir else "generated synthetic pump frames",
            "seed": config.seed,
            "quick": config.quick,
            "tiles_per_frame": int(len(decoded.batches[0])),
            "geometry": geometry.model_dump(),
            "cascade": settings.pipeline.cascade,
            "backends": inference["backends"],
            "providers": inference["providers"],
            "broker": "embedded mosquitto on loopback" if broker else "none (outbox only)",
        },
        "models": {
            task: {"name": b.manifest.name, "version": b.manifest.version, "spec": b.manifest.spec}
            for task, b in bundles.items()
        },
        "pipeline": pipeline,
        "bare": inference["bare"],
        "naive": inference["naive"],
        "eager": eager,
        "stage_ms": {stage: round(stage_ms.get(stage, 0.0), 2) for stage in STAGES},
        "memory": {"pipeline_peak_rss_mb": pipeline["peak_rss_mb"], "process_peak_rss_mb": process_peak_rss_mb()},
        "roi_scaling": inference["roi_scaling"],
        "ratios": {
            "pipeline_over_bare": _ratio(pipeline["fps"], inference["bare"]["fps"]),
            "pipeline_over_naive": _ratio(pipeline["fps"], inference["naive"]["fps"]),
            "pipeline_over_eager": _ratio(pipeline["fps"], eager["fps"]),
        },
        "notes": notes,
    }
    result["targets"] = evaluate_targets(result)
    return result
