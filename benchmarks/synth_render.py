"""How fast synthetic frames render, alone and with writing the set to disk.

The demo and every test fixture render frames on CPU, so rendering must stay cheap:
the target is >= 2 frames/s render-only at the thesis size (3200x2224) on 2 cores.

    python benchmarks/synth_render.py --frames 10 --json-out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from training.outputs import package_versions, write_json_atomic
from training.synth.config import SynthConfig
from training.synth.part import canonical_part
from training.synth.render import render_frame
from training.synth.writer import write_synth_set

TARGET_RENDER_FPS = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10, help="frames per measurement (default 10)")
    parser.add_argument("--width", type=int, default=3200, help="frame width in px (default 3200)")
    parser.add_argument("--height", type=int, default=2224, help="frame height in px (default 2224)")
    parser.add_argument("--seed", type=int, default=0, help="set seed (default 0)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    return args


def run(frames: int, width_px: int, height_px: int, seed: int) -> dict:
    """Cold start (part render), render-only and render+write throughput."""
    config = SynthConfig(width_px=width_px, height_px=height_px)
    canonical_part.cache_clear()
    started = time.perf_counter()
    canonical_part(width_px, height_px)
    cold_s = time.perf_counter() - started

    started = time.perf_counter()
    defects = 0
    for index in range(frames):
        defects += len(render_frame(config, seed, index).defects)
    render_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        out = Path(tmp) / "set"
        summary = write_synth_set(out, config, frames, seed, progress=False)
        written_bytes = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())

    render_fps = frames / render_s
    return {
        "width_px": width_px,
        "height_px": height_px,
        "frames": frames,
        "seed": seed,
        "cpu_count": os.cpu_count(),
        "cold_start_s": round(cold_s, 3),
        "render_ms_per_frame": round(1000 * render_s / frames, 1),
        "render_fps": round(render_fps, 2),
        "render_write_ms_per_frame": round(1000 * summary.seconds / frames, 1),
        "render_write_fps": round(summary.frames_per_s, 2),
        "written_mb_per_frame": round(written_bytes / frames / 1e6, 2),
        "defects_per_frame": round(defects / frames, 2),
        "target_render_fps": TARGET_RENDER_FPS,
        "meets_target": render_fps >= TARGET_RENDER_FPS,
        "versions": package_versions(),
    }


def table(result: dict) -> str:
    rows = [
        ("frame", f"{result['width_px']} x {result['height_px']} px, {result['frames']} frames"),
        ("cold start (part render)", f"{result['cold_start_s']:.2f} s"),
        ("render only", f"{result['render_fps']:.2f} frames/s ({result['render_ms_per_frame']:.0f} ms/frame)"),
        (
            "render + write",
            f"{result['render_write_fps']:.2f} frames/s ({result['render_write_ms_per_frame']:.0f} ms/frame, "
            f"{result['written_mb_per_frame']:.1f} MB/frame)",
        ),
        (
            "target",
            f">= {result['target_render_fps']:.1f} frames/s render only: "
            f"{'met' if result['meets_target'] else 'MISSED'}",
        ),
    ]
    return "\n".join(f"{name:<26}{value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args.frames, args.width, args.height, args.seed)
    print(json.dumps(result, indent=2))
    print(table(result))
    if args.json_out is not None:
        write_json_atomic(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
