"""`pump-train`: the training side's commands.

Every command reads the one settings model (flags > ``PUMP_*`` env > ``--config`` TOML >
defaults), takes ``--seed``, offers ``--dry-run`` (print the resolved config and stop),
writes its output atomically, and records what made it beside the output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from shared.config import ConfigError
from shared.pixels import ColorPolicy, DepthPolicy
from training.cli_common import ConfigOpt, DryRunOpt, OverwriteOpt, QuietOpt, SeedOpt, console, out_console
from training.cli_common import load_train_settings as _settings
from training.cli_common import print_dry_run as _dry_run
from training.cli_common import print_json as _print_json
from training.data.blend import BlendMode
from training.data.importers import IMPORTERS, ImportProblemsError, get_importer, run_import
from training.data.paste import PasteLocation
from training.data.patches import PatchMode
from training.data.table import ManifestError
from training.outputs import OutputExistsError

app = typer.Typer(
    help="Training side of pump inspection: synthetic frames, dataset import, patches, defect pasting, "
    "classifier and segmenter training, experiments, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def synth(
    *,
    out: Path = typer.Argument(..., help="Output folder (images/, masks/, frames.jsonl, synth.json)."),
    frames: int = typer.Option(16, "--frames", "-n", min=1, help="Number of frames to render."),
    width: int | None = typer.Option(None, "--width", help="Frame width in px (default 3200)."),
    height: int | None = typer.Option(None, "--height", help="Frame height in px (default 2224)."),
    seed: int | None = SeedOpt,
    config: Path | None = ConfigOpt,
    overwrite: bool = OverwriteOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Render synthetic pump-part frames with defects and pixel masks (the embedded default dataset)."""
    from training.synth.writer import write_synth_set

    settings = _settings(config, {"seed": seed, "synth": {"width_px": width, "height_px": height}})
    if dry_run:
        return _dry_run(settings, "synth", "geometry")
    summary = write_synth_set(out, settings.synth, frames, settings.seed, overwrite=overwrite, progress=not quiet)
    out_console.print(summary.format())


@app.command("import")
def import_(
    *,
    kind: str = typer.Argument(..., help=f"Source layout: {', '.join(IMPORTERS)}."),
    src: Path = typer.Argument(..., help="Source folder."),
    out: Path = typer.Argument(..., help="Dataset folder to create."),
    color: ColorPolicy | None = typer.Option(None, "--color", help="Color inputs: gray (default) or keep."),
    depth: DepthPolicy | None = typer.Option(
        None, "--depth", help="16-bit inputs: scale16 (default), scale12, minmax."
    ),
    mask_threshold: int | None = typer.Option(None, "--mask-threshold", help="Defect where mask > this (default 127)."),
    skip_bad: bool | None = typer.Option(None, "--skip-bad/--no-skip-bad", help="Skip bad files and report them."),
    group_regex: str | None = typer.Option(None, "--group-regex", help="folder: regex on the stem; group 1 = group."),
    config: Path | None = ConfigOpt,
    overwrite: bool = OverwriteOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Import a source folder (synth, magnetic-tile, mvtec, folder) into the one dataset format."""
    spec = get_importer(kind)
    settings = _settings(
        config,
        {
            "import": {
                "color": color,
                "depth": depth,
                "mask_threshold": mask_threshold,
                "skip_bad": skip_bad,
                "group_regex": group_regex,
            }
        },
    )
    if dry_run:
        return _dry_run(settings, "import")
    report = run_import(spec, src, out, settings.import_, overwrite=overwrite, progress=not quiet)
    _print_json(f"imported {report['imported']} images into {out}", report)


@app.command()
def patches(
    *,
    dataset: Path = typer.Argument(..., help="Dataset folder (from `pump-train import`)."),
    out: Path = typer.Argument(..., help="Patch set folder to create."),
    mode: PatchMode | None = typer.Option(None, "--mode", help="random (thesis, default) or grid (edge tiling)."),
    per_image: int | None = typer.Option(None, "--per-image", help="random mode: tiles per image (default 64)."),
    crop: int | None = typer.Option(None, "--crop", help="Center crop side in px; 0 = whole image (default 1920)."),
    tile: int | None = typer.Option(None, "--tile", help="Tile side in frame px (default 256)."),
    patch: int | None = typer.Option(None, "--patch", help="Patch side after resizing (default 128)."),
    test_fraction: float | None = typer.Option(None, "--test-fraction", help="Test share of groups (default 0.25)."),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Validation share of train groups (0.2)."),
    split_seed: int | None = typer.Option(None, "--split-seed", help="Seed of the test split (default --seed)."),
    val_seed: int | None = typer.Option(None, "--val-seed", help="Seed of the validation split (default --seed)."),
    seed: int | None = SeedOpt,
    config: Path | None = ConfigOpt,
    overwrite: bool = OverwriteOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Cut dataset images into patches (center crop, tiles, resize) with group-safe splits."""
    from training.data.dataset import load_dataset
    from training.data.patches import make_patches

    settings = _settings(
        config,
        {
            "seed": seed,
            "geometry": {"crop_px": crop, "tile_px": tile, "patch_px": patch},
            "patches": {
                "mode": mode,
                "patches_per_image": per_image,
                "test_fraction": test_fraction,
                "val_fraction": val_fraction,
                "split_seed": split_seed,
                "val_seed": val_seed,
            },
        },
    )
    if dry_run:
        return _dry_run(settings, "geometry", "patches")
    summary = make_patches(
        load_dataset(dataset),
        out,
        settings.geometry,
        settings.patches,
        seed=settings.seed,
        overwrite=overwrite,
        progress=not quiet,
    )
    _print_json(f"wrote {summary['patches']} patches to {out}", summary)


@app.command()
def paste(
    *,
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="Real patch set (from `pump-train patches`)."),
    out: Path = typer.Argument(..., help="Patch set folder for the pasted patches."),
    per_defect: int | None = typer.Option(None, "--per-defect", "-k", help="Pasted copies per defect (default 4)."),
    location: PasteLocation | None = typer.Option(None, "--location", help="fixed, free or auto (default)."),
    tolerance: int | None = typer.Option(None, "--location-tolerance", help="fixed: alignment search, px (24)."),
    brightness: float | None = typer.Option(None, "--brightness-tolerance", help="Max mean-intensity difference (10)."),
    blend: BlendMode | None = typer.Option(None, "--blend", help="alpha (default) or seamless (cv2.seamlessClone)."),
    seed: int | None = SeedOpt,
    config: Path | None = ConfigOpt,
    overwrite: bool = OverwriteOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Defect-pasted augmentation: copy real defects onto good patches of other parts."""
    from training.data.paste import make_pasted
    from training.data.patchset import load_patchset

    settings = _settings(
        config,
        {
            "seed": seed,
            "paste": {
                "per_defect": per_defect,
                "location": location,
                "location_tolerance_px": tolerance,
                "brightness_tolerance": brightness,
                "blend": blend,
            },
        },
    )
    if dry_run:
        return _dry_run(settings, "paste")
    summary = make_pasted(
        load_patchset(patches_dir), out, settings.paste, settings.seed, overwrite=overwrite, progress=not quiet
    )
    _print_json(f"wrote {summary['pasted']} pasted patches to {out}", summary)


@app.command()
def show(
    *,
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="A patch set (real or pasted)."),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="PNG to write."),
    rows: int = typer.Option(6, "--rows", min=1),
    columns: int = typer.Option(8, "--columns", min=2),
    scale: int = typer.Option(2, "--scale", min=1, max=8, help="Pixel zoom of each patch."),
    seed: int = typer.Option(0, "--seed", help="Which patches are drawn."),
) -> None:
    """Draw a grid of patches with defect outlines (pasted sets: real source beside its pasted copies)."""
    from training.data.show import write_grid

    path = write_grid(patches_dir, out, rows=rows, columns=columns, scale=scale, seed=seed)
    out_console.print(f"wrote {path}")


@app.command()
def ingest(
    *,
    export: Path = typer.Argument(..., metavar="EXPORT", help="Uncertain-patch export (`pump-edge export-uncertain`)."),
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="Patch set to add the line patches to."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the result as a new patch set (default: update PATCHES in place, atomically)."
    ),
    overwrite: bool = OverwriteOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Verify the export and report; write nothing."),
    max_member_mb: float = typer.Option(
        16.0, "--max-member-mb", min=0.001, max=1e6, help="Largest crop PNG accepted from the archive (MB)."
    ),
    max_total_mb: float = typer.Option(
        8192.0, "--max-total-mb", min=0.001, max=1e7, help="Most bytes the archive may unpack to in all (MB)."
    ),
) -> None:
    """Add uncertain patches from the line as origin=line, unlabelled rows (the pool for GAN retraining).

    The archive is checked member by member on its tar headers before anything is unpacked: only
    the manifest and the crops it lists, at their listed sizes, within the size limits.
    """
    from training.data.ingest import MB, IngestLimits, ingest_export

    limits = IngestLimits(member_bytes=int(max_member_mb * MB), total_bytes=int(max_total_mb * MB))
    report = ingest_export(export, patches_dir, out=out, overwrite=overwrite, dry_run=dry_run, limits=limits)
    verb = "would add" if dry_run else "added"
    _print_json(f"{verb} {report['added']} line patches to {report['out']} ({report['duplicates']} duplicates)", report)


@app.command()
def label(
    *,
    patches_dir: Path = typer.Argument(..., metavar="PATCHES", help="Patch set holding ingested line patches."),
    csv_file: Path = typer.Option(..., "--csv", help="CSV: id,label[,mask] (good/defect/a known class; mask PNG)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the result as a new patch set (default: update PATCHES in place, atomically)."
    ),
    overwrite: bool = OverwriteOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every row and report; write nothing."),
) -> None:
    """Label ingested line patches (origin=line) from a CSV: they become training rows of every later run.

    Every row is checked first (unknown ids, other origins, bad labels or masks are refused with
    the row number); then the patch set is rewritten atomically. Test and validation are unchanged.
    """
    from training.data.label import apply_labels

    report = apply_labels(csv_file, patches_dir, out=out, overwrite=overwrite, dry_run=dry_run)
    verb = "would label" if dry_run else "labelled"
    _print_json(
        f"{verb} {report['labelled']} line patches ({report['good']} good, {report['defect']} defect, "
        f"{report['with_mask']} with a mask) in {report['out']}; {report['unlabelled_left']} still unlabelled",
        report,
    )


@app.command()
def demo(
    *,
    out: Path = typer.Argument(Path("demo-out"), help="Folder for every stage's output."),
    frames: int | None = typer.Option(None, "--frames", "-n", min=2, help="Synthetic frames to render (default 96)."),
    width: int | None = typer.Option(None, "--width", help="Frame width (demo default 1100; thesis camera 3200)."),
    height: int | None = typer.Option(None, "--height", help="Frame height (demo default 800; thesis camera 2224)."),
    seed: int | None = SeedOpt,
    config: Path | None = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """The main job on the embedded default: synthetic frames to bundles, then the station on planted line frames."""
    from training.pipeline import run_demo

    settings = _settings(config, {"seed": seed, "synth": {"width_px": width, "height_px": height}})
    results = run_demo(out, settings, frames, progress=not quiet)
    table = Table(title=f"demo ({out})")
    table.add_column("stage")
    table.add_column("result")
    for stage, text in results.items():
        table.add_row(stage, text)
    out_console.print(table)


def _register_model_commands() -> None:
    from training.cli_experiments import experiment_app
    from training.cli_gan import gan_app
    from training.cli_models import classifier_app, export, segmenter_app

    app.add_typer(classifier_app, name="classifier")
    app.add_typer(segmenter_app, name="segmenter")
    app.add_typer(experiment_app, name="experiment")
    app.add_typer(gan_app, name="gan")
    app.command("export")(export)


_register_model_commands()


def main() -> None:
    """Console entry point: known errors become one clear message and exit code 2."""
    try:
        app()
    except (ConfigError, ImportProblemsError, ManifestError, OutputExistsError, FileNotFoundError, ValueError) as error:
        console.print(f"error: {error}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
