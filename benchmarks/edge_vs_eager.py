"""`pump-edge bench` with eager PyTorch as the naive reference: the station vs a batch-1 PyTorch loop.

The edge never imports torch or the training package, so ``pump-edge bench`` reports the eager
reference as skipped. This script runs the same bench on a training install and hands it the
measurement (:func:`training.export.eager_reference.eager_batch1_seconds`: the bundles' models
rebuilt from their specs with random weights, batch 1, ``inference_mode``), so the
"pipeline / eager PyTorch" ratio is measured side by side on the same frames.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/edge_vs_eager.py --classifier demo-out/bundles/classifier \\
        --segmenter demo-out/bundles/segmenter --frames 16 --json-out edge-vs-eager.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from edge.bench import BenchConfig, report_tables, run_bench
from edge.config import EdgeSettings
from shared.config import load_settings
from training.export.eager_reference import eager_batch1_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", type=Path, default=Path("demo-out/bundles/classifier"))
    parser.add_argument("--segmenter", type=Path, default=Path("demo-out/bundles/segmenter"))
    parser.add_argument("--frames", type=int, default=16, help="Synthetic frames (3200 x 2224 by default).")
    parser.add_argument("--frame-size", default="3200x2224", help="WIDTHxHEIGHT of the synthetic frames.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the frames and of the eager models' weights.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 1 naive frame, 1 ROI repeat.")
    parser.add_argument("--json-out", type=Path, help="Also write the JSON report here.")
    args = parser.parse_args(argv)
    width, _, height = args.frame_size.partition("x")
    settings = load_settings(
        EdgeSettings,
        None,
        {
            "bundles": {"classifier": args.classifier, "segmenter": args.segmenter, "follow_bundle_geometry": True},
            "backend": {"kind": "onnxruntime", "ort_provider": "cpu"},
        },
    )
    config = BenchConfig(
        settings=settings,
        frames=args.frames,
        frame_size=(int(width), int(height)),
        seed=args.seed,
        quick=args.quick,
        eager=True,
        eager_measure=eager_batch1_seconds,
        progress=lambda message: print(f"bench: {message}", file=sys.stderr),
    )
    config.eager = True  # also in --quick: the eager reference is why this script exists
    result = run_bench(config)
    console = Console(stderr=True)
    for table in report_tables(result):
        console.print(table)
    text = json.dumps(result, indent=2)
    if args.json_out is not None:
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
