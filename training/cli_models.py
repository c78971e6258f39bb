"""`pump-train classifier|segmenter|experiment|export`: the downstream-model commands.

Each command loads :class:`training.config.TrainSettings` once (defaults < the section's
preset < ``--config`` TOML < ``PUMP_*`` env < flags), then passes the validated section on.
Flags keep their names; each one overrides one field of the ``[classifier]``,
``[segmenter]`` or ``[export]`` section (None = not given). Presets (``cpu``, the default,
and ``thesis``) are data in :mod:`training.train.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from training.cli_common import ConfigOpt, DryRunOpt, QuietOpt, SeedOpt, load_train_settings, out_console, print_dry_run
from training.config import TrainSettings

classifier_app = typer.Typer(help="Train the ResNet-18 patch classifier.", no_args_is_help=True)
segmenter_app = typer.Typer(help="Train the FPN patch segmenter.", no_args_is_help=True)
experiment_app = typer.Typer(help="The thesis's experiments as tables (resumable).", no_args_is_help=True)

PresetOpt = typer.Option(None, "--preset", help="cpu (default) or thesis: model size and schedule.")
IterOpt = typer.Option(None, "--iterations", help="Training iterations (one random batch each).")
ValEveryOpt = typer.Option(None, "--val-every", help="Validate every N iterations.")
BatchOpt = typer.Option(None, "--batch-size")
LrOpt = typer.Option(None, "--lr", help="Peak learning rate (one-cycle).")
DeviceOpt = typer.Option(None, "--device", help="cpu (default), cuda, cuda:N or auto.")
PoolingOpt = typer.Option(None, "--pooling", help="Global pooling of the classifier: avg (torchvision) or max.")
GeometricAugOpt = typer.Option(
    None, "--geometric-aug", help="Training augmentation: none, flips (default) or dihedral (flips + 90° turns)."
)
PhotometricAugOpt = typer.Option(
    None, "--photometric-aug", help="Max relative brightness/contrast jitter per patch (default 0 = off)."
)
InputNormOpt = typer.Option(
    None, "--input-norm", help="Input normalisation: patch (per-patch mean/std; cpu preset) or fixed (thesis preset)."
)
PrecisionOpt = typer.Option(
    None, "--precision", help="Training forward pass: fp32 or bf16 (autocast; cpu preset: bf16). Scoring stays fp32."
)
PosWeightOpt = typer.Option(None, "--pos-weight", help="BCE weight of defect patches (default 1 = plain BCE).")
WorkersOpt = typer.Option(
    1, "--workers", help="Runs trained at once in separate processes (2 on a 2-core CPU: 1.4-1.8x the throughput)."
)
PoolOpt = typer.Option([], "--pool", help="Synthetic pool ORIGIN=DIR (repeatable), e.g. pasted=data/pasted.")
EncoderOpt = typer.Option(None, "--encoder", help="smp encoder or preset name (cpu, thesis).")
HealthyShareOpt = typer.Option(None, "--healthy-share", help="Share of healthy patches (0.5 = §4.3.4; default 0).")
ThresholdOpt = typer.Option(None, "--threshold", help="Pixel probability threshold (default 0.9).")


def _classifier_overrides(*, preset: str | None, model: dict[str, Any], schedule: dict[str, Any]) -> dict:
    return {"classifier": {"preset": preset, "model": model, "schedule": schedule}}


def _patch_px(patches_dir: Path) -> int:
    from training.data.patchset import load_patchset

    return int(load_patchset(patches_dir).meta.get("geometry", {}).get("patch_px", 128))


def _print_result(result: dict) -> None:
    import json

    out_console.print_json(json.dumps(result, default=float))


@classifier_app.command("train")
def classifier_train(
    *,
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="Real patch set."),
    out: Path = typer.Argument(..., help="Run folder to create (model.pt, metrics, curves)."),
    augment: list[str] = typer.Option([], "--augment", help="SOURCE:N — add N pool patches to train (repeatable)."),
    pool: list[str] = PoolOpt,
    weighted_sampling: bool = typer.Option(
        False,
        "--weighted-sampling",
        help="Oversample defects to the share they would have after adding the --augment patches (not added then).",
    ),
    init_weights: Path | None = typer.Option(None, "--init-weights", help="Start from a local state_dict/checkpoint."),
    width: float | None = typer.Option(None, "--width", help="Channel width multiplier (1.0 = torchvision)."),
    internal_px: int | None = typer.Option(None, "--internal-px", help="Size the backbone sees (64 on CPU)."),
    pooling: str | None = PoolingOpt,
    input_norm: str | None = InputNormOpt,
    geometric_aug: str | None = GeometricAugOpt,
    photometric_aug: float | None = PhotometricAugOpt,
    val_seed: int | None = typer.Option(None, "--val-seed", help="Re-draw validation groups with this seed."),
    preset: str | None = PresetOpt,
    iterations: int | None = IterOpt,
    val_every: int | None = ValEveryOpt,
    batch_size: int | None = BatchOpt,
    lr: float | None = LrOpt,
    seed: int | None = SeedOpt,
    device: str | None = DeviceOpt,
    precision: str | None = PrecisionOpt,
    pos_weight: float | None = PosWeightOpt,
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train the classifier; prints test metrics at 0.5 and at the validation-tuned threshold."""
    settings = load_train_settings(
        config,
        _classifier_overrides(
            preset=preset,
            model={"width": width, "internal_px": internal_px, "pooling": pooling, "input_norm": input_norm},
            schedule={
                "iterations": iterations,
                "val_every": val_every,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
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
    from training.train.single import train_classifier_command

    section = settings.classifier
    result = train_classifier_command(
        patches_dir=patches_dir,
        out=out,
        spec=section.model.spec(_patch_px(patches_dir)),
        schedule=section.schedule,
        augment=augment,
        pool=pool,
        weighted=weighted_sampling,
        init_weights=init_weights,
        val_seed=val_seed,
        progress=not quiet,
    )
    _print_result(result)


def _segmenter_overrides(
    *, preset: str | None, encoder: str | None, schedule: dict[str, Any], **fields: float | None
) -> dict:
    return {"segmenter": {"preset": preset, "model": {"encoder": encoder}, "schedule": schedule, **fields}}


@segmenter_app.command("train")
def segmenter_train(
    *,
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="Real patch set."),
    out: Path = typer.Argument(..., help="Run folder to create."),
    augment: list[str] = typer.Option([], "--augment", help="SOURCE:N — add N pool pairs to train (repeatable)."),
    pool: list[str] = PoolOpt,
    encoder: str | None = EncoderOpt,
    healthy_share: float | None = HealthyShareOpt,
    threshold: float | None = ThresholdOpt,
    val_seed: int | None = typer.Option(None, "--val-seed", help="Re-draw validation groups with this seed."),
    preset: str | None = PresetOpt,
    iterations: int | None = IterOpt,
    val_every: int | None = ValEveryOpt,
    batch_size: int | None = BatchOpt,
    lr: float | None = LrOpt,
    seed: int | None = SeedOpt,
    device: str | None = DeviceOpt,
    precision: str | None = PrecisionOpt,
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train the segmenter (defective patches by default); prints test IoU and patch-level metrics."""
    settings = load_train_settings(
        config,
        _segmenter_overrides(
            preset=preset,
            encoder=encoder,
            schedule={
                "iterations": iterations,
                "val_every": val_every,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "device": device,
                "precision": precision,
            },
            healthy_share=healthy_share,
            threshold=threshold,
        ),
    )
    if dry_run:
        return print_dry_run(settings, "segmenter")
    from training.train.single import train_segmenter_command

    section = settings.segmenter
    result = train_segmenter_command(
        patches_dir=patches_dir,
        out=out,
        spec=section.model.spec(_patch_px(patches_dir)),
        schedule=section.schedule,
        augment=augment,
        pool=pool,
        healthy_share=section.healthy_share,
        threshold=section.threshold,
        val_seed=val_seed,
        progress=not quiet,
    )
    _print_result(result)


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
    extra = {} if task == CLASSIFICATION else {"healthy_share": section.healthy_share, "threshold": section.threshold}
    config = ExperimentConfig(
        task=task,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        seeds=seeds,
        sizes=size_list,
        schedule=section.schedule,
        spec=section.model.spec(_patch_px(patches_dir)),
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
        _classifier_overrides(
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
        _segmenter_overrides(
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


def export(
    *,
    model_dir: Path = typer.Argument(..., help="Run folder (or model.pt) of a trained classifier or segmenter."),
    bundle_dir: Path = typer.Argument(..., help="Bundle folder to create (model.onnx + bundle.json)."),
    patches: Path | None = typer.Option(None, "--patches", help="Patch set whose patches check ONNX parity."),
    name: str | None = typer.Option(None, "--name", help="Model name in the manifest."),
    version: str = typer.Option("0.1.0", "--version", help="Semantic version of the bundle."),
    opset: int | None = typer.Option(None, "--opset", min=17, help="ONNX opset (default 17)."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Export a trained model as an edge bundle; fails unless ONNX Runtime matches PyTorch (1e-4)."""
    settings = load_train_settings(config, {"export": {"opset": opset}})
    if dry_run:
        return print_dry_run(settings, "export")
    from training.export import export_bundle

    report = export_bundle(
        model_dir,
        bundle_dir,
        patches=patches,
        name=name,
        version=version,
        opset=settings.export.opset,
        atol=settings.export.atol,
        overwrite=overwrite,
    )
    out_console.print_json(report.model_dump_json())
