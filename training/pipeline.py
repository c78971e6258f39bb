"""The main job chained end to end on the embedded default dataset.

`pump-train demo` runs synth -> import -> patches -> paste -> show -> tiny classifier and
segmenter (trained with the pasted patches) -> ONNX bundles -> the edge runtime on fresh
"line" frames -> MQTT (an embedded Mosquitto broker) -> the alerts an MES receives, printed.
One settings object and one seed; each stage writes its own folder under OUT. The models
are deliberately tiny (seconds on a CPU): the demo proves the chain, the experiments
measure quality. Later stages (GANs) join this chain as they land.
"""

from __future__ import annotations

from pathlib import Path

from training.config import TrainSettings
from training.data.dataset import load_dataset
from training.data.importers import get_importer, run_import
from training.data.paste import make_pasted
from training.data.patches import make_patches
from training.data.patchset import load_patchset
from training.data.show import write_grid
from training.outputs import write_json_atomic
from training.synth.writer import write_synth_set

DEMO_GAN_KIMG = 2.0  # ~1 minute of the tiny StyleGAN2 on two cores: enough for a first grid, not for defects


def run_demo(
    out: Path, settings: TrainSettings, frames: int, progress: bool = True, *, gan_kimg: float = DEMO_GAN_KIMG
) -> dict[str, str]:
    """Run every stage into ``out`` (replacing earlier demo output); returns a line per stage."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed = settings.seed
    lines: dict[str, str] = {}

    synth = write_synth_set(out / "synth", settings.synth, frames, seed, overwrite=True, progress=progress)
    stats = synth.patch_statistics
    lines["synth"] = (
        f"{synth.frames} frames ({synth.frames_per_s:.1f}/s), {synth.frames_with_defects} with defects; "
        f"{stats.defective_patch_share:.2%} of random patches defective, "
        f"{stats.mean_defect_fraction:.2%} defect px in those, {stats.full_frame_defect_share:.4%} at full frame"
    )

    report = run_import(
        get_importer("synth"), out / "synth", out / "dataset", settings.import_, overwrite=True, progress=progress
    )
    lines["import"] = f"{report['imported']} images, {report['groups']} groups, skipped {len(report['skipped'])}"

    summary = make_patches(
        load_dataset(out / "dataset"),
        out / "patches",
        settings.geometry,
        settings.patches,
        seed=seed,
        overwrite=True,
        progress=progress,
    )
    splits = ", ".join(
        f"{name} {s['patches']} ({s['defective']} defective)" for name, s in summary["per_split"].items()
    )
    lines["patches"] = f"{summary['patches']} patches: {splits}"

    pasted = make_pasted(
        load_patchset(out / "patches"), out / "pasted", settings.paste, seed, overwrite=True, progress=progress
    )
    lines["paste"] = (
        f"{pasted['pasted']} pasted from {pasted['sources']} defect patches "
        f"({pasted['location']} location, {pasted['sources_short_of_target']} short of target)"
    )

    real_grid = write_grid(out / "patches", out / "grid_real.png", rows=4, columns=8, scale=2, seed=seed)
    pasted_grid = write_grid(
        out / "pasted", out / "grid_pasted.png", rows=6, columns=settings.paste.per_defect + 1, scale=2, seed=seed
    )
    lines["show"] = f"{real_grid}, {pasted_grid}"
    lines["gan"] = _train_gan(out, settings, seed=seed, kimg=gan_kimg, progress=progress)
    lines.update(_train_and_export(out, seed, progress))
    lines["edge"] = _run_edge(out, settings, seed, progress)
    write_json_atomic(
        out / "demo.json",
        {"seed": seed, "frames": frames, "stages": lines, "settings": settings.model_dump(mode="json", by_alias=True)},
    )
    return lines


def _train_gan(out: Path, settings: TrainSettings, *, seed: int, kimg: float, progress: bool) -> str:
    """A short tiny-StyleGAN2 run on the demo's training defects (+ pasted copies); its last grid as grid_gan.png.

    A few kimg only show that the chain trains and samples; defects take tens of kimg (see the
    README's GAN section). The demo's classifier does not use these samples.
    """
    import shutil

    from training.gan.command import train_gan_command

    run = out / "gan"
    if run.exists():
        shutil.rmtree(run)
    gan = settings.gan.model_copy(update={"kimg": kimg, "snapshot_kimg": kimg, "tick_kimg": kimg / 4, "grid_size": 6})
    result = train_gan_command(
        patches_dir=out / "patches", run_dir=run, settings=gan, seed=seed, pasted=(out / "pasted",), progress=progress
    )
    grid = out / "grid_gan.png"
    shutil.copyfile(result["grid"], grid)
    return f"{result['kimg']:.1f} kimg of tiny StyleGAN2-ADA on {result['images_in_data']} patches: {grid}"


def _train_and_export(out: Path, seed: int, progress: bool) -> dict[str, str]:
    """Tiny classifier + segmenter on the demo patches (pasted patches added), exported as bundles."""
    from training.export import export_bundle
    from training.models.classifier import ClassifierSpec
    from training.models.segmenter import SegmenterSpec
    from training.train.schedule import Schedule
    from training.train.single import train_classifier_command, train_segmenter_command

    pasted = load_patchset(out / "pasted")
    augment = [f"pasted:{len(pasted.records)}"]
    pool = [f"pasted={out / 'pasted'}"]
    classifier = train_classifier_command(
        patches_dir=out / "patches",
        out=out / "classifier",
        spec=ClassifierSpec(width=0.25, internal_px=64),
        schedule=Schedule(iterations=60, val_every=30, batch_size=32, seed=seed),
        augment=augment,
        pool=pool,
        weighted=False,
        init_weights=None,
        val_seed=None,
        progress=progress,
    )
    segmenter = train_segmenter_command(
        patches_dir=out / "patches",
        out=out / "segmenter",
        spec=SegmenterSpec(encoder="tu-resnet10t"),
        schedule=Schedule(iterations=30, val_every=15, batch_size=8, lr=1e-3, seed=seed),
        augment=augment,
        pool=pool,
        healthy_share=0.5,
        threshold=0.9,
        val_seed=None,
        progress=progress,
    )
    reports = [
        export_bundle(out / name, out / "bundles" / name, patches=out / "patches", name=f"demo-{name}", overwrite=True)
        for name in ("classifier", "segmenter")
    ]
    return {
        "classifier": f"test F1 {classifier['test_f1']:.3f}, AUROC {classifier['test_auroc']:.3f} "
        f"(tiny, {classifier['train_seconds']} s)",
        "segmenter": f"test defect IoU {segmenter['test_defect_iou']:.3f} (tiny, {segmenter['train_seconds']} s)",
        "export": ", ".join(
            f"{out / 'bundles' / n} (ORT parity {r.max_abs_diff:.1e})"
            for n, r in zip(("classifier", "segmenter"), reports, strict=True)
        ),
    }


LINE_FRAMES = 4  # fresh frames the demo's station inspects


def _run_edge(out: Path, settings: TrainSettings, seed: int, progress: bool) -> str:
    """Fresh synthetic frames through ``pump-edge run --once`` to an embedded broker; prints the alerts.

    An MES-like subscriber listens on the broker, as a factory's would; the results it received
    are written to ``edge-results.jsonl`` and the alerts printed as a table.
    """
    import threading

    from rich.console import Console
    from rich.table import Table

    from edge.config import EdgeSettings
    from edge.publish.broker import MosquittoBroker, find_mosquitto
    from edge.publish.watch import MessageCollector
    from edge.runtime.station import Station

    if find_mosquitto() is None:
        return (
            "skipped: the embedded MQTT broker needs mosquitto (apt-get install mosquitto; make demo does it as root)"
        )
    write_synth_set(out / "line", settings.synth, LINE_FRAMES, seed + 1, overwrite=True, progress=progress)
    with MosquittoBroker() as broker:
        station_settings = EdgeSettings(
            line_id="demo",
            station_id="station1",
            data_dir=out / "edge-data",
            geometry=settings.geometry,
            bundles={"classifier": out / "bundles" / "classifier", "segmenter": out / "bundles" / "segmenter"},
            source={"spec": f"folder:{out / 'line' / 'images'}"},
            backend={"kind": "onnxruntime"},
            mqtt={"host": broker.host, "port": broker.port, "outbox_path": out / "edge-data" / "outbox.sqlite3"},
        )
        collector = MessageCollector(station_settings.mqtt, "demo", "station1", kinds=("result", "alert")).start()
        station = Station(station_settings, once=True)
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(station.run()), name="station")
        runner.start()
        runner.join()
        collector.wait_for(lambda messages: sum(m.kind == "result" for m in messages) >= LINE_FRAMES, 10)
        collector.stop()
    results = [m.message for m in collector.messages("result")]
    alerts = [m.message for m in collector.messages("alert")]
    with open(out / "edge-results.jsonl", "w", encoding="utf-8") as handle:
        for result in results:
            handle.write(result.model_dump_json() + "\n")
    table = Table(title=f"MQTT alerts received from demo/station1 ({len(alerts)} of {len(results)} frames NG)")
    for column in ("seq", "frame", "defects", "worst score", "first box (x, y, w, h)"):
        table.add_column(column)
    for alert in alerts:
        box = alert.boxes[0] if alert.boxes else None
        first = f"{box.x}, {box.y}, {box.w}, {box.h}" if box else "-"
        table.add_row(str(alert.seq), alert.frame_id, str(alert.defect_count), f"{alert.worst_score:.2f}", first)
    Console().print(table)
    code = codes[0] if codes else 1
    return (
        f"{len(results)} of {LINE_FRAMES} line frames inspected and published over MQTT (exit {code}): "
        f"{len(alerts)} NG alerts, {station.stats.uncertain_logged} uncertain patches logged, "
        f"results in {out / 'edge-results.jsonl'}"
    )
