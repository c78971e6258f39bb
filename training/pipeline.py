"""The main job chained end to end on the embedded default dataset.

`pump-train demo` runs synth -> import -> patches -> paste -> show -> a short GAN -> classifier and
segmenter (trained with the pasted patches) -> ONNX bundles -> the edge station on fresh "line"
frames, some clean and some with planted defects -> MQTT (an embedded Mosquitto broker) -> what an
MES receives, scored against what was planted and printed frame by frame, with the station's own
defect-map overlay per frame. One settings object and one seed; each stage writes its own folder
under OUT and its line ends with the stage's seconds.

The demo's models must learn in a minute or two each on two cores, so its choices were measured
(on busy cores, one thread, seed 0; the test split is the demo's own, by frame):

- **Frames** 1100x800 (the part and its defects shrink with the frame), 96 of them, 4 defects per
  frame, 1 pasted copy per real defect patch: ~6100 patches in ~40 s. At the 3200x2224 thesis camera
  (60 frames, ~90 s of data) the classifier learned as well (test AUROC 0.89) but the segmenter's
  600 iterations left ~10 spurious regions on every clean frame (edges taken for chips); at 1100x800
  none. 48 frames instead of 96: classifier test AUROC 0.86 instead of 0.91.
- **Classifier** ResNet-18 topology at width 0.25 seeing 128 px, max pooling, per-patch norm,
  1200 bf16 iterations of 32 at lr 3e-3 with ``mask_loss`` 10 (a training-only head told by the
  masks which cells hold the defect): test AUROC 0.91. Without the mask loss the same network
  reached 0.75 in 800 and 0.83 in 2000 iterations (3200x2224 frames): the patch label alone let it
  key on bright ringed surroundings. The cpu preset's 64 px input loses the thin scratches (0.70).
- **Segmenter** FPN on timm's ResNet-10t with a 64/32 decoder (0.29 s per batch-16 step, the
  fastest measured; UNet/MobileNetV3-small 0.35 s, FPN SE-ResNet-18 0.42 s), fixed input norm,
  600 bf16 iterations at lr 3e-3, a quarter healthy patches, pixel threshold tuned on validation:
  test defect IoU 0.54 (400 iterations: 0.45; half healthy: 0.39). UNet/MobileNetV3-small reached
  0.29 in 400 iterations and its traced ONNX graph declares a wrong output shape.
- **Station** verdict rule ``segmenter`` (a defect region makes a frame NG), every patch segmented
  (``pipeline.cascade`` off), the segmenter's own threshold. On 6 clean and 8 line frames of other
  seeds the default ``either`` judged every clean frame NG (some healthy patch of most clean frames
  scores above 0.98 with the classifier); ``segmenter`` none. On 12 clean and 22 defective frames of
  other seeds, ``segmenter`` judged 0 clean frames NG and 20 of 22 defective ones NG (19 after 400
  iterations); a pixel threshold of 0.4 found one more frame but judged 3 clean frames NG. The
  cascade segmented 5 of 20 patches for the same 20 of 22 but 5 of 7 where full segmentation found
  6 of 7, and fewer planted defects (0.46 vs 0.49); speed is no issue for fourteen frames. What is
  missed are 1100x800's smallest defects: chips and hairline scratches a few pixels wide.
- **Line** 4 clean and 10 defective frames: at ~0.9 frame recall, ten frames leave room for the
  odd miss (0.8 needs 8 of 10) where six would allow one.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from training.config import TrainSettings
from training.data.dataset import load_dataset
from training.data.importers import get_importer, run_import
from training.data.paste import make_pasted
from training.data.patches import make_patches
from training.data.patchset import load_patchset
from training.data.show import write_grid
from training.models.specs import ClassifierSpec, SegmenterSpec
from training.outputs import write_json_atomic
from training.synth.config import SynthConfig
from training.synth.writer import write_synth_set
from training.train.schedule import Schedule

DEMO_GAN_KIMG = 2.0  # ~1 minute of the tiny StyleGAN2 on two cores: enough for a first grid, not for defects
DEMO_FRAMES = 96
# the demo's data, beneath whatever the settings give (a field set in a file, the environment or a flag wins)
DEMO_SYNTH = {"width_px": 1100, "height_px": 800, "defects_per_frame": 4.0}
DEMO_PASTE = {"per_defect": 1}
DEMO_CLASSIFIER = ClassifierSpec(width=0.25, internal_px=128, pooling="max", input_norm="patch")
DEMO_CLASSIFIER_SCHEDULE = Schedule(
    iterations=1200, val_every=100, batch_size=32, lr=3e-3, precision="bf16", mask_loss=10.0
)
DEMO_SEGMENTER = SegmenterSpec(arch="fpn", encoder="tu-resnet10t", decoder_channels=(64, 32), input_norm="fixed")
DEMO_SEGMENTER_SCHEDULE = Schedule(iterations=600, val_every=200, batch_size=16, lr=3e-3, precision="bf16")
DEMO_HEALTHY_SHARE = 0.25
DEMO_VERDICT_RULE = "segmenter"
DEMO_CASCADE = False  # the station segments every patch (pipeline.cascade, whose default is true)
# the loop turn's fine-tune: an eighth of the first training at a third of its peak rate, from its weights
DEMO_FINE_TUNE_SCHEDULE = DEMO_CLASSIFIER_SCHEDULE.model_copy(update={"iterations": 150, "val_every": 50, "lr": 1e-3})
LOOP_FRAMES_BEFORE = 4  # line frames the loop turn's station judges on the old model before the new one appears
LINE_CLEAN_FRAMES = 4  # line frames rendered with no defects: the station must judge them OK
LINE_DEFECTIVE_FRAMES = 10  # line frames with planted defects (the demo's defects per frame, Poisson)


def demo_settings(settings: TrainSettings) -> TrainSettings:
    """``settings`` with the demo's frame size, defects per frame and pasted copies where they were not given."""

    def beneath(section, defaults: dict):  # noqa: ANN001, ANN202
        missing = {key: value for key, value in defaults.items() if key not in section.model_fields_set}
        return section.model_copy(update=missing)

    return settings.model_copy(
        update={"synth": beneath(settings.synth, DEMO_SYNTH), "paste": beneath(settings.paste, DEMO_PASTE)}
    )


class _Clock:
    """Seconds per stage: each lap ends the stage's line with them."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, lines: dict[str, str], stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self.started, 1)
        lines[stage] = f"{lines[stage]} [{self.seconds[stage]:.0f} s]"
        self.started = now


def run_demo(
    out: Path,
    settings: TrainSettings,
    frames: int | None = None,
    progress: bool = True,
    *,
    gan_kimg: float = DEMO_GAN_KIMG,
) -> dict[str, str]:
    """Run every stage into ``out`` (replacing earlier demo output); returns a line per stage.

    ``settings`` get the demo's data defaults beneath them (:func:`demo_settings`); ``frames``
    defaults to :data:`DEMO_FRAMES`. The figures the demo is judged by (classifier test AUROC,
    segmenter test defect IoU, the station's frame recall and clean frames judged OK) are written
    to ``demo.json`` under ``figures``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(settings)
    frames = DEMO_FRAMES if frames is None else frames
    seed = settings.seed
    lines: dict[str, str] = {}
    clock = _Clock()

    synth = write_synth_set(out / "synth", settings.synth, frames, seed, overwrite=True, progress=progress)
    stats = synth.patch_statistics
    lines["synth"] = (
        f"{synth.frames} frames of {settings.synth.width_px}x{settings.synth.height_px} "
        f"({synth.frames_per_s:.1f}/s), {synth.frames_with_defects} with defects; "
        f"{stats.defective_patch_share:.2%} of random patches defective, "
        f"{stats.mean_defect_fraction:.2%} defect px in those, {stats.full_frame_defect_share:.4%} at full frame"
    )
    clock.lap(lines, "synth")

    report = run_import(
        get_importer("synth"), out / "synth", out / "dataset", settings.import_, overwrite=True, progress=progress
    )
    lines["import"] = f"{report['imported']} images, {report['groups']} groups, skipped {len(report['skipped'])}"
    clock.lap(lines, "import")

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
    clock.lap(lines, "patches")

    pasted = make_pasted(
        load_patchset(out / "patches"), out / "pasted", settings.paste, seed, overwrite=True, progress=progress
    )
    lines["paste"] = (
        f"{pasted['pasted']} pasted from {pasted['sources']} defect patches "
        f"({pasted['location']} location, {pasted['sources_short_of_target']} short of target)"
    )
    clock.lap(lines, "paste")

    real_grid = write_grid(out / "patches", out / "grid_real.png", rows=4, columns=8, scale=2, seed=seed)
    pasted_grid = write_grid(
        out / "pasted", out / "grid_pasted.png", rows=6, columns=settings.paste.per_defect + 1, scale=2, seed=seed
    )
    lines["show"] = f"{real_grid}, {pasted_grid}"
    clock.lap(lines, "show")
    lines["gan"] = _train_gan(out, settings, seed=seed, kimg=gan_kimg, progress=progress)
    clock.lap(lines, "gan")
    figures = _train_and_export(out, settings, lines=lines, clock=clock, progress=progress)
    lines["edge"], edge_figures = _run_edge(out, settings, seed, progress)
    figures.update(edge_figures)
    clock.lap(lines, "edge")
    lines["loop"], loop_figures = _loop_turn(out, settings, seed, progress)
    figures.update(loop_figures)
    clock.lap(lines, "loop")
    write_json_atomic(
        out / "demo.json",
        {
            "seed": seed,
            "frames": frames,
            "stages": lines,
            "seconds": clock.seconds,
            "figures": figures,
            "settings": settings.model_dump(mode="json", by_alias=True),
        },
    )
    return lines


def _train_gan(out: Path, settings: TrainSettings, *, seed: int, kimg: float, progress: bool) -> str:
    """A short tiny-StyleGAN2 run on the demo's training defects (+ pasted copies); its last grid as grid_gan.png.

    A few kimg only show that the chain trains and samples; defects take tens of kimg (see the
    README's GAN section). The demo's classifier does not use these samples.
    """
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


def _train_and_export(
    out: Path, settings: TrainSettings, *, lines: dict[str, str], clock: _Clock, progress: bool
) -> dict[str, float]:
    """The demo's classifier and segmenter on its patches (pasted patches added), exported as bundles.

    Adds the ``classifier``, ``segmenter`` and ``export`` lines; returns the test figures.
    """
    from training.export import export_bundle
    from training.train.single import train_classifier_command, train_segmenter_command

    seed, patch_px = settings.seed, settings.geometry.patch_px
    pasted = load_patchset(out / "pasted")
    augment = [f"pasted:{len(pasted.records)}"]
    pool = [f"pasted={out / 'pasted'}"]
    schedule = DEMO_CLASSIFIER_SCHEDULE.model_copy(update={"seed": seed})
    internal_px = min(DEMO_CLASSIFIER.internal_px, patch_px)
    classifier = train_classifier_command(
        patches_dir=out / "patches",
        out=out / "classifier",
        spec=dataclasses.replace(DEMO_CLASSIFIER, input_px=patch_px, internal_px=internal_px),
        schedule=schedule,
        augment=augment,
        pool=pool,
        weighted=False,
        init_weights=None,
        val_seed=None,
        progress=progress,
    )
    lines["classifier"] = (
        f"test AUROC {classifier['test_auroc']:.3f}, F1 {classifier['test_tuned_f1']:.3f} at the validation-tuned "
        f"threshold {classifier['threshold']:.2f} ({schedule.iterations} iterations, mask loss {schedule.mask_loss:g})"
    )
    clock.lap(lines, "classifier")
    schedule = DEMO_SEGMENTER_SCHEDULE.model_copy(update={"seed": seed})
    segmenter = train_segmenter_command(
        patches_dir=out / "patches",
        out=out / "segmenter",
        spec=dataclasses.replace(DEMO_SEGMENTER, input_px=patch_px),
        schedule=schedule,
        augment=augment,
        pool=pool,
        healthy_share=DEMO_HEALTHY_SHARE,
        threshold=0.5,
        tune_threshold=True,
        val_seed=None,
        progress=progress,
    )
    lines["segmenter"] = (
        f"test defect IoU {segmenter['test_defect_iou']:.3f} at the validation-tuned pixel threshold "
        f"{segmenter['threshold']:.1f} ({DEMO_SEGMENTER.arch} {DEMO_SEGMENTER.encoder}, "
        f"{schedule.iterations} iterations)"
    )
    clock.lap(lines, "segmenter")
    reports = [
        export_bundle(out / name, out / "bundles" / name, patches=out / "patches", name=f"demo-{name}", overwrite=True)
        for name in ("classifier", "segmenter")
    ]
    lines["export"] = ", ".join(
        f"{out / 'bundles' / n} (ORT parity {r.max_abs_diff:.1e})"
        for n, r in zip(("classifier", "segmenter"), reports, strict=True)
    )
    clock.lap(lines, "export")
    return {
        "classifier_test_auroc": float(classifier["test_auroc"]),
        "segmenter_test_defect_iou": float(segmenter["test_defect_iou"]),
    }


def write_line_frames(out: Path, synth: SynthConfig, seed: int, progress: bool = False) -> Path:
    """Clean and defective line frames in one folder, ``out/images``, listed in one ``out/frames.jsonl``.

    :data:`LINE_CLEAN_FRAMES` frames without defects (ids ``clean-NNNNN``) and
    :data:`LINE_DEFECTIVE_FRAMES` with the demo's defects per frame (``defective-NNNNN``; a Poisson
    draw may leave one clean: it is then scored as clean), rendered with seeds the training set
    does not use. :func:`edge.detection.read_planted_frames` reads the index.
    """
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    records = []
    for name, count, mean, set_seed in (
        ("clean", LINE_CLEAN_FRAMES, 0.0, seed + 1),
        ("defective", LINE_DEFECTIVE_FRAMES, synth.defects_per_frame, seed + 2),
    ):
        config = synth.model_copy(update={"defects_per_frame": mean})
        write_synth_set(out / name, config, count, set_seed, overwrite=True, progress=progress)
        for line in (out / name / "frames.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            frame_id = f"{name}-{record['id'].rsplit('_', 1)[-1]}"
            shutil.copyfile(out / name / record["image"], out / "images" / f"{frame_id}.png")
            records.append(
                {**record, "id": frame_id, "image": f"images/{frame_id}.png", "mask": f"{name}/{record['mask']}"}
            )
    (out / "frames.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return out


def demo_station_settings(out: Path, settings: TrainSettings, broker, *, data_dir: Path, source: dict, **extra):  # noqa: ANN001, ANN201
    """The demo station's settings (edge.config.EdgeSettings): the demo's bundles, verdict rule and broker."""
    from edge.config import EdgeSettings

    bundles = {"classifier": out / "bundles" / "classifier", "segmenter": out / "bundles" / "segmenter"}
    return EdgeSettings(
        line_id="demo",
        station_id="station1",
        data_dir=data_dir,
        geometry=settings.geometry,
        bundles={**bundles, **extra.pop("bundles", {})},
        source=source,
        backend={"kind": "onnxruntime"},
        pipeline={"cascade": DEMO_CASCADE},
        postprocess={"verdict_rule": DEMO_VERDICT_RULE, "defect_map_style": "overlay"},
        mqtt={
            "host": broker.host,
            "port": broker.port,
            "outbox_path": data_dir / "outbox.sqlite3",
            "defect_map_policy": "all",
        },
        **extra,
    )


def _run_edge(out: Path, settings: TrainSettings, seed: int, progress: bool) -> tuple[str, dict[str, float]]:
    """Fresh line frames through ``pump-edge run --once`` to an embedded broker, scored against the planted defects.

    An MES-like subscriber listens on the broker, as a factory's would; the results it received
    are written to ``edge-results.jsonl``, the station's defect-map overlays to ``defect-maps/``,
    and the results are matched against the planted defects (``edge-detection.json``) and printed
    as a table: per frame what was planted, what the station found, its verdict and its picture.
    """
    import threading

    from rich.console import Console

    from edge.detection import outcome_table, read_planted_frames, score_result, summarize
    from edge.publish.broker import MosquittoBroker, find_mosquitto
    from edge.publish.watch import MessageCollector
    from edge.runtime.station import Station
    from shared.tiling import crop_roi

    if find_mosquitto() is None:
        return (
            "skipped: the embedded MQTT broker needs mosquitto (apt-get install mosquitto; make demo does it as root)",
            {},
        )
    line = write_line_frames(out / "line", settings.synth, seed, progress)
    planted = {frame.frame_id: frame for frame in read_planted_frames(line)}
    shutil.rmtree(out / "edge-data", ignore_errors=True)  # its uncertain patches feed the loop turn: this run's only
    with MosquittoBroker() as broker:
        station_settings = demo_station_settings(
            out, settings, broker, data_dir=out / "edge-data", source={"spec": f"folder:{line / 'images'}"}
        )
        kinds = ("result", "alert", "defect_map")
        collector = MessageCollector(station_settings.mqtt, "demo", "station1", kinds=kinds).start()
        station = Station(station_settings, once=True)
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(station.run()), name="station")
        runner.start()
        runner.join()
        collector.wait_for(
            lambda messages: (
                min(sum(m.kind == kind for m in messages) for kind in ("result", "defect_map")) >= len(planted)
            ),
            10,
        )
        collector.stop()
    results = [m.message for m in collector.messages("result")]
    alerts = collector.messages("alert")
    with open(out / "edge-results.jsonl", "w", encoding="utf-8") as handle:
        for result in results:
            handle.write(result.model_dump_json() + "\n")

    def stem(frame_id: str) -> str:  # the folder source names frames <file stem>-<counter>
        return frame_id.rsplit("-", 1)[0]

    maps = out / "defect-maps"
    if maps.exists():
        shutil.rmtree(maps)
    maps.mkdir()
    overlays = {}
    for message in collector.messages("defect_map"):
        name = stem(message.user_properties.get("frame_id", ""))
        if name in planted:
            picture = maps / f"{name}.png"
            picture.write_bytes(message.payload)
            overlays[name] = _shown(picture)
    outcomes = [
        score_result(
            planted[stem(r.frame_id)], r, crop_roi(r.frame_width_px, r.frame_height_px, settings.geometry.crop_px)
        )
        for r in results
        if stem(r.frame_id) in planted
    ]
    report = summarize(outcomes)
    write_json_atomic(out / "edge-detection.json", report.to_dict())
    clean_ok = sum(o.verdict == "OK" for o in outcomes if o.clean)
    defective_ng = sum(o.verdict == "NG" for o in outcomes if not o.clean)
    found = sum(p["found"] for o in outcomes for p in o.planted)
    title = (
        f"line frames through the station (verdict rule {DEMO_VERDICT_RULE}): planted vs found, "
        f"{defective_ng} of {report.defect_frames} defective frames NG, {clean_ok} of {report.clean_frames} clean OK"
    )
    console = Console()
    if not console.is_terminal:  # a log or CI: wide enough that each planted defect stays on one line
        console = Console(width=200)
    console.print(outcome_table(outcomes, title=title, overlays=overlays))
    code = codes[0] if codes else 1
    text = (
        f"{len(results)} of {len(planted)} line frames inspected and published over MQTT (exit {code}), "
        f"{len(alerts)} NG alerts: frame recall {_share(defective_ng, report.defect_frames)}, "
        f"clean frames OK {clean_ok} of {report.clean_frames}, planted defects found {found} of "
        f"{report.planted_regions}, {report.spurious_regions_per_frame:.2f} spurious regions per frame; "
        f"results in {out / 'edge-results.jsonl'}, overlays in {maps}"
    )
    figures = {
        "line_frames": len(outcomes),
        "frame_recall": report.frame_recall,
        "clean_frames": report.clean_frames,
        "clean_frames_ok": clean_ok,
        "region_recall": report.region_recall,
    }
    return text, figures


def _export_uncertain(data_dir: Path, archive: Path) -> int:
    """What the station's operator runs, ``pump-edge export-uncertain``: the store stays the edge's own."""
    command = [sys.executable, "-m", "edge.cli", "export-uncertain", str(archive), "--data-dir", str(data_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pump-edge export-uncertain failed ({result.returncode}): {result.stderr.strip()}")
    found = re.search(r"exported (\d+) patches", result.stdout)
    if found is None:
        raise RuntimeError(f"pump-edge export-uncertain printed no count: {result.stdout.strip()!r}")
    return int(found.group(1))


def _loop_turn(out: Path, settings: TrainSettings, seed: int, progress: bool) -> tuple[str, dict[str, float]]:
    """One turn of the closed loop on the demo's line (see :mod:`training.closed_loop`).

    The uncertain patches the station logged are exported, ingested into a copy of the patch set,
    labelled from the planted masks, and the classifier is fine-tuned from the deployed run; its
    bundle, version 0.1.1 with 0.1.0 as parent, is exported into the watched bundle folder of a
    station that meanwhile inspects the line frames again as they arrive: the first
    :data:`LOOP_FRAMES_BEFORE` on 0.1.0, the rest on 0.1.1, none lost.
    """
    from edge.publish.broker import MosquittoBroker, find_mosquitto
    from training.closed_loop import planted_labels, reload_on_line
    from training.data.ingest import ingest_export
    from training.data.label import apply_labels
    from training.export import export_bundle
    from training.train.single import load_parent_run, train_classifier_command

    if find_mosquitto() is None or not (out / "edge-data").is_dir():
        return "skipped: needs the edge stage (mosquitto)", {}
    loop = out / "loop"
    shutil.rmtree(loop, ignore_errors=True)
    loop.mkdir()
    export = loop / "uncertain.tar.gz"
    exported = _export_uncertain(out / "edge-data", export)
    if exported == 0:
        return "skipped: the station logged no uncertain patch", {"loop_uncertain": 0}
    ingested = ingest_export(export, out / "patches", out=loop / "patches")
    labels = apply_labels(planted_labels(loop / "patches", out / "line", loop / "labels"), loop / "patches")
    patch_px = settings.geometry.patch_px
    parent = load_parent_run(out / "classifier", "classifier", patch_px)
    pasted = load_patchset(out / "pasted")
    schedule = DEMO_FINE_TUNE_SCHEDULE.model_copy(update={"seed": seed})
    tuned = train_classifier_command(
        patches_dir=loop / "patches",
        out=loop / "classifier",
        spec=ClassifierSpec(**parent.checkpoint.spec),
        schedule=schedule,
        augment=[f"pasted:{len(pasted.records)}"],
        pool=[f"pasted={out / 'pasted'}"],
        init_from=parent,
        progress=progress,
    )
    watch, bundle = loop / "bundles", loop / "bundles" / "classifier-0.1.1"
    watch.mkdir()
    reports = []

    def new_bundle() -> Path:
        reports.append(
            export_bundle(loop / "classifier", bundle, patches=loop / "patches", parent=out / "bundles" / "classifier")
        )
        return bundle

    frames = sorted((out / "line" / "images").glob("*.png"))
    with MosquittoBroker() as broker:
        station = demo_station_settings(
            out,
            settings,
            broker,
            data_dir=loop / "edge-data",
            source={"spec": f"folder:{loop / 'feed'}", "watch": True, "poll_s": 0.1, "settle_s": 0.0},
            bundles={"watch_dir": watch, "watch_interval_s": 0.2},
        )
        seen = reload_on_line(station, frames, new_bundle=new_bundle, before=LOOP_FRAMES_BEFORE)
    versions = [v.rsplit("@", 1)[-1] for v in seen.versions]
    on_new = sum(v == reports[0].version for v in versions) if reports else 0
    parent_auroc = parent.checkpoint.metrics.get("test_auroc", float("nan"))
    text = (
        f"{exported} uncertain patches exported, {ingested['added']} ingested, labelled from the planted masks "
        f"({labels['good']} good, {labels['defect']} defect); classifier fine-tuned from its run "
        f"({schedule.iterations} iterations, best at {tuned['best_iteration']}): test AUROC {parent_auroc:.3f} -> "
        f"{tuned['test_auroc']:.3f}; bundle {reports[0].name} {reports[0].version} (parent 0.1.0) hot-reloaded "
        f"into the running station: {len(versions)} of {len(frames)} frames judged, "
        f"{len(versions) - on_new} on 0.1.0 then {on_new} on {reports[0].version} ({seen.switches} switch)"
    )
    figures = {
        "loop_uncertain": exported,
        "loop_labelled": labels["labelled"],
        "loop_labelled_defect": labels["defect"],
        "loop_frames": len(versions),
        "loop_frames_on_new": on_new,
        "loop_switches": seen.switches,
        "loop_test_auroc": float(tuned["test_auroc"]),
    }
    return text, figures


def _shown(path: Path) -> str:
    """A path as a person at this shell would type it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _share(hits: int, total: int) -> str:
    return f"{hits / total:.2f} ({hits}/{total})" if total else "- (no defective frame)"
