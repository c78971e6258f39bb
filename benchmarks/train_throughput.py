"""Classifier training throughput on this CPU: fp32 vs bf16 autocast, one run vs parallel runs.

Why: an experiment is 9+ training runs, so its wall time is set by how many patches per
second the machine trains *in total*. Small convolutions use two threads poorly, so two
single-thread runs side by side (``experiment --workers 2``) can beat one two-thread run;
bfloat16 autocast uses the AVX512-BF16/AMX units where the CPU has them. Every setting
runs the real training step (``runtime.autocast``, channels-last ``to_tensor``, AdamW) of
the cpu preset's classifier, in fresh processes, one after another in one invocation.

    python benchmarks/train_throughput.py --steps 40 --json-out train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

WARMUP_STEPS = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and inputs (default 0)")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per process (default 40)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (cpu preset: 64)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be >= 1")
    return args


def _worker(precision: str, threads: int, steps: int, batch_size: int, seed: int, queue) -> None:  # noqa: ANN001
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    import torch.nn.functional as F

    from training.models.classifier import create_classifier
    from training.train.config import ClassifierSettings
    from training.train.runtime import autocast, to_tensor

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = ClassifierSettings(preset="cpu").model.spec(input_px=128)
    device = torch.device("cpu")
    model = create_classifier(spec).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = rng.integers(0, 256, (batch_size, spec.input_px, spec.input_px), dtype=np.uint8)
    labels = torch.from_numpy((rng.random(batch_size) < 0.1).astype(np.float32))

    def step() -> None:
        with autocast(precision, device):
            logits = model(to_tensor(images, device))[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(WARMUP_STEPS):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    queue.put(time.perf_counter() - started)


def measure(precision: str, processes: int, steps: int, batch_size: int, seed: int) -> dict:
    """``processes`` training loops at once, the cores split between them; total patches/s."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // processes)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_worker, args=(precision, threads, steps, batch_size, seed + i, queue))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    seconds = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    per_step = sum(seconds) / len(seconds) / steps
    return {
        "precision": precision,
        "processes": processes,
        "threads_each": threads,
        "seconds_per_step": round(per_step, 4),
        "patches_per_s_total": round(processes * batch_size / per_step, 1),
    }


def run(steps: int, batch_size: int, seed: int) -> dict:
    rows = [
        measure(precision, processes, steps, batch_size, seed) for precision in ("fp32", "bf16") for processes in (1, 2)
    ]
    reference = rows[0]["patches_per_s_total"]
    for row in rows:
        row["vs_fp32_one_process"] = round(row["patches_per_s_total"] / reference, 2)
    return {
        "benchmark": "train_throughput",
        "model": "classifier cpu preset",
        "cores": os.cpu_count(),
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "load_average": os.getloadavg(),
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = [f"{'precision':<10}{'processes':>10}{'threads':>8}{'s/step':>9}{'patches/s':>11}{'x':>7}"]
    for row in result["rows"]:
        lines.append(
            f"{row['precision']:<10}{row['processes']:>10}{row['threads_each']:>8}{row['seconds_per_step']:>9.3f}"
            f"{row['patches_per_s_total']:>11.1f}{row['vs_fp32_one_process']:>7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args.steps, args.batch_size, args.seed)
    print(json.dumps(result, indent=2))
    print(table(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
