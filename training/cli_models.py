"""`pump-train classifier|segmenter|experiment|export`: the downstream-model commands.

Presets: ``cpu`` (default; what fits this team's 2-core machines: ResNet-18 topology at
half width seeing 64 px with global max pooling and per-patch input normalisation,
2500 iterations with a bfloat16 forward pass — the smallest setting whose baseline passed
the learning gate on Magnetic Tile —, SE-ResNet-18 FPN) and ``thesis`` (full ResNet-18 at 128 px for
80K iterations, se_resnext50_32x4d FPN for 20K). Any schedule flag overrides the preset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from training.models.classifier import ClassifierSpec
from training.models.segmenter import ENCODER_PRESETS, SegmenterSpec
from training.train.schedule import Schedule

out_console = Console()
classifier_app = typer.Typer(help="Train the ResNet-18 patch classifier.", no_args_is_help=True)
segmenter_app = typer.Typer(help="Train the FPN patch segmenter.", no_args_is_help=True)
experiment_app = typer.Typer(help="The thesis's experiments as tables (resumable).", no_args_is_help=True)


@dataclass(frozen=True)
class Preset:
    classifier: ClassifierSpec
    classifier_schedule: Schedule
    segmenter: SegmenterSpec
    segmenter_schedule: Schedule


PRESETS = {
    "cpu": Preset(
        ClassifierSpec(width=0.5, internal_px=64, pooling="max", input_norm="patch"),
        Schedule(iterations=2500, val_every=250, batch_size=64, precision="bf16"),
        SegmenterSpec(encoder=ENCODER_PRESETS["cpu"]),
        Schedule(iterations=600, val_every=100, batch_size=16, lr=1e-3),
    ),
    "thesis": Preset(
        ClassifierSpec(),
        Schedule(iterations=80_000, val_every=1000, batch_size=64, lr=1e-3),
        SegmenterSpec(encoder=ENCODER_PRESETS["thesis"]),
        Schedule(iterations=20_000, val_every=400, batch_size=16, lr=1e-3),
    ),
}

PresetOpt = typer.Option("cpu", "--preset", help="cpu (default) or thesis: model size and schedule.")
IterOpt = typer.Option(None, "--iterations", help="Training iterations (one random batch each).")
ValEveryOpt = typer.Option(None, "--val-every", help="Validate every N iterations.")
BatchOpt = typer.Option(None, "--batch-size")
LrOpt = typer.Option(None, "--lr", help="Peak learning rate (one-cycle).")
SeedOpt = typer.Option(0, "--seed")
DeviceOpt = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto.")
QuietOpt = typer.Option(False, "--quiet", "-q")
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


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"--preset {name!r}: choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def _schedule(base: Schedule, **flags) -> Schedule:
    """The preset's schedule with the schedule flags that were given (None = not given)."""
    return Schedule(**{**base.to_dict(), **{k: v for k, v in flags.items() if v is not None}})


def _classifier_spec(
    preset: Preset,
    width: float | None,
    internal_px: int | None,
    patch_px: int,
    pooling: str | None = None,
    input_norm: str | None = None,
) -> ClassifierSpec:
    spec = preset.classifier.to_dict()
    overrides = {"width": width, "internal_px": internal_px, "pooling": pooling, "input_norm": input_norm}
    spec.update({k: v for k, v in overrides.items() if v is not None})
    spec["input_px"] = patch_px
    spec["internal_px"] = min(spec["internal_px"], patch_px)
    return ClassifierSpec(**spec)


def _patch_px(patches_dir: Path) -> int:
    from training.data.patchset import load_patchset

    return int(load_patchset(patches_dir).meta.get("geometry", {}).get("patch_px", 128))


def _segmenter_spec(preset: Preset, encoder: str | None, patch_px: int) -> SegmenterSpec:
    spec = {**preset.segmenter.to_dict(), "input_px": patch_px}
    if encoder:
        spec["encoder"] = ENCODER_PRESETS.get(encoder, encoder)
    return SegmenterSpec(**spec)


@classifier_app.command("train")
def classifier_train(
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="Real patch set."),
    out: Path = typer.Argument(..., help="Run folder to create (model.pt, metrics, curves)."),
    augment: list[str] = typer.Option([], "--augment", help="SOURCE:N — add N pool patches to train (repeatable)."),
    pool: list[str] = PoolOpt,
    weighted_sampling: bool = typer.Option(
        False,
        "--weighted-sampling",
        help="Oversample defects to the share they would have after adding the --augment patches.",
    ),
    init_weights: Path | None = typer.Option(None, "--init-weights", help="Start from a local state_dict/checkpoint."),
    width: float | None = typer.Option(None, "--width", help="Channel width multiplier (1.0 = torchvision)."),
    internal_px: int | None = typer.Option(None, "--internal-px", help="Size the backbone sees (64 on CPU)."),
    pooling: str | None = PoolingOpt,
    input_norm: str | None = InputNormOpt,
    geometric_aug: str | None = GeometricAugOpt,
    photometric_aug: float | None = PhotometricAugOpt,
    val_seed: int | None = typer.Option(None, "--val-seed", help="Re-draw validation groups with this seed."),
    preset: str = PresetOpt,
    iterations: int | None = IterOpt,
    val_every: int | None = ValEveryOpt,
    batch_size: int | None = BatchOpt,
    lr: float | None = LrOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    precision: str | None = PrecisionOpt,
    pos_weight: float | None = PosWeightOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train the classifier; prints test metrics at 0.5 and at the validation-tuned threshold."""
    from training.train.single import train_classifier_command

    chosen = _preset(preset)
    spec = _classifier_spec(chosen, width, internal_px, _patch_px(patches_dir), pooling, input_norm)
    schedule = _schedule(
        chosen.classifier_schedule,
        iterations=iterations,
        val_every=val_every,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        geometric_aug=geometric_aug,
        photometric_aug=photometric_aug,
        precision=precision,
        pos_weight=pos_weight,
    )
    result = train_classifier_command(
        patches_dir, out, spec, schedule, augment, pool, weighted_sampling, init_weights, val_seed, progress=not quiet
    )
    out_console.print_json(json.dumps(result, default=float))


@segmenter_app.command("train")
def segmenter_train(
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="Real patch set."),
    out: Path = typer.Argument(..., help="Run folder to create."),
    augment: list[str] = typer.Option([], "--augment", help="SOURCE:N — add N pool pairs to train (repeatable)."),
    pool: list[str] = PoolOpt,
    encoder: str | None = typer.Option(None, "--encoder", help="smp encoder or preset name (cpu, thesis)."),
    healthy_share: float = typer.Option(0.0, "--healthy-share", help="Share of healthy patches (0.5 = §4.3.4)."),
    threshold: float = typer.Option(0.9, "--threshold", help="Pixel probability threshold."),
    val_seed: int | None = typer.Option(None, "--val-seed", help="Re-draw validation groups with this seed."),
    preset: str = PresetOpt,
    iterations: int | None = IterOpt,
    val_every: int | None = ValEveryOpt,
    batch_size: int | None = BatchOpt,
    lr: float | None = LrOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    precision: str | None = PrecisionOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train the segmenter (defective patches by default); prints test IoU and patch-level metrics."""
    from training.train.single import train_segmenter_command

    chosen = _preset(preset)
    spec = _segmenter_spec(chosen, encoder, _patch_px(patches_dir))
    schedule = _schedule(
        chosen.segmenter_schedule,
        iterations=iterations,
        val_every=val_every,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        precision=precision,
    )
    result = train_segmenter_command(
        patches_dir, out, spec, schedule, augment, pool, healthy_share, threshold, val_seed, progress=not quiet
    )
    out_console.print_json(json.dumps(result, default=float))


def _experiment(
    task: str,
    patches_dir: Path,
    out: Path,
    methods: str,
    seeds: int,
    first_seed: int,
    augment_size: int,
    sizes: str | None,
    pool: list[str],
    preset: Preset,
    spec,
    schedule: Schedule,
    quiet: bool,
    workers: int = 1,
    **extra,
) -> None:
    from training.experiments.report import markdown_table, plot_sweep
    from training.experiments.runner import ExperimentConfig, run_experiment
    from training.experiments.sources import parse_pools

    size_list = tuple(int(s) for s in sizes.split(",")) if sizes else (augment_size,)
    config = ExperimentConfig(
        task=task,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        seeds=seeds,
        sizes=size_list,
        schedule=schedule,
        spec=spec,
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
    preset: str = PresetOpt,
    iterations: int | None = IterOpt,
    val_every: int | None = ValEveryOpt,
    batch_size: int | None = BatchOpt,
    lr: float | None = LrOpt,
    device: str = DeviceOpt,
    precision: str | None = PrecisionOpt,
    pos_weight: float | None = PosWeightOpt,
    workers: int = WorkersOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Table 3.1 / A.1: classifier metrics per method, mean ± std over seeds, with verdicts."""
    chosen = _preset(preset)
    spec = _classifier_spec(chosen, width, internal_px, _patch_px(patches_dir), pooling, input_norm)
    schedule = _schedule(
        chosen.classifier_schedule,
        iterations=iterations,
        val_every=val_every,
        batch_size=batch_size,
        lr=lr,
        seed=None,
        device=device,
        geometric_aug=geometric_aug,
        photometric_aug=photometric_aug,
        precision=precision,
        pos_weight=pos_weight,
    )
    _experiment(
        "classification",
        patches_dir,
        out,
        methods,
        seeds,
        first_seed,
        augment_size,
        sizes,
        pool,
        chosen,
        spec,
        schedule,
        quiet,
        workers,
    )


@experiment_app.command("segmentation")
def experiment_segmentation(
    patches_dir: Path = typer.Argument(..., metavar="PATCHES"),
    out: Path = typer.Option(Path("runs/experiment-segmentation"), "--out", help="Folder (resumable)."),
    methods: str = typer.Option("baseline,pasted", "--methods"),
    seeds: int = ExpSeeds,
    first_seed: int = ExpFirstSeed,
    augment_size: int = typer.Option(500, "--augment-size", help="Synthetic pairs added (thesis: 500)."),
    sizes: str | None = ExpSizes,
    pool: list[str] = PoolOpt,
    encoder: str | None = typer.Option(None, "--encoder"),
    healthy_share: float = typer.Option(0.0, "--healthy-share"),
    threshold: float = typer.Option(0.9, "--threshold"),
    preset: str = PresetOpt,
    iterations: int | None = IterOpt,
    val_every: int | None = ValEveryOpt,
    batch_size: int | None = BatchOpt,
    lr: float | None = LrOpt,
    device: str = DeviceOpt,
    precision: str | None = PrecisionOpt,
    workers: int = WorkersOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Table 3.3 / A.2: segmenter metrics per method, mean ± std over seeds, with verdicts."""
    chosen = _preset(preset)
    spec = _segmenter_spec(chosen, encoder, _patch_px(patches_dir))
    schedule = _schedule(
        chosen.segmenter_schedule,
        iterations=iterations,
        val_every=val_every,
        batch_size=batch_size,
        lr=lr,
        seed=None,
        device=device,
        precision=precision,
    )
    _experiment(
        "segmentation",
        patches_dir,
        out,
        methods,
        seeds,
        first_seed,
        augment_size,
        sizes,
        pool,
        chosen,
        spec,
        schedule,
        quiet,
        workers,
        healthy_share=healthy_share,
        threshold=threshold,
    )


def export(
    model_dir: Path = typer.Argument(..., help="Run folder (or model.pt) of a trained classifier or segmenter."),
    bundle_dir: Path = typer.Argument(..., help="Bundle folder to create (model.onnx + bundle.json)."),
    patches: Path | None = typer.Option(None, "--patches", help="Patch set whose patches check ONNX parity."),
    name: str | None = typer.Option(None, "--name", help="Model name in the manifest."),
    version: str = typer.Option("0.1.0", "--version", help="Semantic version of the bundle."),
    opset: int = typer.Option(17, "--opset", min=17),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Export a trained model as an edge bundle; fails unless ONNX Runtime matches PyTorch (1e-4)."""
    from training.export import export_bundle

    report = export_bundle(
        model_dir, bundle_dir, patches=patches, name=name, version=version, opset=opset, overwrite=overwrite
    )
    out_console.print_json(report.model_dump_json())
