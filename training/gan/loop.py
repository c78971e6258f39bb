"""The one GAN training loop: architecture-blind, CPU or CUDA, one process or torch.distributed.

Per minibatch (step s, ``B`` images per process, ``B·world`` in all)::

    G_main (gain 1)      every step                 -> all-reduce grads -> opt_G.step()
    G_reg  (gain I_G)    when s % g_reg_interval == 0 -> all-reduce grads -> opt_G.step()
    D_main (gain 1)      every step                 -> all-reduce grads -> opt_D.step()
    D_reg  (gain I_D)    when s % d_reg_interval == 0 -> all-reduce grads -> opt_D.step()
    G_ema  <- β·G_ema + (1-β)·G, β from the EMA half-life with ramp-up (training.gan.ema)
    ADA    r_t from D_main's real signs (summed over processes); p updated every ada_interval

Every ``tick_kimg`` a JSONL line (``stats.jsonl``: ``Loss/...`` means, ``Progress/kimg``,
``Progress/augment_p``, ``Progress/rt``, ``Timing/img_per_s``) and a progress line; every
``snapshot_kimg`` (and at the end) a checkpoint and ``grids/fakes-<images>.png`` of fixed
latents (G_ema, constant noise). Only rank 0 writes files.

The loop knows a family only through :class:`training.gan.families.GanFamily` (build, augment,
loss, optimisers, sampler) and the phases' names; which network a phase trains is its prefix.

Resume (``resume=True``): networks, optimisers, ADA state, the loss's state (path-length
mean), progress and RNG states come back from the latest checkpoint, so one process continues
exactly as if it had never stopped. With several processes only rank 0's RNG state is saved;
the other ranks re-seed from (seed, rank, images) — statistically the same, not bitwise.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from training.gan.augment import AdaController
from training.gan.checkpoint import (
    CHECKPOINT_DIR,
    capture_rng,
    checkpoint_name,
    find_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from training.gan.ema import update_ema
from training.gan.families import GanFamily
from training.train.distributed import ProcessGroup
from training.train.runlog import RunLog

STATS_NAME = "stats.jsonl"
GRID_DIR = "grids"
PHASES = ("G_main", "G_reg", "D_main", "D_reg")


@dataclass(frozen=True)
class LoopOptions:
    """How long to train and how often to log and snapshot (family-independent)."""

    kimg: float
    snapshot_kimg: float = 10.0
    tick_kimg: float = 1.0
    grid_size: int = 8  # grid_size x grid_size fixed latents
    seed: int = 0
    progress: bool = True


# --- small steps --------------------------------------------------------------------------------


def _average_grads(module: nn.Module, group: ProcessGroup) -> None:
    """Average the gradients over processes (one flat all-reduce) and clear NaN/inf."""
    params = [p for p in module.parameters() if p.requires_grad or p.grad is not None]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if group.distributed:
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        flat /= group.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n
    for p in params:
        torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)


def _average_buffers(module: nn.Module, group: ProcessGroup) -> None:
    """Average floating buffers (e.g. the mapping's running w_avg) over processes."""
    if not group.distributed:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= group.world_size


def _broadcast(module: nn.Module, group: ProcessGroup) -> None:
    if group.distributed:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def _sum_over_processes(values: list[float], group: ProcessGroup, device: torch.device) -> list[float]:
    if not group.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def tile_images(images: np.ndarray, columns: int) -> np.ndarray:
    """uint8 [N, H, W] -> one [rows·H, columns·W] image."""
    n, h, w = images.shape
    rows = math.ceil(n / columns)
    canvas = np.zeros((rows * h, columns * w), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    return canvas


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float [N, C, H, W] -> uint8 [N, H, W] (first channel)."""
    x = (images[:, 0].float().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def write_grid(sampler: nn.Module, z: torch.Tensor, path: Path) -> Path:
    """Sample the fixed latents ``z`` and write them as one PNG grid.

    A sampler with a label channel (SemanticGAN: image, then label in [-1, 1]) gets each image
    followed by its label (white = defect) in the next column.
    """
    outputs = torch.cat([sampler(chunk).float().cpu() for chunk in z.split(64)])
    columns = int(math.ceil(math.sqrt(len(outputs))))
    images = to_uint8(outputs)
    if outputs.shape[1] > 1:
        labels = to_uint8(outputs[:, -1:])
        images = np.stack([images, labels], axis=1).reshape(-1, *images.shape[1:])
        columns *= 2
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), tile_images(images, columns)):
        raise OSError(f"could not write {path}")
    return path


class _Batches:
    """Random real minibatches (uniform with replacement) as [-1, 1] tensors on the device."""

    def __init__(self, images: np.ndarray, device: torch.device, rng: np.random.Generator) -> None:
        tensor = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0)
        self.images = (tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)).to(device)
        self.rng = rng

    def next(self, batch: int) -> torch.Tensor:
        index = torch.from_numpy(self.rng.integers(0, len(self.images), size=batch))
        return self.images[index.to(self.images.device)]

    def preview(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """uint8 [count, H, W] real images for the run's reals.png."""
        return to_uint8(self.images[rng.integers(0, len(self.images), count)])


# --- the loop -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedGan:
    """What ``train_gan`` ends with: progress, the last phase statistics and the networks."""

    images: int
    steps: int
    augment_p: float | None
    last: dict[str, float]
    networks: dict[str, nn.Module]

    @property
    def kimg(self) -> float:
        return self.images / 1000

    def summary(self) -> dict:
        """JSON-able progress and last losses (no networks)."""
        return {"kimg": self.kimg, "steps": self.steps, "augment_p": self.augment_p, "last": self.last}


@dataclass
class _State:
    images: int = 0
    step: int = 0
    tick: int = 0


def train_gan(
    *,
    family: GanFamily,
    config: Any,
    images: np.ndarray | dict[str, np.ndarray],
    run_dir: Path,
    options: LoopOptions,
    device: str = "cpu",
    group: ProcessGroup | None = None,
    resume: bool = False,
) -> TrainedGan:
    """Train ``family`` with one-GPU ``config`` on uint8 ``images`` [N, res, res].

    ``images`` is whatever the family's ``batches`` draws from (``GanData.loop_input()``): the
    image GAN's array, or SemanticGAN's {"images", "pair_images", "pair_masks"}.

    ``config`` is scaled for the process count by ``family.for_gpus``; the run folder must
    exist (the command writes config.json/data.json there first).
    """
    group = group or ProcessGroup()
    run_dir = Path(run_dir)
    dev = torch.device(device)
    cfg = family.for_gpus(config, group.world_size)
    total_batch = cfg.batch_size * group.world_size

    # 1. networks (same seed everywhere, then rank 0's weights broadcast), pipe, loss, optimisers
    torch.manual_seed(options.seed)
    G, D = family.build(cfg)
    G, D = G.to(dev).train(), D.to(dev).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    for module in (G, D, G_ema):
        _broadcast(module, group)
    pipe = family.augment(cfg)
    pipe = pipe.to(dev) if pipe is not None else None
    ada = None
    if pipe is not None and cfg.ada_target is not None:
        ada = AdaController(target=cfg.ada_target, interval=cfg.ada_interval, speed_kimg=cfg.ada_kimg, p=cfg.augment_p)
    loss = family.loss(cfg, G, D, pipe)
    adam = family.optimizers(cfg)
    opt_G = torch.optim.Adam(G.parameters(), **adam["G"])
    opt_D = torch.optim.Adam(D.parameters(), **adam["D"])
    grid_z = torch.randn(options.grid_size**2, cfg.z_dim, generator=torch.Generator().manual_seed(options.seed))
    grid_z = grid_z.to(dev)

    # 2. per-process random streams (z, mixing, augment, minibatches)
    rng = np.random.default_rng([options.seed, group.rank])
    torch.manual_seed(options.seed * 1000 + group.rank + 1)
    state = _State()
    if resume:
        data = load_checkpoint(find_checkpoint(run_dir), device=dev)
        G.load_state_dict(data["G"])
        D.load_state_dict(data["D"])
        G_ema.load_state_dict(data["G_ema"])
        opt_G.load_state_dict(data["opt_G"])
        opt_D.load_state_dict(data["opt_D"])
        loss.load_state_dict(data["loss"])
        if ada is not None and data["augment"]:
            ada.load_state_dict(data["augment"])
        state = _State(**{k: int(v) for k, v in data["progress"].items() if k in ("images", "step", "tick")})
        if group.is_main:
            restore_rng(data["rng"], rng)
        else:
            rng = np.random.default_rng([options.seed, group.rank, state.images])
            torch.manual_seed(options.seed * 1000 + group.rank + 1 + state.images)
    if pipe is not None and ada is not None:
        pipe.p = ada.p
    batches = (family.batches or _Batches)(images, dev, rng)

    log = RunLog(run_dir / STATS_NAME if group.is_main else None)
    sampler = family.grid_sampler(G_ema, batches, cfg) if family.grid_sampler else family.sampler(G_ema)
    if group.is_main and not resume:
        write_grid(sampler, grid_z, run_dir / GRID_DIR / "fakes-init.png")
        reals = batches.preview(options.grid_size**2, np.random.default_rng(options.seed))
        cv2.imwrite(str(run_dir / GRID_DIR / "reals.png"), tile_images(reals, options.grid_size))

    def snapshot() -> None:
        if not group.is_main:
            return
        save_checkpoint(
            path=run_dir / CHECKPOINT_DIR / checkpoint_name(state.images),
            family=family.key,
            config=config.model_dump(mode="json"),  # the one-GPU config; for_gpus re-scales on resume
            G=G,
            D=D,
            G_ema=G_ema,
            opt_G=opt_G,
            opt_D=opt_D,
            augment_state=ada.state_dict() if ada is not None else {},
            loss_state=loss.state_dict(),
            progress={"images": state.images, "step": state.step, "tick": state.tick},
            rng=capture_rng(rng),
        )
        write_grid(sampler, grid_z, run_dir / GRID_DIR / f"fakes-{state.images:012d}.png")

    # 3. minibatches until the target
    target = int(round(options.kimg * 1000))
    intervals = {"G_main": 1, "G_reg": cfg.g_reg_interval, "D_main": 1, "D_reg": cfg.d_reg_interval}
    nets = {"G": (G, opt_G), "D": (D, opt_D)}
    tick_start, tick_time = state.images, time.perf_counter()
    next_snapshot = (state.images // _kimg_images(options.snapshot_kimg) + 1) * _kimg_images(options.snapshot_kimg)
    bar = tqdm(
        total=target / 1000,
        initial=state.images / 1000,
        unit="kimg",
        disable=not (options.progress and group.is_main),
        bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}{postfix}]",
    )
    last: dict[str, float] = {}
    set_progress = getattr(loss, "set_progress", None)  # a loss with a schedule (SemanticGAN's λ) reads the clock
    while state.images < target:
        if set_progress is not None:
            set_progress(state.images)
        real = batches.next(cfg.batch_size)
        for phase in PHASES:
            interval = intervals[phase]
            if state.step % interval:
                continue
            module, opt = nets[phase[0]]
            opt.zero_grad(set_to_none=True)
            z = torch.randn(cfg.batch_size, cfg.z_dim, device=dev)
            stats = loss.accumulate_gradients(phase, real, z, gain=float(interval))
            _average_grads(module, group)
            opt.step()
            for name, value in stats.items():
                log.report(name, value)
            if phase == "D_main" and ada is not None and "Loss/signs/real" in stats:
                signs, count = _sum_over_processes(
                    [stats["Loss/signs/real"] * cfg.batch_size, float(cfg.batch_size)], group, dev
                )
                ada.accumulate(signs, int(count))
            last.update(stats)
        _average_buffers(G, group)
        update_ema(G_ema, G, batch=total_batch, ema_kimg=cfg.ema_kimg, rampup=cfg.ema_rampup, images_seen=state.images)
        state.images += total_batch
        state.step += 1
        if ada is not None and state.step % cfg.ada_interval == 0:
            pipe.p = ada.update()
        bar.update(state.images / 1000 - bar.n)

        done = state.images >= target
        if done or state.images - tick_start >= _kimg_images(options.tick_kimg):
            now = time.perf_counter()
            speed = (state.images - tick_start) / max(now - tick_time, 1e-9)
            state.tick += 1
            record = log.flush(
                tick=state.tick,
                step=state.step,
                **{"Progress/kimg": state.images / 1000, "Timing/img_per_s": speed},
                **({"Progress/augment_p": ada.p, "Progress/rt": ada.rt} if ada is not None else {}),
            )
            bar.set_postfix_str(_progress_line(record))
            tick_start, tick_time = state.images, now
        if done or state.images >= next_snapshot:
            snapshot()
            next_snapshot += _kimg_images(options.snapshot_kimg)
    bar.close()
    if group.distributed:
        dist.barrier()
    return TrainedGan(
        images=state.images,
        steps=state.step,
        augment_p=ada.p if ada is not None else None,
        last=last,
        networks={"G": G, "D": D, "G_ema": G_ema},
    )


def _kimg_images(kimg: float) -> int:
    return max(1, int(round(kimg * 1000)))


def _progress_line(record: dict) -> str:
    parts = [
        f"G {record.get('Loss/G/loss', float('nan')):.3f}",
        f"D {record.get('Loss/D/loss', float('nan')):.3f}",
    ]
    if "Progress/augment_p" in record:
        parts.append(f"p {record['Progress/augment_p']:.3f}")
    parts.append(f"{record.get('Timing/img_per_s', 0.0):.1f} img/s")
    return ", ".join(parts)
