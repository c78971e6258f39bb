"""`pump-train gan ...`: GAN training (sampling and evaluation join this app as their own commands).

``gan train`` loads :class:`training.config.TrainSettings` once (defaults < the ``[gan]``
preset < ``--config`` TOML < ``PUMP_*`` env < flags) and passes the ``[gan]`` section on.
Multi-GPU: ``torchrun --nproc-per-node N pump-train gan train ...`` (gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from training.cli_common import ConfigOpt, DryRunOpt, QuietOpt, SeedOpt, load_train_settings, out_console

gan_app = typer.Typer(help="Train, sample and evaluate defect-patch GANs.", no_args_is_help=True)


@gan_app.command("train")
def gan_train(
    *,
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="Real patch set (its train split's defects)."),
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run folder to create (or continue with --resume)."),
    family: str | None = typer.Option(None, "--family", help="GAN family (default stylegan2)."),
    preset: str | None = typer.Option(None, "--preset", help="tiny (CPU, 64 px; default) or paper ('auto', 128 px)."),
    kimg: float | None = typer.Option(None, "--kimg", help="Train until this many thousand images (tiny: 40)."),
    snapshot_kimg: float | None = typer.Option(None, "--snapshot-kimg", help="Checkpoint + grid every N kimg."),
    tick_kimg: float | None = typer.Option(None, "--tick-kimg", help="Log line every N kimg."),
    pasted: list[Path] = typer.Option(
        [], "--pasted", help="Pasted pool made from PATCHES; its train-group rows join (repeatable)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in RUN_DIR from its latest checkpoint."),
    seed: int | None = SeedOpt,
    device: str | None = typer.Option(None, "--device", help="cpu (default), cuda, cuda:N or auto."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads per process (0 = every core)."),
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a GAN on the training split's defective patches (+ pasted copies); never on validation or test groups."""
    settings = load_train_settings(
        config,
        {
            "seed": seed,
            "gan": {
                "family": family,
                "preset": preset,
                "kimg": kimg,
                "snapshot_kimg": snapshot_kimg,
                "tick_kimg": tick_kimg,
                "device": device,
                "threads": threads,
            },
        },
    )
    from training.gan.command import resolved, train_gan_command

    if dry_run:
        out_console.print_json(json.dumps(resolved(settings.gan, seed=settings.seed)))
        return
    result = train_gan_command(
        patches_dir=patches_dir,
        run_dir=run_dir,
        settings=settings.gan,
        seed=settings.seed,
        resume=resume,
        pasted=tuple(pasted),
        progress=not quiet,
    )
    if result.get("checkpoint"):
        out_console.print_json(json.dumps(result, default=float))
