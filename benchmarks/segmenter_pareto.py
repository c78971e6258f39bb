"""The segmenter's quality per cost: test defect IoU vs GFLOP per patch vs ONNX Runtime ms per 64 patches.

Quality comes from `experiment segmentation` folders (their ``experiment.json`` names the model
spec and schedule, ``runs.csv`` the test defect IoU of each seed's baseline run), so every
point is a 3-seed, group-split measurement made by the experiment runner; cost is measured
here for each distinct spec: FLOPs of one 128 px patch (PyTorch's FLOP counter, 2 FLOP per
multiply-add) and the least disturbed ms per 64-patch batch in the edge's own ONNX Runtime
backend, float32 and int8 (random weights: speed only). Prints a table (markdown) and a JSON
report; writes a scatter plot of IoU vs ms with the Pareto front marked.

    python benchmarks/segmenter_pareto.py --experiment mt/cpu=runs/mt-cpu --experiment mt/fpn=runs/mt-fpn \\
        --json-out pareto.json --png pareto.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from inference_speed import int8_side_by_side  # the same side-by-side timing as `inference_speed.py --int8`
from torch.utils.flop_counter import FlopCounterMode

from training.models.segmenter import SegmenterSpec, create_segmenter
from training.outputs import package_versions, write_json_atomic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="DATASET/LABEL=DIR",
        help="An `experiment segmentation` folder; its baseline rows are one point (repeatable).",
    )
    parser.add_argument("--method", default="baseline", help="Which method's rows give the quality (baseline).")
    parser.add_argument("--iterations", type=int, default=8, help="Timed ORT calls per model and precision.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights and batches.")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None, help="Scatter plot of IoU vs ms (Pareto front marked).")
    return parser.parse_args(argv)


def gflop_per_patch(spec: SegmenterSpec) -> float:
    model = create_segmenter(spec).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, spec.in_channels, spec.input_px, spec.input_px))
    return counter.get_total_flops() / 1e9


def read_point(label: str, folder: Path, method: str) -> dict:
    """Quality of one experiment folder's ``method`` rows (mean ± std over seeds)."""
    meta = json.loads((folder / "experiment.json").read_text())
    identity = meta["identity"]
    with open(folder / "runs.csv", newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["method"] == method]
    if not rows:
        raise ValueError(f"{folder}/runs.csv: no {method!r} rows")

    def values(column: str) -> list[float]:
        return [float(row[column]) for row in rows if row.get(column) not in (None, "")]

    iou = values("test_defect_iou")
    classes = sorted(k.removeprefix("iou_") for k in rows[0] if k.startswith("iou_"))
    return {
        "label": label,
        "folder": str(folder),
        "spec": identity["spec"],
        "schedule": {k: identity["schedule"][k] for k in ("iterations", "batch_size", "lr", "precision")},
        "threshold": identity.get("threshold"),
        "tune_threshold": identity.get("tune_threshold", False),
        "seeds": len(iou),
        "test_defect_iou": round(float(np.mean(iou)), 4),
        "test_defect_iou_std": round(float(np.std(iou, ddof=1)) if len(iou) > 1 else 0.0, 4),
        "test_mean_iou": round(float(np.mean(values("test_mean_iou"))), 4),
        "val_defect_iou": round(float(np.mean(values("val_defect_iou"))), 4),
        "train_seconds": round(float(np.mean(values("train_seconds"))), 1),
        "per_class_iou": {c: round(float(np.mean(values(f"iou_{c}"))), 3) for c in classes},
    }


def pareto(points: list[dict]) -> set[str]:
    """Labels not dominated within their dataset (higher IoU and lower ms)."""
    front = set()
    for point in points:
        dominated = any(
            other is not point
            and other["dataset"] == point["dataset"]
            and point["fp32_ms_per_64"] is not None
            and other["fp32_ms_per_64"] is not None
            and other["test_defect_iou"] >= point["test_defect_iou"]
            and other["fp32_ms_per_64"] <= point["fp32_ms_per_64"]
            and (other["test_defect_iou"], -other["fp32_ms_per_64"])
            != (point["test_defect_iou"], -point["fp32_ms_per_64"])
            for other in points
        )
        if not dominated:
            front.add(point["label"])
    return front


def run(args: argparse.Namespace) -> dict:
    points, costs = [], {}
    for item in args.experiment:
        label, _, folder = item.partition("=")
        if not folder:
            raise ValueError(f"--experiment {item!r}: expected DATASET/LABEL=DIR")
        point = read_point(label, Path(folder), args.method)
        point["dataset"] = label.split("/")[0]
        key = json.dumps(point["spec"], sort_keys=True)
        if key not in costs:
            spec = SegmenterSpec(**point["spec"])
            torch.manual_seed(args.seed)
            costs[key] = {
                "gflop_per_patch": round(gflop_per_patch(spec), 3),
                "params_m": round(sum(p.numel() for p in create_segmenter(spec).parameters()) / 1e6, 2),
            }
            try:  # through the real export path: a model that cannot become a bundle says so here
                speed = int8_side_by_side(label, "segmenter", spec, args.iterations)
                costs[key].update({k: speed[k] for k in ("fp32_ms_per_64", "int8_ms_per_64", "int8_speedup")})
            except (ValueError, RuntimeError) as error:  # ExportError and BundleError are ValueErrors
                costs[key].update({"fp32_ms_per_64": None, "int8_ms_per_64": None, "export_error": str(error)})
            print(f"measured {label}: {costs[key]}", file=sys.stderr, flush=True)
        points.append({**point, **costs[key]})
    front = pareto(points)
    for point in points:
        point["pareto"] = point["label"] in front
    return {
        "points": points,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "versions": package_versions(),
    }


def _ms(value: float | None) -> str:
    return "export failed" if value is None else f"{value:.0f}"


def describe(spec: dict) -> str:
    decoder = "/".join(map(str, spec.get("decoder_channels") or [])) or "default"
    return f"{spec['arch']} {spec['encoder']} dec {decoder}"


def table(result: dict) -> str:
    lines = [
        "| point | model | iters | test defect IoU (seeds) | val IoU | GFLOP/patch | ORT ms/64 fp32 | int8 | "
        "train s/run | Pareto |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in sorted(result["points"], key=lambda p: (p["dataset"], -p["test_defect_iou"])):
        lines.append(
            f"| {p['label']} | {describe(p['spec'])} | {p['schedule']['iterations']} | "
            f"{p['test_defect_iou']:.3f} ± {p['test_defect_iou_std']:.3f} ({p['seeds']}) | {p['val_defect_iou']:.3f} | "
            f"{p['gflop_per_patch']:.2f} | {_ms(p['fp32_ms_per_64'])} | {_ms(p['int8_ms_per_64'])} | "
            f"{p['train_seconds']:.0f} | {'yes' if p['pareto'] else ''} |"
        )
    lines.append(
        f"ORT: the edge's backend, CPU provider, least disturbed of the timed calls; {result['cpu_count']} CPUs, "
        f"load average {result['load_average_1m']}."
    )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({p["dataset"] for p in result["points"]})
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        points = [p for p in result["points"] if p["dataset"] == dataset and p["fp32_ms_per_64"] is not None]
        for p in points:
            axis.errorbar(
                p["fp32_ms_per_64"],
                p["test_defect_iou"],
                yerr=p["test_defect_iou_std"],
                fmt="o" if p["pareto"] else "x",
                color="tab:red" if p["pareto"] else "tab:gray",
                capsize=3,
            )
            axis.annotate(p["label"].split("/", 1)[-1], (p["fp32_ms_per_64"], p["test_defect_iou"]), fontsize=8)
        axis.set_xscale("log")
        axis.set_xlabel("ONNX Runtime ms per 64 patches (fp32, this CPU)")
        axis.set_ylabel("test defect IoU (mean ± std over seeds)")
        axis.set_title(f"{dataset}: segmenter quality vs cost (o = Pareto front)")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.experiment:
        raise SystemExit("give at least one --experiment DATASET/LABEL=DIR")
    result = run(args)
    print(table(result))
    if args.json_out:
        write_json_atomic(args.json_out, result)
    if args.png:
        plot(result, args.png)
        print(f"plot: {args.png}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
