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
    family: str | None = typer.Option(
        None, "--family", help="stylegan2 (default), semantic (image + mask) or masked (defect painted into a mask)."
    ),
    preset: str | None = typer.Option(None, "--preset", help="tiny (CPU, 64 px; default) or paper ('auto', 128 px)."),
    kimg: float | None = typer.Option(None, "--kimg", help="Train until this many thousand images (tiny: 40)."),
    snapshot_kimg: float | None = typer.Option(None, "--snapshot-kimg", help="Checkpoint + grid every N kimg."),
    tick_kimg: float | None = typer.Option(None, "--tick-kimg", help="Log line every N kimg."),
    pasted: list[Path] = typer.Option(
        [], "--pasted", help="Pasted pool made from PATCHES; its train-group rows join (repeatable)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in RUN_DIR from its latest checkpoint."),
    sem_grad_to_image: str | None = typer.Option(
        None,
        "--sem-grad-to-image",
        help="semantic: on (thesis, default) or off (original: D_sem sees a detached image).",
    ),
    ld_weight: float | None = typer.Option(
        None, "--ld-weight", min=0.0, help="semantic: distribution-loss λ (0: off)."
    ),
    ld_inflation: float | None = typer.Option(
        None, "--ld-inflation", min=0.0, help="semantic: target mean and variance × this (thesis pumps: 2)."
    ),
    labelled_fraction: float | None = typer.Option(
        None,
        "--labelled-fraction",
        help="semantic: share of training groups whose masks are used (half-and-half: 0.5).",
    ),
    unlabelled_good: int | None = typer.Option(
        None, "--unlabelled-good", min=0, help="semantic: add up to N good training patches as unlabelled images."
    ),
    unlabelled_line: bool | None = typer.Option(
        None, "--unlabelled-line/--no-unlabelled-line", help="semantic: add ingested line patches as unlabelled images."
    ),
    seed: int | None = SeedOpt,
    device: str | None = typer.Option(None, "--device", help="cpu (default), cuda, cuda:N or auto."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads per process (0 = every core)."),
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a GAN on the training split's defective patches (+ pasted copies); never on validation or test groups."""
    if sem_grad_to_image not in (None, "on", "off"):
        raise typer.BadParameter(f"--sem-grad-to-image must be on or off, got {sem_grad_to_image!r}")
    semantic = {
        "sem_grad_to_image": None if sem_grad_to_image is None else sem_grad_to_image == "on",
        "ld_weight": ld_weight,
        "ld_inflation": ld_inflation,
    }
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
                "labelled_fraction": labelled_fraction,
                "unlabelled_good": unlabelled_good,
                "unlabelled_line": unlabelled_line,
                "semantic": {key: value for key, value in semantic.items() if value is not None} or None,
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


@gan_app.command("sample")
def gan_sample(
    *,
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A `gan train` run folder."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Pool patch set to write (origin=gan)."),
    count: int = typer.Option(2000, "--n", min=1, max=10_000_000, help="Number of samples."),
    psi: float = typer.Option(1.0, "--truncation", help="Truncation ψ (1 = none; lower = closer to the mean)."),
    kimg: float | None = typer.Option(None, "--kimg", help="Snapshot to sample (default: the latest)."),
    label_threshold: float = typer.Option(
        0.5, "--label-threshold", help="semantic: P(defect) at or above which a mask pixel is a defect."
    ),
    patch_px: int | None = typer.Option(None, "--patch-px", help="Pool patch side (default: the training patches')."),
    filter_classifier: Path | None = typer.Option(
        None, "--filter-classifier", help="Keep only samples this classifier run sees as defects (default: keep all)."
    ),
    min_score: float | None = typer.Option(
        None, "--min-score", min=0.0, max=1.0, help="With --filter-classifier: score to keep (default: its threshold)."
    ),
    seed: int | None = SeedOpt,
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it exists (after the new one is complete)."
    ),
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Sample a GAN run into a pool (gan: images; semantic: image + mask pairs) for `--augment` and experiments."""
    settings = load_train_settings(config, {"seed": seed})
    from training.gan.checkpoint import find_checkpoint, load_generator
    from training.gan.sample import SampleRequest, classifier_filter, write_gan_pool

    if min_score is not None and filter_classifier is None:
        raise typer.BadParameter("--min-score needs --filter-classifier RUN")
    if dry_run:
        resolved = {
            "checkpoint": str(find_checkpoint(run_dir, kimg)),
            "out": str(out_dir),
            "n": count,
            "truncation_psi": psi,
            "seed": settings.seed,
            "patch_px": patch_px or _training_patch_px(run_dir),
            "filter_classifier": str(filter_classifier) if filter_classifier else None,
            "min_score": min_score,
            "label_threshold": label_threshold,
        }
        out_console.print_json(json.dumps(resolved))
        return
    loaded = load_generator(run_dir, kimg=kimg, device=device)
    if loaded.family == "masked":
        from training.gan.masked.sample import write_masked_pool

        if filter_classifier is not None or psi != 1.0 or patch_px is not None:
            raise typer.BadParameter("masked runs sample at the patch size, unfiltered and untruncated")
        summary = write_masked_pool(
            loaded=loaded, out_dir=out_dir, count=count, seed=settings.seed, overwrite=overwrite, progress=not quiet
        )
        out_console.print_json(json.dumps(summary, default=float))
        return
    side = patch_px or _training_patch_px(run_dir) or loaded.config.resolution
    request = SampleRequest(count=count, seed=settings.seed, psi=psi, patch_px=side, label_threshold=label_threshold)
    keep = classifier_filter(filter_classifier, min_score) if filter_classifier is not None else None
    summary = write_gan_pool(
        loaded=loaded, out_dir=out_dir, request=request, keep=keep, overwrite=overwrite, progress=not quiet
    )
    out_console.print_json(json.dumps(summary, default=float))


def _training_patch_px(run_dir: Path) -> int | None:
    """patch_px of the patch set the run trained on (its data.json), if it can be read."""
    from training.gan.data import read_run_data

    patches = read_run_data(run_dir).get("patches")
    meta_path = Path(patches) / "patchset.json" if patches else None
    if meta_path is None or not meta_path.is_file():
        return None
    return json.loads(meta_path.read_text(encoding="utf-8")).get("geometry", {}).get("patch_px")


@gan_app.command("eval")
def gan_eval(
    *,
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A `gan train` run folder."),
    out_dir: Path | None = typer.Argument(None, metavar="OUT", help="Where eval.json and the grids go (RUN/eval)."),
    real: Path | None = typer.Option(None, "--real", help="Real patch set (default: the one the run trained on)."),
    real_split: str = typer.Option("train", "--real-split", help="train (what the GAN saw) or test (never seen)."),
    classifier: Path | None = typer.Option(
        None, "--classifier", help="Classifier run whose pooled features measure FID/KID (the domain extractor)."
    ),
    inception: Path | None = typer.Option(None, "--inception", help="Local torchvision Inception-v3 state dict."),
    count: int = typer.Option(1000, "--n", min=2, max=1_000_000, help="Generated samples."),
    psi: float = typer.Option(1.0, "--truncation", help="Truncation ψ of the samples."),
    kimg: float | None = typer.Option(None, "--kimg", help="Snapshot to evaluate (default: the latest)."),
    label_threshold: float = typer.Option(
        0.5, "--label-threshold", help="semantic: P(defect) at or above which a generated mask pixel is a defect."
    ),
    seed: int | None = SeedOpt,
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    config: Path | None = ConfigOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """FID/KID of a GAN snapshot against real defect patches (offline), plus real-vs-fake and nearest-real grids.

    A semantic run also gets the thesis's label metrics (% with defects, % defect pixels, EMD of
    per-image defect fractions vs the real masks of --real-split), label_histogram.png and overlays.png.
    """
    settings = load_train_settings(config, {"seed": seed})
    if (classifier is None) == (inception is None):
        raise typer.BadParameter("give exactly one feature extractor: --classifier RUN or --inception FILE")
    from training.gan.checkpoint import find_checkpoint, load_generator
    from training.gan.evaluate import EvalRequest, evaluate_run, real_defects
    from training.gan.families import get_family
    from training.gan.features import classifier_features, inception_features
    from training.gan.label_eval import real_masks

    request = EvalRequest(
        count=count, real_split=real_split, seed=settings.seed, psi=psi, label_threshold=label_threshold
    )
    if dry_run:
        resolved = {
            "checkpoint": str(find_checkpoint(run_dir, kimg)),
            "real": str(real or _trained_on(run_dir)),
            "extractor": {"classifier": str(classifier)} if classifier else {"inception": str(inception)},
            "out": str(out_dir or Path(run_dir) / "eval"),
            **request.__dict__,
        }
        out_console.print_json(json.dumps(resolved))
        return
    loaded = load_generator(run_dir, kimg=kimg, device=device)
    real_dir = real or _trained_on(run_dir)
    extractor = classifier_features(classifier) if classifier is not None else inception_features(inception)
    origin = get_family(loaded.family).origin
    samples = None
    eval_dir = out_dir or Path(run_dir) / "eval"
    if loaded.family == "masked":
        import numpy as np

        from shared.masks import MASK_DEFECT
        from training.gan.masked.sample import masked_samples, write_comparison_grid

        images, masks, _, data = masked_samples(loaded, count, settings.seed)
        samples = (images, (masks > 0).astype(np.uint8) * MASK_DEFECT)  # product values: 255 defect, 0 good
        write_comparison_grid(loaded, data, eval_dir / "masked_vs_pasted.png", seed=settings.seed)
    report = evaluate_run(
        loaded=loaded,
        real=real_defects(real_dir, request.real_split),
        extractor=extractor,
        request=request,
        out_dir=eval_dir,
        scale_reference=real_defects(real_dir, "train"),  # one unit for --real-split train and test
        real_labels=real_masks(real_dir, request.real_split) if origin in ("semgan", "masked") else None,
        samples=samples,
    )
    if samples is not None:
        report.setdefault("pictures", {})["masked_vs_pasted"] = str(eval_dir / "masked_vs_pasted.png")
    out_console.print_json(json.dumps(report, default=float))


def _trained_on(run_dir: Path) -> Path:
    from training.gan.data import read_run_data

    patches = read_run_data(run_dir).get("patches")
    if not patches:
        raise typer.BadParameter(f"{run_dir}: no data.json naming its patches; pass --real PATCHES")
    return Path(patches)


@gan_app.command("compare")
def gan_compare(
    *,
    runs: list[str] = typer.Argument(..., metavar="NAME=RUN...", help="SemanticGAN runs to compare, e.g. ours=runs/a."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for compare.json, compare.md and the pictures."),
    real: Path | None = typer.Option(
        None, "--real", help="Real patch set (default: the one the first run trained on)."
    ),
    real_split: str = typer.Option(
        "train", "--real-split", help="Real masks of this split (train: what the GANs saw)."
    ),
    classifier: Path | None = typer.Option(None, "--classifier", help="Classifier run: add FID/KID of the images."),
    count: int = typer.Option(1000, "--n", min=2, max=1_000_000, help="Samples per run."),
    label_threshold: float = typer.Option(
        0.5, "--label-threshold", help="P(defect) at which a mask pixel is a defect."
    ),
    seed: int | None = SeedOpt,
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    config: Path | None = ConfigOpt,
) -> None:
    """Table 3.2 / 4.3: label metrics (% with defects, % defect pixels, EMD) of real masks vs each run's."""
    settings = load_train_settings(config, {"seed": seed})
    from training.gan.checkpoint import load_generator
    from training.gan.compare import CompareRequest, compare_runs
    from training.gan.evaluate import real_defects
    from training.gan.features import classifier_features
    from training.gan.label_eval import real_masks

    named: dict[str, Path] = {}
    for value in runs:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"{value!r}: expected NAME=RUN, e.g. ours=runs/mt-ours")
        named[name] = Path(path)
    real_dir = real or _trained_on(next(iter(named.values())))
    request = CompareRequest(count=count, seed=settings.seed, label_threshold=label_threshold, real_split=real_split)
    result = compare_runs(
        runs={name: load_generator(path, device=device) for name, path in named.items()},
        real_images=real_defects(real_dir, real_split),
        real_masks=real_masks(real_dir, real_split),
        request=request,
        out_dir=out_dir,
        extractor=classifier_features(classifier) if classifier is not None else None,
    )
    out_console.print(result["markdown"])
