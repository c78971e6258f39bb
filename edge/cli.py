"""`pump-edge`: the edge side's commands (no torch anywhere below this package).

``run`` is the station; ``build-engine``, ``doctor``, ``watch``, ``export-uncertain`` and
``bench`` serve the people who install, integrate and size it; ``config`` and ``tiles``
show what a configuration means.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from edge.backends.config import Precision
from edge.config import FILE_PARTS, EdgeSettings, check_files
from shared.config import ConfigError, load_settings

app = typer.Typer(
    help="Edge side of pump inspection: frames -> tiles -> inference -> defect maps -> MQTT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out_console = Console()
ConfigOpt = typer.Option(None, "--config", "-c", help="TOML config file (default: $PUMP_CONFIG).")


SourceOpt = typer.Option(None, "--source", help="folder:DIR | video:FILE | camera:URI (overrides source.spec).")
ClassifierOpt = typer.Option(None, "--classifier", help="Classifier bundle folder (bundles.classifier).")
SegmenterOpt = typer.Option(None, "--segmenter", help="Segmenter bundle folder (bundles.segmenter).")
BrokerOpt = typer.Option(None, "--broker", help="HOST:PORT of the MQTT broker (default: embedded broker).")
LineOpt = typer.Option(None, "--line", help="Line id (line_id).")
StationOpt = typer.Option(None, "--station", help="Station id (station_id).")
DataDirOpt = typer.Option(None, "--data-dir", help="Station data folder: outbox, store, engines (data_dir).")
BackendOpt = typer.Option(None, "--backend", help="auto | tensorrt | onnxruntime (backend.kind).")
LogLevelOpt = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR.")


def _broker_override(broker: str | None) -> dict[str, Any]:
    if broker is None:
        return {}
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--broker {broker!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return {"host": host, "port": int(port)}


def _fail(message: str, code: int) -> NoReturn:
    """One red ``error: …`` line on stderr, printed as is (paths and reasons may hold ``[``), then exit ``code``."""
    console.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _station_settings(
    config_file: Path | None,
    source: str | None = None,
    classifier: Path | None = None,
    segmenter: Path | None = None,
    broker: str | None = None,
    line: str | None = None,
    station: str | None = None,
    data_dir: Path | None = None,
    backend: str | None = None,
    files: tuple[str, ...] = (),
) -> EdgeSettings:
    """Settings from file + env with the command's flags on top (flags win).

    ``files``: the parts whose named files the command reads (:func:`edge.config.check_files`).
    """
    overrides: dict[str, Any] = {
        "line_id": line,
        "station_id": station,
        "data_dir": data_dir,
        "source": {"spec": source} if source else None,
        "bundles": {k: v for k, v in (("classifier", classifier), ("segmenter", segmenter)) if v is not None} or None,
        "mqtt": _broker_override(broker) or None,
        "backend": {"kind": backend} if backend else None,
    }
    return check_files(load_settings(EdgeSettings, config_file, overrides), files)


def _setup_logging(level: str) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        datefmt="%H:%M:%S",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
    )


@app.command()
def run(
    config_file: Path | None = ConfigOpt,
    source: str | None = SourceOpt,
    classifier: Path | None = ClassifierOpt,
    segmenter: Path | None = SegmenterOpt,
    broker: str | None = BrokerOpt,
    line: str | None = LineOpt,
    station: str | None = StationOpt,
    data_dir: Path | None = DataDirOpt,
    backend: str | None = BackendOpt,
    once: bool = typer.Option(
        False, "--once", help="Exit 0 once the source is exhausted and the outbox is empty (batch use, tests)."
    ),
    log_level: str = LogLevelOpt,
) -> None:
    """Run the station: source -> tiles -> batched inference -> defect maps -> MQTT (+ uncertain patches).

    Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, or --once done), 1 failed (e.g. restart
    budget spent, a finite source died), 2 bad configuration or bundle (also: another station
    holds this data_dir's outbox), 3 --once finished with messages left in the outbox (they go
    out at the next start), 4 --once finished but some input was not inspected (bad files,
    frames that failed or were skipped), 5 the broker refused messages (dead letters kept:
    see `pump-edge outbox --dead-letters`).
    """
    from edge.runtime.station import Station

    _setup_logging(log_level)
    settings = _station_settings(
        config_file, source, classifier, segmenter, broker, line, station, data_dir, backend, files=FILE_PARTS
    )
    raise typer.Exit(Station(settings, once=once).run())


@app.command()
def config(config_file: Path | None = ConfigOpt) -> None:
    """Validate the station's settings (file + PUMP_* env, and the files they name) and print them resolved."""
    settings = check_files(load_settings(EdgeSettings, config_file))
    out_console.print_json(json.dumps(settings.model_dump(mode="json")))


@app.command()
def tiles(
    width: int = typer.Argument(..., min=1, help="Frame width in px."),
    height: int = typer.Argument(..., min=1, help="Frame height in px."),
    config_file: Path | None = ConfigOpt,
) -> None:
    """Show the ROI and tile grid a frame of WIDTH x HEIGHT gets (same functions as training)."""
    from edge.tiling import make_layout

    settings = load_settings(EdgeSettings, config_file)
    geometry = settings.geometry
    layout = make_layout(width, height, geometry, settings.roi)  # the station's own rule (crop or [roi] box)
    roi, boxes = layout.roi, layout.boxes
    xs = sorted({box.x for box in boxes})
    ys = sorted({box.y for box in boxes})
    table = Table(title=f"{width}x{height} frame")
    table.add_column("what")
    table.add_column("value")
    table.add_row("ROI", f"x={roi.x} y={roi.y} {roi.width}x{roi.height}")
    table.add_row("tiles", f"{len(xs)} x {len(ys)} = {len(boxes)} of {geometry.tile_px} px -> {geometry.patch_px} px")
    table.add_row("x starts", " ".join(map(str, xs)))
    table.add_row("y starts", " ".join(map(str, ys)))
    table.add_row("padded tiles", str(sum(box.valid_fraction(roi) < 1 for box in boxes)))
    out_console.print(table)


@app.command("build-engine")
def build_engine_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (model.onnx + bundle.json) to build the engine for."),
    precision: Precision | None = typer.Option(None, "--precision", help="fp16 | int8 | fp32 (backend.precision)."),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="int8: folder of patch PNGs to calibrate with (backend.calibration_dir)."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even when a matching engine is cached."),
    config_file: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
    log_level: str = LogLevelOpt,
) -> None:
    """Build BUNDLE's TensorRT engine into the station's engine cache, so its first start is quick.

    Use the station's config: the engine is keyed by precision, batch sizes and workspace.
    Exit codes: 0 engine ready, 1 build failed, 2 no TensorRT/GPU here or bad arguments.
    """
    from edge.backends import BackendError
    from edge.engine_build import build_with_progress, engine_config, tensorrt_missing

    _setup_logging(log_level)
    settings = _station_settings(config_file, data_dir=data_dir)
    backend = engine_config(settings, precision, calibration)
    missing = tensorrt_missing()
    if missing is not None:
        _fail(str(missing), 2)
    try:
        info = build_with_progress(bundle, backend, force, console)
    except (BackendError, ImportError, OSError) as error:
        _fail(f"engine build failed: {error}", 1)
    key = info.key
    what = f"built in {info.metadata.get('build_s', 0):.0f} s" if info.built else "cached, reused"
    out_console.print(
        f"{info.path} ({what}; {key.gpu_name} sm{key.compute_capability}, TensorRT {key.tensorrt_version}, "
        f"{key.precision}, batch {key.min_batch}..{key.max_batch})",
        markup=False,
        highlight=False,
    )


@app.command()
def doctor(
    config_file: Path | None = ConfigOpt,
    source: str | None = SourceOpt,
    classifier: Path | None = ClassifierOpt,
    segmenter: Path | None = SegmenterOpt,
    broker: str | None = BrokerOpt,
    line: str | None = LineOpt,
    station: str | None = StationOpt,
    data_dir: Path | None = DataDirOpt,
    backend: str | None = BackendOpt,
    timeout_s: float = typer.Option(3.0, "--timeout", min=0.1, help="Seconds to wait for the broker."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON instead of a table."),
) -> None:
    """Check that the station can start: settings, bundles, backends, GPU, broker, disk, store, Python.

    Builds nothing (a missing TensorRT engine is a warning). Exit 0 when no check fails, 2 when the
    settings are invalid or name missing files (as `run` would exit), 1 when another check fails.
    """
    from edge import doctor as checks

    results = checks.run_checks(
        lambda: _station_settings(
            config_file, source, classifier, segmenter, broker, line, station, data_dir, backend, files=("mqtt",)
        ),
        broker_timeout_s=timeout_s,
    )
    if as_json:
        out_console.print_json(json.dumps(checks.as_dicts(results)))
    else:
        out_console.print(checks.render(results))
    settings_failed = any(row.check == "settings" and row.status == checks.FAIL for row in results)
    raise typer.Exit(2 if settings_failed else checks.exit_code(results))


@app.command()
def watch(
    config_file: Path | None = ConfigOpt,
    broker: str | None = BrokerOpt,
    line: str | None = typer.Option(None, "--line", help="Only this line (default: all)."),
    station: str | None = typer.Option(None, "--station", help="Only this station (default: all)."),
    duration: float | None = typer.Option(None, "--duration", min=0, help="Stop after S seconds (default: Ctrl-C)."),
) -> None:
    """Follow stations like an MES would: statuses, stats, results, alerts and events as a live table.

    Without --broker: the config's mqtt section (no mqtt.host: the station's embedded broker on 127.0.0.1:mqtt.port).
    Exit 2 when no broker answers or it refuses the login.
    """
    from edge.publish.watch import LoginRefused
    from edge.publish.watch import watch as watch_stations

    mqtt = _station_settings(config_file, broker=broker, files=("mqtt",)).mqtt
    try:
        watch_stations(mqtt, line or "+", station or "+", duration_s=duration, console=out_console)
    except LoginRefused as error:
        _fail(f"{error}. Check mqtt.username and mqtt.password_file (an account that may read, e.g. dashboard).", 2)
    except TimeoutError as error:
        _fail(
            f"no MQTT broker answered ({error}). Is the station (its embedded broker) or the broker running? "
            "Give it with --broker HOST:PORT or mqtt.host/mqtt.port.",
            2,
        )


@app.command("export-uncertain")
def export_uncertain(
    out: Path = typer.Argument(..., help="Archive to write (.tar.gz): patch PNGs + manifest.json."),
    since: str | None = typer.Option(
        None, "--since", help="Only patches captured since: an age (7d, 36h) or ISO time."
    ),
    only_new: bool = typer.Option(False, "--only-new", help="Only patches not exported before."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    config_file: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Export the station's uncertain patches for retraining (pump-train ingest reads the archive)."""
    from edge.store import UncertainStore, parse_since

    settings = _station_settings(config_file, data_dir=data_dir)
    try:
        since_time = parse_since(since) if since is not None else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None
    with UncertainStore.open(settings.store, settings.data_dir, recover=False) as store:
        try:
            count = store.export(out, since_time, only_new=only_new, overwrite=overwrite)
        except FileExistsError as error:
            _fail(str(error), 2)
    out_console.print(f"exported {count} patches to {out}", markup=False, highlight=False)


@app.command()
def outbox(
    dead_letters: bool = typer.Option(False, "--dead-letters", help="List the messages the broker refused."),
    requeue: bool = typer.Option(
        False, "--requeue", help="Move every dead letter back to the outbox (once the broker's ACL is fixed)."
    ),
    purge: bool = typer.Option(False, "--purge", help="Delete every dead letter (station stopped)."),
    limit: int = typer.Option(50, "--limit", min=1, help="Dead letters to list at most."),
    as_json: bool = typer.Option(False, "--json", help="Print the report (and dead letters) as JSON."),
    config_file: Path | None = ConfigOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Show the station's outbox: messages waiting for the broker, dead letters (refused by it), counters.

    --requeue works while the station runs (it asks the station, which replays them after its
    backlog) or stopped (they go out at its next start). Exit 2 when there is no outbox file.
    """
    from edge.publish import dead_letters as letters
    from edge.publish.outbox import OutboxBusy

    settings = _station_settings(config_file, data_dir=data_dir)
    path = settings.mqtt.resolved_outbox_path(Path(settings.data_dir))
    try:
        if requeue:
            moved, message = letters.requeue(path)
            out_console.print(message, markup=False, highlight=False)
            raise typer.Exit(0 if moved is not None else 1)
        if purge:
            out_console.print(f"{letters.purge(path)} dead letter(s) deleted", markup=False, highlight=False)
            return
        info = letters.report(path)
        listed = letters.list_dead_letters(path, limit) if dead_letters else []
        if as_json:
            out_console.print_json(json.dumps(letters.as_json(info, listed if dead_letters else None)))
            return
        out_console.print(letters.report_table(info))
        if dead_letters:
            out_console.print(letters.dead_letter_table(listed, info.dead_letters))
    except (FileNotFoundError, OutboxBusy) as error:
        _fail(str(error), 2)


def _frame_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 1 or int(height) < 1:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT, e.g. 3200x2224, got {text!r}", param_hint="--frame-size")
    return int(width), int(height)


@app.command()
def bench(
    classifier: Path | None = typer.Option(
        None, "--classifier", help="Classifier bundle (default: bundles.classifier, else demo-out/bundles/classifier)."
    ),
    segmenter: Path | None = typer.Option(
        None, "--segmenter", help="Segmenter bundle (default: bundles.segmenter, else demo-out/bundles/segmenter)."
    ),
    backend: str = typer.Option("onnxruntime", "--backend", help="auto | tensorrt | onnxruntime (backend.kind)."),
    ort_provider: str = typer.Option("cpu", "--ort-provider", help="ONNX Runtime provider: cpu | cuda | auto."),
    frames: int = typer.Option(16, "--frames", min=1, help="Synthetic frames to generate (ignored with --frames-dir)."),
    frames_dir: Path | None = typer.Option(
        None, "--frames-dir", help="Benchmark on the image files of this folder instead of synthetic frames."
    ),
    frame_size: str = typer.Option("3200x2224", "--frame-size", help="WIDTHxHEIGHT of the synthetic frames."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic frames."),
    quick: bool = typer.Option(False, "--quick", help="Smoke run: 1 naive frame, 1 ROI repeat."),
    use_broker: bool = typer.Option(
        True, "--broker/--no-broker", help="Publish to an embedded Mosquitto (--no-broker: outbox only)."
    ),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the JSON report to this file."),
    config_file: Path | None = ConfigOpt,
    log_level: str = typer.Option("WARNING", "--log-level", help="Station log level during the pipeline run."),
) -> None:
    """Measure the station on this machine: pipeline vs bare vs naive inference, stages, memory, ROI scaling.

    Runs the real station (--once, embedded broker, throw-away data folder) on the same frames
    the other measurements use, in the bundles' own geometry. The tables go to stderr, the
    JSON report to stdout (and --json FILE); targets are reported, never enforced (exit 0).
    """
    from edge.bench import BenchConfig, report_tables, run_bench

    _setup_logging(log_level)
    size = _frame_size(frame_size)
    settings = _station_settings(config_file, classifier=classifier, segmenter=segmenter, backend=backend)
    bundles = settings.bundles
    if bundles.classifier is None and bundles.segmenter is None:
        demo = Path("demo-out/bundles")
        if not (demo / "classifier").is_dir() or not (demo / "segmenter").is_dir():
            raise ValueError(
                "no model bundles: pass --classifier BUNDLE --segmenter BUNDLE (or set bundles.*), "
                "or run `make demo` to export demo-out/bundles/{classifier,segmenter}"
            )
        bundles = bundles.model_copy(update={"classifier": demo / "classifier", "segmenter": demo / "segmenter"})
    settings = settings.model_copy(
        update={  # validated copies: model_copy(update=...) alone would not check --ort-provider
            "bundles": type(bundles).model_validate({**bundles.model_dump(), "follow_bundle_geometry": True}),
            "backend": type(settings.backend).model_validate(
                {**settings.backend.model_dump(), "ort_provider": ort_provider}
            ),
        }
    )
    config = BenchConfig(
        settings=settings,
        frames=frames,
        frame_size=size,
        frames_dir=frames_dir,
        seed=seed,
        quick=quick,
        eager=False,  # eager PyTorch: benchmarks/edge_vs_eager.py (the edge never imports torch)
        broker=use_broker,
        progress=lambda message: console.print(f"bench: {message}", markup=False, highlight=False),
    )
    result = run_bench(config)
    for table in report_tables(result):
        console.print(table)
    for note in result["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)
    text = json.dumps(result, indent=2)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(text + "\n")
    sys.stdout.write(text + "\n")


@app.command()
def evaluate(
    frames_dir: Path = typer.Argument(..., help="Folder with frames.jsonl (id, image, defects[].bbox), e.g. synth."),
    classifier: Path | None = typer.Option(None, "--classifier", help="Classifier bundle (bundles.classifier)."),
    segmenter: Path | None = typer.Option(None, "--segmenter", help="Segmenter bundle (bundles.segmenter)."),
    cascade: bool | None = typer.Option(
        None, "--cascade/--full", help="Segment only classifier suspects / every patch (default: pipeline.cascade)."
    ),
    precision: str | None = typer.Option(None, "--precision", help="fp32 | fp16 | int8 (backend.precision)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N frames."),
    frames: bool = typer.Option(False, "--frames", help="Print a planted-vs-found row per frame."),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the JSON report to this file."),
    config_file: Path | None = ConfigOpt,
) -> None:
    """Frame-level detection on frames with known defects: region recall, frame recall, false NG on clean frames.

    Runs the station's own inspector (bundles, backend, thresholds, cascade) on each listed frame;
    a planted defect counts as found when a defect region touches its box. JSON on stdout.
    """
    from edge.detection import evaluate_detection, report_table

    settings = _station_settings(config_file, classifier=classifier, segmenter=segmenter)
    if precision is not None:
        settings = settings.model_copy(
            update={
                "backend": type(settings.backend).model_validate(
                    {**settings.backend.model_dump(), "precision": precision}
                )
            }
        )
    report = evaluate_detection(settings, frames_dir, cascade=cascade, limit=limit)
    for table in report_table(report, per_frame=frames):
        console.print(table)
    text = json.dumps(report.to_dict(), indent=2)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(text + "\n")
    sys.stdout.write(json.dumps(report.to_dict(with_frames=False), indent=2) + "\n")


def main() -> None:
    """Console entry point: config errors become one clear message and exit code 2."""
    from edge.backends import BackendError
    from edge.publish.broker import MosquittoNotFound
    from edge.publish.outbox import OutboxBusy
    from edge.store import StoreError

    try:
        app()
    except (ConfigError, ValueError, BackendError, MosquittoNotFound, StoreError, OutboxBusy) as error:
        # OutboxBusy: a second station on the same data_dir is a configuration error, not a crash to retry
        console.print(f"error: {error}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
