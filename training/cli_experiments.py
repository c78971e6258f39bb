"""`pump-train experiment classification|segmentation`: the thesis's tables (resumable).

Settings as for the single-run commands (:mod:`training.cli_models`): the ``[classifier]`` or
``[segmenter]`` section, with the same flags overriding it; the experiment's own choices
(methods, seeds, sizes, pools, workers) are flags.
"""

from __future__ import annotations

from pathlib import Path

import typer

from training.cli_common import ConfigOpt, DryRunOpt, QuietOpt, load_train_settings, out_console, print_dry_run
from training.cli_models import (
    BatchOpt,
    DeviceOpt,
    EncoderOpt,
    GeometricAugOpt,
    HealthyShareOpt,
    InputNormOpt,
    IterOpt,
    LrOpt,
    PhotometricAugOpt,
    PoolingOpt,
    PoolOpt,
    PosWeightOpt,
    PrecisionOpt,
    PresetOpt,
    ThresholdOpt,
    ValEveryOpt,
    classifier_overrides,
    patch_px_of,
    segmenter_overrides,
)
from training.config import TrainSettings

experiment_app = typer.Typer(help="The thesis's experiments as tables (resumable).", no_args_is_help=True)
WorkersOpt = typer.Option(
    1, "--workers", help="Runs trained at once in separate processes (2 on a 2-core CPU: 1.4-1.8x the throughput)."
)


def _experiment(
    *,
    task: str,
    patches_dir: Path,
    out: Path,
    methods: str,
    seeds: int,
    first_seed: int,
    augment_size: int,
    sizes: str | None,
    pool: list[str],
    settings: TrainSettings,
    quiet: bool,
    workers: int = 1,
) -> None:
    from training.data.pools import parse_pools
    from training.experiments.report import markdown_table, plot_sweep
    from training.experiments.runner import CLASSIFICATION, ExperimentConfig, run_experiment

    size_list = tuple(int(s) for s in sizes.split(",")) if sizes else (augment_size,)
    section = settings.classifier if task == CLASSIFICATION else settings.segmenter
    extra = (
        {}
        if task == CLASSIFICATION
        else {
            "healthy_share": section.healthy_share,
            "threshold": section.threshold,
            "tune_threshold": section.tune_threshold,
        }
    )
    config = ExperimentConfig(
        task=task,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        seeds=seeds,
        sizes=size_list,
        schedule=section.schedule,
        spec=section.model.spec(patch_px_of(patches_dir)),
        pools={k: str(v) for k, v in parse_pools(pool).items()},
        first_seed=first_seed,
        **extra,
    )
    rows = run_experiment(patches_dir, out, config, progress=not quiet, workers=workers)
    table = markdown_table(rows, task, title=f"{task}: {patches_dir}")
    (out / "table.md").write_text(table, encoding="utf-8")
    if sizes:
        plot_sweep(rows, task, out / "sweep.png")
    out_console.print(table)


ExpMethods = typer.Option("baseline,weighted,pasted", "--methods", help="Comma-separated methods.")
ExpSeeds = typer.Option(3, "--seeds", help="Repeats; each re-draws validation and synthetic draws.")
ExpFirstSeed = typer.Option(
    0, "--first-seed", help="First seed (runs FIRST..FIRST+SEEDS-1; lets seeds run on several machines)."
)
ExpSizes = typer.Option(None, "--sizes", help="Sweep of synthetic-set sizes, e.g. 0,1000,2000,4000,6000.")


@experiment_app.command("classification")
def experiment_classification(
    *,
    patches_dir: Path = typer.Argument(..., metavar="PATCHES"),
    out: Path = typer.Option(Path("runs/experiment-classification"), "--out", help="Folder (resumable)."),
    methods: str = ExpMethods,
    seeds: int = ExpSeeds,
    first_seed: int = ExpFirstSeed,
    augment_size: int = typer.Option(2000, "--augment-size", help="Synthetic patches added (thesis: 2000)."),
    sizes: str | None = ExpSizes,
    pool: list[str] = PoolOpt,
    width: float | None = typer.Option(None, "--width"),
    internal_px: int | None = typer.Option(None, "--internal-px"),
    pooling: str | None = PoolingOpt,
    input_norm: str | None = InputNormOpt,
    geometric_aug: str | None = GeometricAugOpt,
    photometric_aug: float | None = PhotometricAugOpt,
    preset: str | None = PresetOpt,
    iterations: int | None = IterOpt,
    val_every: int | None = ValEveryOpt,
    batch_size: int | None = BatchOpt,
    lr: float | None = LrOpt,
    device: str | None = DeviceOpt,
    precision: str | None = PrecisionOpt,
    pos_weight: float | None = PosWeightOpt,
    workers: int = WorkersOpt,
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Table 3.1 / A.1: classifier metrics per method, mean ± std over seeds, with verdicts."""
    settings = load_train_settings(
        config,
        classifier_overrides(
            preset=preset,
            model={"width": width, "internal_px": internal_px, "pooling": pooling, "input_norm": input_norm},
            schedule={
                "iterations": iterations,
                "val_every": val_every,
                "batch_size": batch_size,
                "lr": lr,
                "device": device,
                "geometric_aug": geometric_aug,
                "photometric_aug": photometric_aug,
                "precision": precision,
                "pos_weight": pos_weight,
            },
        ),
    )
    if dry_run:
        return print_dry_run(settings, "classifier")
    _experiment(
        task="classification",
        patches_dir=patches_dir,
        out=out,
        methods=methods,
        seeds=seeds,
        first_seed=first_seed,
        augment_size=augment_size,
        sizes=sizes,
        pool=pool,
        settings=settings,
        quiet=quiet,
        workers=workers,
    )


@experiment_app.command("segmentation")
def experiment_segmentation(
    *,
    patches_dir: Path = typer.Argument(..., metavar="PATCHES"),
    out: Path = typer.Option(Path("runs/experiment-segmentation"), "--out", help="Folder (resumable)."),
    methods: str = typer.Option("baseline,pasted", "--methods"),
    seeds: int = ExpSeeds,
    first_seed: int = ExpFirstSeed,
    augment_size: int = typer.Option(500, "--augment-size", help="Synthetic pairs added (thesis: 500)."),
    sizes: str | None = ExpSizes,
    pool: list[str] = PoolOpt,
    encoder: str | None = EncoderOpt,
    healthy_share: float | None = HealthyShareOpt,
    threshold: float | None = ThresholdOpt,
    preset: str | None = PresetOpt,
    iterations: int | None = IterOpt,
    val_every: int | None = ValEveryOpt,
    batch_size: int | None = BatchOpt,
    lr: float | None = LrOpt,
    device: str | None = DeviceOpt,
    precision: str | None = PrecisionOpt,
    workers: int = WorkersOpt,
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Table 3.3 / A.2: segmenter metrics per method, mean ± std over seeds, with verdicts."""
    settings = load_train_settings(
        config,
        segmenter_overrides(
            preset=preset,
            encoder=encoder,
            schedule={
                "iterations": iterations,
                "val_every": val_every,
                "batch_size": batch_size,
                "lr": lr,
                "device": device,
                "precision": precision,
            },
            healthy_share=healthy_share,
            threshold=threshold,
        ),
    )
    if dry_run:
        return print_dry_run(settings, "segmenter")
    _experiment(
        task="segmentation",
        patches_dir=patches_dir,
        out=out,
        methods=methods,
        seeds=seeds,
        first_seed=first_seed,
        augment_size=augment_size,
        sizes=sizes,
        pool=pool,
        settings=settings,
        quiet=quiet,
        workers=workers,
    )
