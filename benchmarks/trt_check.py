"""TensorRT backend check on a GPU machine: build, cache, agreement with ONNX Runtime, timings.

For each bundle and precision: build the engine (timed), open it again from the cache,
run the conformance checks against ONNX Runtime on CPU (batch sizes 1, 7, opt, max and one
above max so it splits; an empty batch; determinism; a call from a thread that did not
build the engine), then time TensorRT and ONNX Runtime at batch 1, 64 and max. It also
times the CPU side of a frame (tiling a 3200 x 2224 frame, postprocessing with a defect).
Prints JSON and a table; exits 1 when a check fails.

    python benchmarks/trt_check.py --bundle demo-out/bundles/classifier --bundle demo-out/bundles/segmenter
    python benchmarks/trt_check.py --threshold-bundles      # hand-built models (needs onnx)
    python benchmarks/trt_check.py --threshold-bundles --precisions fp32,fp16 --iterations 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.backends import BackendConfig, create_backend  # noqa: E402
from edge.backends.device import cuda_device_count, tensorrt_usable  # noqa: E402
from edge.backends.tensorrt import build_engine  # noqa: E402
from edge.postprocess import PostprocessConfig, Thresholds, analyze_frame, sigmoid  # noqa: E402
from edge.tiling import FrameTiler  # noqa: E402
from shared.bundle import LoadedBundle, load_bundle  # noqa: E402
from shared.config import GeometryConfig  # noqa: E402

# Probability tolerance TensorRT vs ONNX Runtime (fp32 engines may use TF32 on Ampere and later).
TOLERANCE = {"fp32": 2e-3, "fp16": 2e-2, "int8": 1e-1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, action="append", default=[], help="bundle folder (repeatable)")
    parser.add_argument("--threshold-bundles", action="store_true", help="also check the hand-built test bundles")
    parser.add_argument("--precisions", default="fp32,fp16", help="comma list of fp32, fp16, int8 (default fp32,fp16)")
    parser.add_argument("--calibration-dir", type=Path, default=None, help="int8: folder of patch PNGs")
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine cache (default: a temporary folder)")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per measurement (default 50)")
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--opt-batch", type=int, default=64)
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if not args.bundle and not args.threshold_bundles:
        parser.error("give --bundle DIR and/or --threshold-bundles")
    return args


def patches(count: int, side: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(40, 200, (count, channels, side, side)).astype(np.uint8)
    pixels[::3, :, side // 3 : side // 3 + 5, side // 2 : side // 2 + 6] = 245  # bright spots: both classes occur
    return pixels.astype(np.float32) / np.float32(255.0)


def timed(call, iterations: int) -> dict[str, float]:
    for _ in range(3):  # warm-up: lazy allocation, clocks (Jetson DVFS)
        call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e3)
    samples.sort()
    return {"median_ms": statistics.median(samples), "p90_ms": samples[int(0.9 * (len(samples) - 1))]}


def check_backend(trt, ort, batch_sizes: list[int], tolerance: float, threshold: float, side: int, channels: int):
    """Conformance of ``trt`` against ``ort``; returns (checks, failures)."""
    checks, failures = {}, []
    for size in batch_sizes:
        batch = patches(size, side, channels, seed=size)
        got, want = trt.infer(batch), ort.infer(batch)
        if got.shape != want.shape or got.dtype != np.float32:
            failures.append(f"batch {size}: shape {got.shape}/{got.dtype}, expected {want.shape}/float32")
            continue
        diff = float(np.abs(sigmoid(got) - sigmoid(want)).max()) if size else 0.0
        agree = float(np.mean((sigmoid(got) > threshold) == (sigmoid(want) > threshold))) if size else 1.0
        checks[f"batch_{size}"] = {"max_prob_diff": diff, "decision_agreement": agree}
        if diff > tolerance:
            failures.append(f"batch {size}: probabilities differ by {diff:.4g} > {tolerance}")
    batch = patches(16, side, channels, seed=99)
    first, second = trt.infer(batch), trt.infer(batch)
    checks["deterministic"] = bool(np.array_equal(first, second))
    if not checks["deterministic"]:
        failures.append("two calls on the same batch differ")
    from_thread: dict[str, np.ndarray] = {}
    worker = threading.Thread(target=lambda: from_thread.setdefault("out", trt.infer(batch)))
    worker.start()
    worker.join()
    checks["other_thread"] = "out" in from_thread and bool(np.array_equal(from_thread["out"], first))
    if not checks["other_thread"]:
        failures.append("inference from another thread failed or differs")
    return checks, failures


def check_bundle(bundle: LoadedBundle, precision: str, args: argparse.Namespace, cache: Path) -> dict:
    manifest = bundle.manifest
    side, channels = manifest.input.height_px, manifest.input.channels
    config = BackendConfig(
        kind="tensorrt",
        precision=precision,
        engine_cache_dir=cache,
        max_batch=args.max_batch,
        opt_batch=args.opt_batch,
        calibration_dir=args.calibration_dir,
    )
    record: dict = {"bundle": f"{manifest.name}@{manifest.version}", "task": manifest.task, "precision": precision}
    stages: list[str] = []
    started = time.perf_counter()
    info = build_engine(bundle, config, lambda progress: stages.append(progress.stage), force=True)
    record["build_s"] = time.perf_counter() - started
    started = time.perf_counter()
    cached = build_engine(bundle, config)
    record["cache_lookup_s"] = time.perf_counter() - started
    record["engine"] = info.path.name
    record["engine_mb"] = info.path.stat().st_size / 2**20
    failures = [] if info.built and not cached.built else ["second build_engine call did not use the cache"]
    if "building" not in stages:
        failures.append(f"no 'building' progress reported (stages: {sorted(set(stages))})")
    threshold = manifest.thresholds.get("decision", manifest.thresholds.get("pixel", 0.5))
    ort_config = BackendConfig(kind="onnxruntime", ort_provider="cpu", max_batch=args.max_batch)
    started = time.perf_counter()
    with create_backend("tensorrt", bundle, config) as trt, create_backend("onnxruntime", bundle, ort_config) as ort:
        record["open_s"] = time.perf_counter() - started
        record["device"] = trt.describe()
        sizes = [0, 1, 7, args.opt_batch, trt.max_batch, trt.max_batch + 9]
        checks, more = check_backend(trt, ort, sizes, TOLERANCE[precision], threshold, side, channels)
        record["checks"], failures = checks, failures + more
        timings = {}
        for size in sorted({1, args.opt_batch, trt.max_batch}):
            batch = patches(size, side, channels, seed=7)
            for name, backend in (("tensorrt", trt), ("onnxruntime_cpu", ort)):
                iterations = args.iterations if name == "tensorrt" else max(3, args.iterations // 10)
                result = timed(lambda backend=backend, batch=batch: backend.infer(batch), iterations)
                result["patches_per_s"] = size / (result["median_ms"] / 1e3)
                timings[f"{name}_b{size}"] = result
        record["timings"] = timings
    record["failures"] = failures
    return record


def cpu_frame_timings(iterations: int) -> dict:
    """Tiling and postprocessing of one 3200 x 2224 frame (64 tiles), CPU only."""
    geometry = GeometryConfig()
    tiler = FrameTiler(geometry)
    image = np.random.default_rng(0).integers(60, 160, (2224, 3200), dtype=np.uint8)
    image[1000:1024, 1500:1524] = 250
    layout, batch = tiler.tile(image)
    logits = (batch - np.float32(0.8)) * np.float32(40)
    class_logits = logits.max(axis=(1, 2, 3))[:, None]
    chosen = np.flatnonzero(sigmoid(class_logits[:, 0]) >= 0.5)
    thresholds = Thresholds(decision=0.5, pixel=0.5, cascade=0.5)
    config = PostprocessConfig()
    return {
        "tiles": layout.count,
        "tile_ms": timed(lambda: tiler.tile(image), iterations),
        "postprocess_ms": timed(
            lambda: analyze_frame(layout, thresholds, config, class_logits, logits[chosen], chosen), iterations
        ),
    }


def table(result: dict) -> str:
    lines = ["bundle | task | precision | build s | backend | batch | median ms | p90 ms | patches/s | checks"]
    lines.append("---|---|---|---|---|---|---|---|---|---")
    for record in result["runs"]:
        head = f"{record['bundle']} | {record.get('task', '-')} | {record['precision']}"
        if "error" in record:
            lines.append(f"{head} | - | - | - | - | - | - | ERROR {record['error']}")
            continue
        verdict = "ok" if not record["failures"] else "; ".join(record["failures"])
        for name, timing in record["timings"].items():
            backend, batch = name.rsplit("_b", 1)
            lines.append(
                f"{head} | {record['build_s']:.1f} | {backend} | {batch} | {timing['median_ms']:.2f} | "
                f"{timing['p90_ms']:.2f} | {timing['patches_per_s']:.0f} | {verdict}"
            )
    frame = result["cpu_frame"]
    lines.append(
        f"\nCPU per 3200x2224 frame ({frame['tiles']} tiles): tiling {frame['tile_ms']['median_ms']:.2f} ms, "
        f"postprocess {frame['postprocess_ms']['median_ms']:.2f} ms (median)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict = {"gpus": cuda_device_count(), "tensorrt_usable": tensorrt_usable(), "runs": []}
    try:
        import tensorrt

        result["tensorrt_version"] = tensorrt.__version__
    except ImportError:
        result["tensorrt_version"] = None
    result["cpu_frame"] = cpu_frame_timings(max(5, args.iterations // 5))
    if not tensorrt_usable():
        print(json.dumps(result, indent=2))
        print("TensorRT is not usable here (needs tensorrt, cuda-python and a GPU)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dirs = list(args.bundle)
        if args.threshold_bundles:
            from tests.edge.fixtures import make_threshold_bundles

            bundle_dirs += list(make_threshold_bundles(Path(tmp) / "bundles", GeometryConfig()))
        cache = args.cache_dir or Path(tmp) / "engines"
        for bundle_dir in bundle_dirs:
            bundle = load_bundle(bundle_dir)
            for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
                try:
                    record = check_bundle(bundle, precision, args, cache)
                except Exception as error:  # report every bundle/precision, do not stop at the first
                    record = {
                        "bundle": str(bundle_dir),
                        "precision": precision,
                        "error": f"{type(error).__name__}: {error}",
                    }
                result["runs"].append(record)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    print(table(result))
    failed = [r for r in result["runs"] if r.get("error") or r.get("failures")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
