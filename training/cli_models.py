"""`pump-train classifier|segmenter|export`: the downstream-model commands (experiments: :mod:`.cli_experiments`).

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

classifier_app = typer.Typer(help="Train the ResNet-18 patch classifier.", no_args_is_help=True)
segmenter_app = typer.Typer(help="Train the FPN patch segmenter.", no_args_is_help=True)

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
PoolOpt = typer.Option([], "--pool", help="Synthetic pool ORIGIN=DIR (repeatable), e.g. pasted=data/pasted.")
EncoderOpt = typer.Option(None, "--encoder", help="smp encoder or preset name (cpu, thesis).")
HealthyShareOpt = typer.Option(None, "--healthy-share", help="Share of healthy patches (0.5 = §4.3.4; default 0).")
InitFromOpt = typer.Option(
    None,
    "--init-from",
    help="Fine-tune: start from this run's model (its architecture; model flags are refused) and keep its "
    "weights unless the fine-tune beats them on validation.",
)
ThresholdOpt = typer.Option(
    None, "--threshold", help="Pixel probability threshold (cpu preset: 0.5, then tuned on validation; thesis: 0.9)."
)


def classifier_overrides(*, preset: str | None, model: dict[str, Any], schedule: dict[str, Any]) -> dict:
    """Flag values as a ``[classifier]`` override (None = not given)."""
    return {"classifier": {"preset": preset, "model": model, "schedule": schedule}}


def patch_px_of(patches_dir: Path) -> int:
    """The patch size a model for ``patches_dir`` takes (from its patchset.json)."""
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
    init_from: Path | None = InitFromOpt,
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
        classifier_overrides(
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
    from training.models.classifier import ClassifierSpec
    from training.train.distributed import launched
    from training.train.single import load_parent_run, train_classifier_command

    section = settings.classifier
    patch_px = patch_px_of(patches_dir)
    spec = section.model.spec(patch_px)
    parent = None
    if init_from is not None:
        _refuse_model_flags(width=width, internal_px=internal_px, pooling=pooling, input_norm=input_norm)
        parent = load_parent_run(init_from, "classifier", patch_px)
        spec = ClassifierSpec(**parent.checkpoint.spec)
    with launched(section.schedule.device) as (group, device):
        result = train_classifier_command(
            patches_dir=patches_dir,
            out=out,
            spec=spec,
            schedule=section.schedule.model_copy(update={"device": device}),
            augment=augment,
            pool=pool,
            weighted=weighted_sampling,
            init_weights=init_weights,
            init_from=parent,
            val_seed=val_seed,
            progress=not quiet,
            group=group,
        )
        if group.is_main:
            _print_result(result)


def _refuse_model_flags(**flags: object) -> None:
    given = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value is not None]
    if given:
        raise typer.BadParameter(f"--init-from takes the architecture from its run; drop {', '.join(given)}")


def segmenter_overrides(
    *, preset: str | None, encoder: str | None, schedule: dict[str, Any], **fields: float | None
) -> dict:
    """Flag values as a ``[segmenter]`` override (None = not given)."""
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
    init_from: Path | None = InitFromOpt,
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
        segmenter_overrides(
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
    from training.models.segmenter import SegmenterSpec
    from training.train.distributed import launched
    from training.train.single import load_parent_run, train_segmenter_command

    section = settings.segmenter
    patch_px = patch_px_of(patches_dir)
    spec = section.model.spec(patch_px)
    parent = None
    if init_from is not None:
        _refuse_model_flags(encoder=encoder)
        parent = load_parent_run(init_from, "segmenter", patch_px)
        spec = SegmenterSpec(**parent.checkpoint.spec)
    with launched(section.schedule.device) as (group, device):
        result = train_segmenter_command(
            patches_dir=patches_dir,
            out=out,
            spec=spec,
            schedule=section.schedule.model_copy(update={"device": device}),
            augment=augment,
            pool=pool,
            healthy_share=section.healthy_share,
            threshold=section.threshold,
            tune_threshold=section.tune_threshold,
            init_from=parent,
            val_seed=val_seed,
            progress=not quiet,
            group=group,
        )
        if group.is_main:
            _print_result(result)


def export(
    *,
    model_dir: Path = typer.Argument(..., help="Run folder (or model.pt) of a trained classifier or segmenter."),
    bundle_dir: Path = typer.Argument(..., help="Bundle folder to create (model.onnx + bundle.json)."),
    patches: Path | None = typer.Option(None, "--patches", help="Patch set whose patches check ONNX parity."),
    name: str | None = typer.Option(None, "--name", help="Model name in the manifest."),
    version: str | None = typer.Option(
        None, "--version", help="Semantic version of the bundle (default: the --parent's bumped, else 0.1.0)."
    ),
    parent: Path | None = typer.Option(
        None, "--parent", help="The bundle this model was retrained from: recorded, and its version bumped."
    ),
    bump: str = typer.Option("patch", "--bump", help="Part of the parent's version to raise: patch, minor, major."),
    opset: int | None = typer.Option(None, "--opset", min=17, help="ONNX opset (default 17)."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="int8: also write model.int8.onnx (static QDQ); refused, with nothing written, when its test "
        "F1 / defect IoU on --patches falls more than 0.01 below float32.",
    ),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="--quantize int8: patch set whose (non-test) patches calibrate the int8 model."
    ),
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Export a trained model as an edge bundle; fails unless ONNX Runtime matches PyTorch (1e-3 on logits)."""
    if quantize not in (None, "int8"):
        raise typer.BadParameter(f"--quantize {quantize!r}: only 'int8' is supported")
    if bump not in ("patch", "minor", "major"):
        raise typer.BadParameter(f"--bump {bump!r}: choose patch, minor or major")
    if (quantize is None) != (calibration is None):
        raise typer.BadParameter("--quantize int8 and --calibration PATCHES go together")
    settings = load_train_settings(config, {"export": {"opset": opset}})
    if dry_run:
        return print_dry_run(settings, "export")
    from training.export import export_bundle
    from training.export.quantize import Int8Request

    report = export_bundle(
        model_dir,
        bundle_dir,
        patches=patches,
        name=name,
        version=version,
        opset=settings.export.opset,
        atol=settings.export.atol,
        overwrite=overwrite,
        int8=Int8Request(calibration=calibration) if calibration is not None else None,
        parent=parent,
        bump=bump,
    )
    out_console.print_json(report.model_dump_json())
