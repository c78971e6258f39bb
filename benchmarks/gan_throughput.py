"""GAN training throughput on this CPU: StyleGAN2-ADA and SemanticGAN, `paper` vs tiny presets, fp32 vs bf16.

Why: the `tiny` preset must "train visibly within minutes" on a 2-core CPU, so its widths and
resolution are chosen by images/s of one *full* training step — G_main + D_main every minibatch,
G_reg every 4th and D_reg every 16th (with their gains), the ADA pipe on at p = 0.2, Adam steps
included — measured here side by side. Each row runs in a fresh process (spawn) with
``--threads`` threads; every phase is timed ``--steps`` times after one warm-up and the
**minimum** is kept (the machine is shared; the minimum is the least disturbed estimate),
the median is reported beside it. Also: sampling rate (G forward, no grad, batch 64) and the
process's peak RSS.

    python benchmarks/gan_throughput.py --steps 3 --json-out gan_throughput.json
    python benchmarks/gan_throughput.py --rows tiny64,tiny64-bf16 --steps 5
    python benchmarks/gan_throughput.py --modconv   # grouped vs scaled modulated conv, per layer
    python benchmarks/gan_throughput.py --rows semantic-tiny64,semantic-tiny64-dsem64,semantic-tiny64-b32 --steps 3
    python benchmarks/gan_throughput.py --rows masked-tiny128,masked-paper128 --steps 3
    python benchmarks/gan_throughput.py --rows masked-tiny128,masked-tiny128-texture,masked-tiny128-fm --threads 1

Reference (gan-reference.md §1, the official StyleGAN2-ADA code on this CPU type, idle, 'auto'
at 128 px, grayscale, batch 32, no augment pipe, fp32, 2 threads): 0.23 images/s; narrowed to
channel_base 2048 at batch 32: 4.5 images/s at 128 px, 6.1 at 64 px. The official code is not
run here (it is under a non-commercial licence and stays out of this repository).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

# name -> (preset overrides on top of 'paper', batch). 'paper' runs at batch 4 (it is slow on a CPU;
# images/s is per image, the phases scale ~linearly with the batch at these widths).
ROWS: dict[str, tuple[dict, int]] = {
    "paper128": ({}, 4),
    "w2048-128px": ({"channel_base": 2048, "channel_max": 128, "z_dim": 128, "w_dim": 128}, 32),
    "w1024-128px": ({"channel_base": 1024, "channel_max": 128, "z_dim": 128, "w_dim": 128}, 32),
    "w2048-64px": ({"resolution": 64, "channel_base": 2048, "channel_max": 128, "z_dim": 128, "w_dim": 128}, 32),
    "w1024-64px": ({"resolution": 64, "channel_base": 1024, "channel_max": 128, "z_dim": 128, "w_dim": 128}, 32),
    "tiny128": ({"preset": "tiny", "resolution": 128}, 0),
    "tiny64": ({"preset": "tiny"}, 0),
    "tiny64-bf16": ({"preset": "tiny", "precision": "bf16"}, 0),
    "tiny64-nchw": ({"preset": "tiny", "channels_last": False}, 0),
    # SemanticGAN (family semantic): image + label, D_img + 3-scale D_sem; same step structure.
    "semantic-paper128": ({"family": "semantic"}, 4),
    "semantic-tiny64": ({"family": "semantic", "preset": "tiny"}, 0),
    "semantic-tiny64-dsem64": (
        {"family": "semantic", "preset": "tiny", "sem_channels": 64, "sem_channels_max": 512},
        0,
    ),
    "semantic-tiny64-b32": ({"family": "semantic", "preset": "tiny"}, 32),
    # Mask-guided generator (family masked): U-Net painter + global/local PatchGAN at the patch size (128 px).
    "masked-tiny128": ({"family": "masked", "preset": "tiny"}, 0),
    "masked-paper128": ({"family": "masked"}, 8),
    "masked-tiny128-texture": ({"family": "masked", "preset": "tiny", "noise_inputs": True, "rec_pool_px": 4}, 0),
    "masked-tiny128-fm": ({"family": "masked", "preset": "tiny", "fm_weight": 10.0, "rec_pool_px": 4}, 0),
}
DEFAULT_ROWS = "paper128,w2048-128px,tiny128,w2048-64px,tiny64,tiny64-nchw,tiny64-bf16"
# (batch, in, out, resolution, up) of single synthesis layers at the tiny and paper widths.
MODCONV_LAYERS = [
    (32, 128, 128, 8, False), (32, 128, 64, 16, True), (32, 64, 64, 16, False), (32, 64, 32, 32, True),
    (32, 32, 32, 32, False), (32, 32, 16, 64, True), (32, 16, 16, 64, False), (32, 8, 8, 128, False),
    (4, 512, 512, 16, False), (4, 512, 512, 32, True), (4, 512, 256, 64, True), (4, 256, 256, 64, False),
    (4, 256, 128, 128, True), (4, 128, 128, 128, False),
]  # fmt: skip
AUGMENT_P = 0.2
SAMPLE_BATCH = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated rows of {sorted(ROWS)}")
    parser.add_argument("--steps", type=int, default=3, help="timed repetitions of every phase (default 3)")
    parser.add_argument(
        "--slow-steps", type=int, default=1, help="timed repetitions for the slow rows: paper, bf16 (default 1)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads per row (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and inputs (default 0)")
    parser.add_argument("--modconv", action="store_true", help="time the modconv formulations per layer instead")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {sorted(ROWS)}")
    if args.steps < 1 or args.slow_steps < 1:
        parser.error("--steps and --slow-steps must be >= 1")
    return args


def _config(name: str):  # noqa: ANN202
    """(family, config, channels_last) of a row; the semantic family's distribution loss is on (λ 1)."""
    from training.gan.families import get_family

    overrides, batch = ROWS[name]
    overrides = dict(overrides)
    family = get_family(overrides.pop("family", "stylegan2"))
    base = overrides.pop("preset", "paper")
    channels_last = overrides.pop("channels_last", True)
    if family.key == "semantic":
        overrides.update(ld_weight=1.0, ld_real_mean=(0.03,), ld_real_std=(0.05,))
    cfg = family.config(base, overrides)
    if batch:
        cfg = cfg.model_copy(update={"batch_size": batch})
    return family, cfg, channels_last


def _worker(name: str, threads: int, steps: int, seed: int, queue) -> None:  # noqa: ANN001
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    family, cfg, channels_last = _config(name)
    G, D = family.build(cfg)
    if hasattr(G, "synthesis"):
        G.synthesis.channels_last = channels_last
        getattr(D, "img", D).channels_last = channels_last
    pipe = family.augment(cfg)
    if pipe is not None:
        pipe.p = AUGMENT_P
    loss = family.loss(cfg, G, D, pipe)
    settings = family.optimizers(cfg)
    optimizers = {
        "G": torch.optim.Adam(G.parameters(), **settings["G"]),
        "D": torch.optim.Adam(D.parameters(), **settings["D"]),
    }
    batch = cfg.batch_size
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (64, cfg.resolution, cfg.resolution), dtype=np.uint8)
    if family.batches is None:
        real = torch.randn(batch, cfg.img_channels, cfg.resolution, cfg.resolution)
    elif family.key == "masked":  # pairs with a 16 px square defect each, backgrounds, any background allowed
        masks = np.zeros(images.shape, np.uint8)
        masks[:, 40:56, 40:56] = 1
        data = {
            "images": images,
            "masks": masks,
            "backgrounds": images,
            "near_index": np.tile(np.arange(len(images)), len(images)),
            "near_offsets": np.arange(len(images) + 1) * len(images),
        }
        real = family.batches(data, torch.device("cpu"), rng).next(batch)
    else:  # SemanticGAN: an unlabelled batch + labelled pairs with ~3 % defect pixels
        masks = (rng.random(images.shape) < 0.03).astype(np.uint8)
        data = {"images": images, "pair_images": images, "pair_masks": masks}
        real = family.batches(data, torch.device("cpu"), rng).next(batch)
    gains = {"G_main": 1, "D_main": 1, "G_reg": cfg.g_reg_interval, "D_reg": cfg.d_reg_interval}

    def run_phase(phase: str) -> float:
        optimizer = optimizers[phase[0]]
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.accumulate_gradients(phase, real, torch.randn(batch, cfg.z_dim), gains[phase])
        optimizer.step()
        return time.perf_counter() - started

    seconds: dict[str, list[float]] = {phase: [] for phase in gains}
    for repetition in range(steps + 1):  # the first round warms up (oneDNN primitive caches)
        for phase in gains:
            elapsed = run_phase(phase)
            if repetition:
                seconds[phase].append(elapsed)
    G.eval()
    with torch.no_grad():
        z = torch.randn(SAMPLE_BATCH, cfg.z_dim)
        if family.key == "masked":  # painting + composite, as `gan sample` does
            from training.gan.masked.composite import alpha_map, composite
            from training.gan.masked.networks import noise_maps, paint

            backgrounds = torch.rand(SAMPLE_BATCH, 1, cfg.resolution, cfg.resolution) * 2 - 1
            mask = torch.zeros_like(backgrounds)
            mask[:, :, 40:56, 40:56] = 1
            alpha = alpha_map(mask, cfg.dilate_px, cfg.feather_px)
            noise = noise_maps(SAMPLE_BATCH, cfg.resolution, seed)

            def draw() -> None:
                composite(backgrounds, paint(G, backgrounds, mask, alpha, z=z, noise=noise), alpha)

        else:

            def draw() -> None:
                G(z)

        draw()
        started = time.perf_counter()
        draw()
        sample_s = time.perf_counter() - started
    queue.put(
        {
            "family": family.key,
            "config": cfg.model_dump(mode="json"),
            "channels_last": channels_last,
            "ms_min": {p: 1000 * min(s) for p, s in seconds.items()},
            "ms_median": {p: 1000 * statistics.median(s) for p, s in seconds.items()},
            "sample_per_s": SAMPLE_BATCH / sample_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "params": {"G": sum(p.numel() for p in G.parameters()), "D": sum(p.numel() for p in D.parameters())},
        }
    )


def measure(name: str, threads: int, steps: int, seed: int) -> dict:
    """One row in a fresh process: ms per phase, amortised step, images/s, kimg/h."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=_worker, args=(name, threads, steps, seed, queue))
    worker.start()
    result = queue.get()
    worker.join()
    cfg = result["config"]
    row = {"row": name, "family": result["family"], "resolution": cfg["resolution"], "batch": cfg["batch_size"]}
    row["precision"] = cfg["precision"]
    if "g_channels" in cfg:  # the masked family's U-Net: widths per level, full resolution first
        row["channels"] = {str(cfg["resolution"] >> i): c for i, c in enumerate(cfg["g_channels"])}
    else:
        row["channels"] = {
            str(r): min(cfg["channel_base"] // r, cfg["channel_max"])
            for r in (4, 8, 16, 32, 64, 128)
            if r <= cfg["resolution"]
        }
    intervals = {"G_main": 1, "D_main": 1, "G_reg": cfg["g_reg_interval"], "D_reg": cfg["d_reg_interval"]}
    for stat in ("min", "median"):
        ms = result[f"ms_{stat}"]
        step_ms = sum(ms[p] / intervals[p] for p in intervals)
        row[f"ms_{stat}"] = {p: round(v, 1) for p, v in ms.items()}
        row[f"step_ms_{stat}"] = round(step_ms, 1)
        row[f"img_per_s_{stat}"] = round(cfg["batch_size"] / step_ms * 1000, 2)
    row["kimg_per_hour"] = round(row["img_per_s_min"] * 3.6, 1)
    row["sample_per_s"] = round(result["sample_per_s"], 1)
    row["peak_rss_mb"] = round(result["peak_rss_mb"])
    row["params"] = result["params"]
    row["channels_last"] = result["channels_last"]
    return row


def run(rows: list[str], threads: int, steps: int, slow_steps: int, seed: int) -> dict:
    measured = []
    for name in rows:
        slow = "paper" in name or "bf16" in name
        measured.append(measure(name, threads, slow_steps if slow else steps, seed))
        print(table({"rows": measured[-1:]}).splitlines()[-1], file=sys.stderr, flush=True)
    return {
        "benchmark": "gan_throughput",
        "threads": threads,
        "steps": steps,
        "augment_p": AUGMENT_P,
        "seed": seed,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": measured,
    }


def table(result: dict) -> str:
    head = f"{'row':<24}{'px':>4}{'batch':>6}{'prec':>6}{'G_main':>8}{'D_main':>8}{'G_reg':>8}{'D_reg':>8}"
    head += f"{'step ms':>9}{'img/s':>7}{'(med)':>7}{'kimg/h':>8}{'smpl/s':>8}{'RSS MB':>8}  channels 4..res"
    lines = [head]
    for row in result["rows"]:
        ms = row["ms_min"]
        lines.append(
            f"{row['row']:<24}{row['resolution']:>4}{row['batch']:>6}{row['precision']:>6}"
            f"{ms['G_main']:>8.0f}{ms['D_main']:>8.0f}{ms['G_reg']:>8.0f}{ms['D_reg']:>8.0f}"
            f"{row['step_ms_min']:>9.0f}{row['img_per_s_min']:>7.1f}{row['img_per_s_median']:>7.1f}"
            f"{row['kimg_per_hour']:>8.1f}{row['sample_per_s']:>8.1f}{row['peak_rss_mb']:>8}  "
            + "/".join(str(c) for c in row["channels"].values())
        )
    return "\n".join(lines)


def modconv_rows(threads: int, steps: int, seed: int) -> dict:
    """ms of forward + backward of one SynthesisLayer, grouped vs scaled (min of ``steps``+1 runs)."""
    import torch

    from training.gan.stylegan2.networks import SynthesisLayer

    torch.set_num_threads(threads)
    rows = []
    for batch, cin, cout, res, up in MODCONV_LAYERS:
        row = {"batch": batch, "in": cin, "out": cout, "resolution": res, "up": up}
        for formulation in ("grouped", "scaled"):
            torch.manual_seed(seed)
            layer = SynthesisLayer(cin, cout, 64, res, up=up)
            layer.formulation = formulation
            size = res // 2 if up else res
            x = torch.randn(batch, cin, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
            w = torch.randn(batch, 64)
            times = []
            for _ in range(steps + 2):
                started = time.perf_counter()
                layer(x, w).square().mean().backward()
                times.append(time.perf_counter() - started)
            row[f"{formulation}_ms"] = round(1000 * min(times[1:]), 1)
        rows.append(row)
    return {"benchmark": "gan_modconv", "threads": threads, "load_average": os.getloadavg(), "rows": rows}


def modconv_table(result: dict) -> str:
    lines = [f"{'layer':<26}{'grouped ms':>11}{'scaled ms':>10}"]
    for r in result["rows"]:
        name = f"N{r['batch']} {r['in']}->{r['out']} @{r['resolution']}{' up' if r['up'] else ''}"
        lines.append(f"{name:<26}{r['grouped_ms']:>11.1f}{r['scaled_ms']:>10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.modconv:
        result = modconv_rows(args.threads, args.steps, args.seed)
        print(json.dumps(result, indent=2))
        print(modconv_table(result))
        if args.json_out:
            args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return 0
    result = run(args.rows.split(","), args.threads, args.steps, args.slow_steps, args.seed)
    print(json.dumps(result, indent=2))
    print(table(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
