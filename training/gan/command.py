"""``pump-train gan train``: settings -> family config -> data -> run folder -> the loop.

The run folder is ``RUN_DIR`` as given (like every other `pump-train` command's OUT): it must
not exist yet (or be empty), unless ``--resume`` continues the run already in it. It explains
itself::

    RUN_DIR/
      config.json     command, argv, seed, [gan] settings, the family config (one GPU and per
                      process), process count, device, versions, input fingerprints
      data.json       patch set, pasted pools, split (train), counts kept/dropped, data fingerprint
      stats.jsonl     one line per tick: Loss/..., Progress/kimg, Progress/augment_p, Timing/img_per_s
      grids/          reals.png, fakes-init.png, fakes-<images>.png (fixed latents, G_ema)
      checkpoints/    snapshot-<images>.pt (state dicts + config; see training.gan.checkpoint)
      result.json     kimg, steps, final ADA p, last losses, latest grid and checkpoint

Under ``torchrun --nproc-per-node N`` every process runs this; only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.distributed as dist
from pydantic import ValidationError

from training.gan.checkpoint import find_checkpoint, list_checkpoints, load_checkpoint
from training.gan.data import RUN_DATA_NAME, load_gan_data
from training.gan.families import GanFamily, get_family
from training.gan.loop import GRID_DIR, LoopOptions, train_gan
from training.gan.settings import GanSettings
from training.outputs import provenance, write_json_atomic
from training.train.distributed import init_process_group
from training.train.runtime import resolve_device, set_threads


def family_config(settings: GanSettings) -> tuple[GanFamily, Any]:
    """The family and its one-GPU config (preset + ``[gan.<family>]`` overrides); bad overrides name the table."""
    family = get_family(settings.family)
    try:
        return family, family.config(settings.preset, settings.family_overrides())
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(f"gan.{family.config_section}: {problems}") from None


def resolved(settings: GanSettings, *, seed: int) -> dict:
    """What ``--dry-run`` prints: the ``[gan]`` section and the family config it resolves to."""
    family, cfg = family_config(settings)
    return {"seed": seed, "gan": settings.model_dump(mode="json"), family.key: cfg.model_dump(mode="json")}


def _prepare_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        find_checkpoint(run_dir)  # a clear error when there is nothing to resume
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"{run_dir} already exists and is not empty; pass --resume to continue that run")
    run_dir.mkdir(parents=True, exist_ok=True)


def train_gan_command(
    *,
    patches_dir: Path,
    run_dir: Path,
    settings: GanSettings,
    seed: int,
    resume: bool = False,
    pasted: tuple[Path, ...] = (),
    progress: bool = True,
) -> dict:
    """Train a GAN run folder (see the module docstring); returns ``result.json``'s contents."""
    run_dir = Path(run_dir)
    group, device = init_process_group(settings.device)
    started_here = group.distributed
    try:
        set_threads(settings.threads)
        device = str(resolve_device(device))
        family, cfg = family_config(settings)
        if resume:  # continue with exactly the config the run started with
            saved = load_checkpoint(find_checkpoint(run_dir))
            family = get_family(saved["family"])
            cfg = family.parse_config(saved["config"])
        if group.is_main:
            _prepare_run_dir(run_dir, resume)
        if group.distributed:
            dist.barrier()
        if family.load_data is None:
            data = load_gan_data(patches_dir, resolution=cfg.resolution, pasted=tuple(pasted))
        else:
            data = family.load_data(
                patches_dir, resolution=cfg.resolution, pasted=tuple(pasted), options=settings.data_options(), seed=seed
            )
        if family.fit_config is not None and not resume:
            cfg = family.fit_config(cfg, data)
        if group.is_main:
            config = {
                "gan": settings.model_dump(mode="json"),
                "family": family.key,
                "origin": family.origin,
                "family_config": cfg.model_dump(mode="json"),
                "per_process_config": family.for_gpus(cfg, group.world_size).model_dump(mode="json"),
                "world_size": group.world_size,
                "device": device,
                "resumed_from": str(find_checkpoint(run_dir)) if resume else None,
            }
            inputs = {"patches": str(Path(patches_dir).resolve()), "data_fingerprint": data.fingerprint}
            name = f"config-resume-{len(list_checkpoints(run_dir))}.json" if resume else "config.json"
            write_json_atomic(run_dir / name, provenance("gan train", config, seed, inputs=inputs))
            write_json_atomic(run_dir / RUN_DATA_NAME, data.describe())
        options = LoopOptions(
            kimg=settings.kimg,
            snapshot_kimg=settings.snapshot_kimg,
            tick_kimg=settings.tick_kimg,
            grid_size=settings.grid_size,
            seed=seed,
            progress=progress,
        )
        trained = train_gan(
            family=family,
            config=cfg,
            images=data.loop_input(),
            run_dir=run_dir,
            options=options,
            device=device,
            group=group,
            resume=resume,
        )
        result = {
            **trained.summary(),
            "family": family.key,
            "images_in_data": int(len(data.images)),
            "checkpoint": str(find_checkpoint(run_dir)) if group.is_main else None,
            "grid": str(run_dir / GRID_DIR / f"fakes-{trained.images:012d}.png") if group.is_main else None,
        }
        if group.is_main:
            write_json_atomic(run_dir / "result.json", result)
        return result
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()
