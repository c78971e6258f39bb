"""``pump-edge run``: one inspection station, from frames to MQTT.

Start-up reads as named steps (config → store → bundles → publisher → backends → source);
then three threads: the source fills a bounded :class:`~edge.runtime.frames.FrameQueue`,
the inference worker inspects frames and hands results to the durable outbox and the
uncertain-patch store, and the main thread runs the watchdog and publishes stats. One stop
event: SIGTERM/SIGINT (or, with ``once``, the end of the source) drains the queue, flushes
the outbox, publishes ``stopped`` and exits 0.

The publisher starts before the backends (it connects in the background) so that a
TensorRT engine build — minutes on a Jetson — is visible as ``building-engine``; the
watchdog only starts watching once a worker runs, so a build is never taken for a hang.
Python threads cannot be killed: a stuck worker is *abandoned* (it may never return; if it
does, it publishes nothing) and a new worker with fresh backends takes over, within a
restart budget; past the budget the station exits 1 so its supervisor (systemd, Docker)
restarts the process.

Models change without a restart (:mod:`edge.runtime.reload`): ``cmd/reload``, ``cmd/thresholds``
(:mod:`edge.publish.commands`) or a bundle folder renamed into ``bundles.watch_dir`` prepare a new
generation beside the running one; the worker takes it between two frames, and a worker the
watchdog restarts gets the bundles in force then, not the start-up ones.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.backends import BackendConfig, BuildProgress, InferenceBackend, create_backend
from edge.config import EdgeSettings
from edge.postprocess import Thresholds, render_defect_map
from edge.publish.broker import ensure_broker
from edge.publish.client import MqttPublisher
from edge.publish.commands import COMMAND_JOURNAL_NAME, CommandDesk
from edge.runtime.frames import FrameQueue
from edge.runtime.inspector import Inspector, TileCrops, open_inspector
from edge.runtime.messages import StationIdentity, error_result, event_message, inspection_result, now
from edge.runtime.reload import BundleWatcher, ModelReloader
from edge.runtime.startup import (
    check_source_exists,
    load_station_bundles,
    resolve_data_path,
    software_version,
    startup_step,
)
from edge.runtime.stats import RuntimeStats
from edge.sources.base import Frame, FrameError, FrameSource, SourceState, SourceStatus
from edge.sources.registry import create_source
from edge.store import StoreError, UncertainStore
from edge.tiling import FrameTiler
from shared.bundle import LoadedBundle
from shared.messages import (
    EventKind,
    StationState,
    StatsMessage,
    Verdict,
    config_hash,
    model_ref,
)

log = logging.getLogger("pump.edge")

BackendFactory = Callable[[str, LoadedBundle, BackendConfig], InferenceBackend]

# Process exit codes (2 = bad settings or bundle comes from ``pump-edge``'s entry point). When several
# apply, the first of FAILED, REFUSED, OUTBOX_LEFT, FRAMES_FAILED in that order is returned.
EXIT_OK = 0  # stopped cleanly (SIGTERM/SIGINT, or --once with every frame inspected and delivered)
EXIT_FAILED = 1  # the station failed (restart budget spent, frame source died for good): systemd restarts it
EXIT_OUTBOX_LEFT = 3  # --once: messages stay in the outbox (they go out at the next start)
EXIT_FRAMES_FAILED = 4  # --once: at least one input could not be inspected (bad file, model error)
EXIT_REFUSED = 5  # the broker refused messages (ACL): they wait as dead letters, nothing reached the MES


@dataclass
class _Worker:
    """One inference worker thread and what the watchdog needs to know about it."""

    inspector: Inspector
    thread: threading.Thread | None = None
    busy_since: float | None = None  # monotonic start of the frame in progress
    current: Frame | None = None  # the frame in progress (the watchdog publishes an ERROR result for it)
    abandoned: bool = False


class Station:
    """A running station; :meth:`run` returns the process exit code."""

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        once: bool = False,
        backend_factory: BackendFactory | None = None,
    ) -> None:
        self.settings = settings
        self.once = once
        self.data_dir = Path(settings.data_dir)
        self.backend_config = settings.backend.model_copy(
            update={"engine_cache_dir": resolve_data_path(settings.backend.engine_cache_dir, self.data_dir)}
        )
        self._backend_factory = backend_factory or self._default_backend
        self.stats = RuntimeStats()
        self.stop_event = threading.Event()
        self.source_done = threading.Event()
        self._publish_lock = threading.Lock()
        self._restarts: deque[float] = deque()
        self._source_restarts: deque[float] = deque()
        self._source_failure: str | None = None  # set by a source thread that died on an unexpected error
        self.exit_code = EXIT_OK
        self.publisher: MqttPublisher | None = None
        self.store: UncertainStore | None = None
        self.broker = None
        self.source = None
        self.queue: FrameQueue | None = None
        self.worker: _Worker | None = None
        self._building = False
        self.models: dict[str, str] = {}
        self.model_versions: dict[str, str] = {}
        self.reloader: ModelReloader | None = None  # hot reload (edge/runtime/reload.py)
        self.commands: CommandDesk | None = None

    # --- start-up ------------------------------------------------------------------------

    def _default_backend(self, task: str, bundle: LoadedBundle, config: BackendConfig) -> InferenceBackend:
        return create_backend(None, bundle, config, self._on_build_progress)

    def _on_build_progress(self, progress: BuildProgress) -> None:
        if not self._building:
            self._building = True
            log.info("TensorRT engine build started (minutes on a Jetson): %s", progress.message)
            if self.publisher is not None:
                self.publisher.set_status(StationState.BUILDING_ENGINE)
                self._event(EventKind.ENGINE_BUILDING, progress.message)

    def start(self) -> None:
        """The named start-up steps; raises with a clear message when one fails."""
        settings, total = self.settings, 6
        with startup_step(1, total, "load bundles"):
            self.bundles, self.geometry = load_station_bundles(settings)
            self.models = {
                task: model_ref(b.manifest.name, b.manifest.version, b.manifest.model_sha256)
                for task, b in self.bundles.items()
            }
            self.model_versions = {task: f"{b.manifest.name}@{b.manifest.version}" for task, b in self.bundles.items()}
            self.thresholds = Thresholds.from_bundles(
                self.bundles["classifier"].manifest if "classifier" in self.bundles else None,
                self.bundles["segmenter"].manifest if "segmenter" in self.bundles else None,
                settings.postprocess,
            )
            first = next(iter(self.bundles.values())).manifest
            self.tiler = FrameTiler(self.geometry, first.input, settings.roi)
        with startup_step(2, total, "open uncertain-patch store"):
            if settings.pipeline.log_uncertain and settings.store.enabled and "classifier" in self.bundles:
                self.store = UncertainStore.open(settings.store, self.data_dir)
                log.info("uncertain patches go to %s", self.store.database)
            else:
                log.info("uncertain-patch logging off (needs a classifier, pipeline.log_uncertain and store.enabled)")
        with startup_step(3, total, "connect publisher"):
            mqtt_config, self.broker = ensure_broker(settings.mqtt)
            if self.broker is not None:
                log.info("no mqtt.host configured: embedded broker on %s:%d", mqtt_config.host, mqtt_config.port)
            publisher = MqttPublisher(
                mqtt_config,
                line=settings.line_id,
                station=settings.station_id,
                software_version=software_version(),
                models=self.models,
                config_hash=config_hash(settings.model_dump(mode="json")),
                data_dir=self.data_dir,
            )
            self.commands = CommandDesk(
                settings.line_id,
                settings.station_id,
                {
                    "reload": lambda command: self.reloader.reload_command(command),
                    "thresholds": lambda command: self.reloader.thresholds_command(command),
                },
                publisher.publish_ack,
                journal=Path(settings.data_dir) / COMMAND_JOURNAL_NAME,
            )
            publisher.on_command = self.commands.submit  # subscribes to its own cmd/# on every connect
            publisher.start()  # raises OutboxBusy when another station holds this data_dir's outbox
            self.publisher = publisher  # only a started publisher is stopped (and sends stats) at shutdown
        kind = getattr(self.backend_config.kind, "value", self.backend_config.kind)
        with startup_step(4, total, f"prepare backends ({kind})"):
            self.worker = _Worker(self._open_inspector())
            if self._building:
                self._building = False
                self._event(EventKind.ENGINE_READY, "TensorRT engine ready")
            self.reloader = ModelReloader(
                settings,
                self.geometry,
                self.bundles,
                self.thresholds,
                self._open_inspector,
                lambda reason: self._event(EventKind.MODEL_REJECTED, reason),
            )
        with startup_step(5, total, f"open source {settings.source.spec}"):
            check_source_exists(settings)
            self._open_source()
            drop = settings.pipeline.backpressure == "drop-oldest" or (
                settings.pipeline.backpressure == "auto" and self.source.drops_when_busy
            )
            self.queue = FrameQueue(settings.pipeline.queue_size, drop_oldest=drop)
            log.info("backpressure: %s", "drop-oldest" if drop else "block")
        with startup_step(6, total, "start threads"):
            self._start_worker(self.worker)
            self._source_thread.start()
            self.commands.start()
            if settings.bundles.watch_dir is not None:
                watch_dir, interval = settings.bundles.watch_dir, settings.bundles.watch_interval_s
                BundleWatcher(watch_dir, interval, self._watched, self.stop_event).start()
            self.publisher.set_status(StationState.ONLINE, models=self.models)

    def _open_inspector(
        self, bundles: dict[str, LoadedBundle] | None = None, thresholds: Thresholds | None = None
    ) -> Inspector:
        """Backends for ``bundles`` (default: those in force, what a restarted worker gets)."""
        return open_inspector(
            self.tiler,
            self.thresholds if thresholds is None else thresholds,
            self.settings.postprocess,
            self.bundles if bundles is None else bundles,
            lambda task, bundle: self._backend_factory(task, bundle, self.backend_config),
            cascade=self.settings.pipeline.cascade,
            warmup=self.settings.pipeline.warmup,
        )

    # --- threads ---------------------------------------------------------------------------

    def _open_source(self) -> None:
        """Create the configured source and start its thread (at start-up and after a source failure)."""
        self.source = create_source(self.settings.source, self.data_dir)  # data_dir: a folder's ledger
        self.source_done.clear()
        self._source_thread = threading.Thread(
            target=self._source_loop, args=(self.source,), name="source", daemon=True
        )

    def _source_loop(self, source: FrameSource) -> None:
        try:
            with source:
                for item in source:
                    if self.stop_event.is_set():
                        break
                    if isinstance(item, Frame):
                        self.queue.put(item, self.stop_event)
                    elif isinstance(item, FrameError):
                        self.stats.add("frame_errors")
                        self.stats.add("errors")
                        log.warning("bad frame %s: %s", item.ref, item.reason)
                        self._event(EventKind.FRAME_ERROR, item.reason, ref=item.ref)
                    elif isinstance(item, SourceStatus):
                        connected = item.state == SourceState.CONNECTED
                        log.log(
                            logging.INFO if connected else logging.WARNING,
                            "source %s: %s (%s)",
                            item.source,
                            item.state.value,
                            item.reason,
                        )
                        kind = EventKind.SOURCE_CONNECTED if connected else EventKind.SOURCE_DISCONNECTED
                        self._event(kind, item.reason)
        except BaseException as error:  # noqa: BLE001 - a source bug must never leave a station online at 0 fps
            self.stats.add("errors")
            log.exception("frame source failed: %s", error)
            self._event(EventKind.SOURCE_FAILED, f"source failed: {type(error).__name__}: {error}")
            self._source_failure = f"{type(error).__name__}: {error}"
        finally:
            if source is self.source:
                self.source_done.set()

    def _recover_source(self) -> bool:
        """After a source failure: reopen an endless source within the restart budget; False = give up (exit 1).

        A finite source (a folder read once, a video file) is not reopened: it would start again from
        its first frame. The station then exits 1 once the frames already queued are inspected.
        """
        reason, self._source_failure = self._source_failure, None
        config = self.settings.source
        endless = config.kind in ("camera", "synthetic") or (config.kind == "folder" and config.watch)
        if not endless:
            log.error("frame source %s failed (%s) and is finite: stopping with exit %d", config.spec, reason, 1)
            return False
        now = time.monotonic()
        window = self.settings.pipeline.restart_window_s
        while self._source_restarts and now - self._source_restarts[0] > window:
            self._source_restarts.popleft()
        if len(self._source_restarts) >= self.settings.pipeline.max_restarts:
            log.error("frame source failed again (%s): restart budget spent, exiting %d", reason, EXIT_FAILED)
            self._event(EventKind.SOURCE_FAILED, f"{reason}; restart budget spent, exiting {EXIT_FAILED}")
            return False
        self._source_restarts.append(now)
        self.stats.add("source_restarts")
        self._open_source()
        self._source_thread.start()
        log.warning("frame source %s reopened after: %s", config.spec, reason)
        self._event(EventKind.SOURCE_RESTARTED, f"reopened after: {reason}")
        return True

    def _start_worker(self, worker: _Worker) -> None:
        worker.thread = threading.Thread(target=self._worker_loop, args=(worker,), name="inference", daemon=True)
        worker.thread.start()

    def _watched(self, path: Path) -> bool:
        return self.reloader.reload(path).accepted

    def _take_generation(self, worker: _Worker) -> None:
        """Between two frames: switch to the models (or thresholds) a reload prepared, if any."""
        if self.reloader is None:
            return
        with self._publish_lock:  # the watchdog abandons a worker under this lock: an abandoned one takes nothing
            generation = None if worker.abandoned else self.reloader.take()
        if generation is None:
            return
        if generation.inspector is not None:
            old, worker.inspector = worker.inspector, generation.inspector
            old.close()
        worker.inspector.thresholds = generation.thresholds  # also a thresholds change that followed a reload
        self.bundles, self.thresholds, self.models = generation.bundles, generation.thresholds, generation.models
        self.model_versions = {t: f"{b.manifest.name}@{b.manifest.version}" for t, b in self.bundles.items()}
        log.info("model-reloaded: %s", generation.reason)
        self.publisher.set_status(self.publisher.state, models=self.models)
        self._event(EventKind.MODEL_RELOADED, generation.reason)

    def _worker_loop(self, worker: _Worker) -> None:
        while not worker.abandoned:
            self._take_generation(worker)
            frame = self.queue.get(0.1)
            if frame is None:
                if self.queue.closed:
                    return
                continue
            worker.busy_since, worker.current = time.monotonic(), frame
            try:
                self._process(worker, frame)
            except Exception as error:  # noqa: BLE001 - one bad frame must not stop the line
                self.stats.add("errors")
                log.exception("frame %s failed: %s", frame.frame_id, error)
                self._event(EventKind.FRAME_FAILED, f"inspection failed: {error}", ref=frame.frame_id)
            finally:
                worker.busy_since, worker.current = None, None

    def _process(self, worker: _Worker, frame: Frame) -> None:
        """Inspect one frame and publish its result: every frame taken off the queue gets exactly one.

        A frame the models cannot judge (an exception, NaN outputs) still gets a result, with verdict
        ERROR and the reason, so the MES sees why its ``seq`` was used and that the part passed uninspected.
        """
        try:
            inspection = worker.inspector.inspect(frame)
        except Exception as error:  # noqa: BLE001 - the frame fails, the station goes on
            self._publish_frame_failure(worker, frame, f"inspection failed: {error}")
            return
        stages = dict(inspection.seconds)
        started = time.perf_counter()
        with self._publish_lock:
            if worker.abandoned:  # the watchdog gave up on this worker; its successor owns seq
                return
            seq, result_id = self.publisher.next_result_ids()
            defect_map, map_scale = None, 1.0  # rendered once, as an image; the publisher fits and encodes it once
            try:
                result = inspection_result(inspection, self._identity(), seq, result_id)
                if self.settings.mqtt.publishes_defect_map(result.verdict):
                    defect_map = render_defect_map(
                        frame.image, inspection.analysis, self.thresholds, self.settings.postprocess
                    )
                    map_scale = defect_map.shape[1] / frame.image.shape[1]  # drawn at most defect_map_max_px wide
            except Exception as error:  # noqa: BLE001 - seq is taken: publish why it carries no verdict
                reason = f"result could not be built: {error}"
                self._count_failure(frame, reason)
                result, defect_map = error_result(frame, self._identity(), seq, result_id, reason), None
            self.publisher.publish_result(result, defect_map, map_scale=map_scale)
        stages["publish"] = time.perf_counter() - started
        self.source.mark_done(frame)  # the result is in the outbox: a restart need not inspect this file again
        if result.verdict == Verdict.ERROR:
            return
        started = time.perf_counter()
        if self.store is not None and inspection.analysis.patch_scores is not None:
            try:
                logged = self.store.log(
                    frame_id=frame.frame_id,
                    captured_at=frame.captured_at,
                    station=self.settings.station_id,
                    line=self.settings.line_id,
                    crops=TileCrops(frame.image, inspection.layout),
                    boxes=inspection.layout.boxes,
                    classifier_scores=inspection.analysis.patch_scores,
                    segmenter_max_scores=inspection.segmenter_max_scores,
                    segmenter_defect_pixels=inspection.segmenter_defect_pixels,
                    model_versions=self.model_versions,
                    valid_fractions=inspection.layout.valid_fractions,
                )
                self.stats.add("uncertain_logged", logged)
            except StoreError as error:
                self.stats.add("errors")
                log.error("uncertain-patch store: %s", error)
                self._event(EventKind.STORE_ERROR, str(error), ref=frame.frame_id)
        stages["log"] = time.perf_counter() - started
        self.stats.frame_done(result.verdict == Verdict.NG, result.latency_ms, stages)

    def _count_failure(self, frame: Frame, reason: str) -> None:
        self.stats.add("errors")
        self.stats.add("frames_failed")
        log.error("frame %s not inspected: %s", frame.frame_id, reason)
        self._event(EventKind.FRAME_FAILED, reason, ref=str(frame.path or frame.frame_id))

    def _publish_frame_failure(self, worker: _Worker, frame: Frame, reason: str) -> None:
        """Count, log and event a frame that could not be inspected, and publish its ERROR result."""
        self._count_failure(frame, reason)
        with self._publish_lock:
            if worker.abandoned:
                return
            seq, result_id = self.publisher.next_result_ids()
            self.publisher.publish_result(error_result(frame, self._identity(), seq, result_id, reason))
        self.source.mark_done(frame)  # its (ERROR) result is in the outbox

    def _identity(self) -> StationIdentity:
        return StationIdentity(
            session=self.publisher.session,
            line=self.settings.line_id,
            station=self.settings.station_id,
            models=self.models,
        )

    def _event(self, kind: EventKind, reason: str, ref: str = "") -> None:
        if self.publisher is None:
            return
        source = self.settings.source.name or self.settings.source.kind
        line, station = self.settings.line_id, self.settings.station_id
        self.publisher.publish_event(event_message(kind, reason, line=line, station=station, source=source, ref=ref))

    # --- supervision -----------------------------------------------------------------------

    def _check_worker(self) -> bool:
        """Restart a stuck worker; False when the restart budget is spent."""
        worker = self.worker
        busy_since = worker.busy_since
        timeout = self.settings.pipeline.watchdog_timeout_s
        if busy_since is None or time.monotonic() - busy_since < timeout:
            return True
        now = time.monotonic()
        window = self.settings.pipeline.restart_window_s
        while self._restarts and now - self._restarts[0] > window:
            self._restarts.popleft()
        if len(self._restarts) >= self.settings.pipeline.max_restarts:
            log.error(
                "inference worker stuck for > %.0f s and the restart budget (%d in %.0f s) is spent",
                timeout,
                self.settings.pipeline.max_restarts,
                window,
            )
            self._event(EventKind.WORKER_STUCK, f"stuck > {timeout:.0f} s; restart budget spent, exiting")
            return False
        self._restarts.append(now)
        with self._publish_lock:
            worker.abandoned = True
            stuck = worker.current
            if stuck is not None:  # its seq is taken here, so the abandoned worker can never publish it
                seq, result_id = self.publisher.next_result_ids()
                reason = f"inspection stuck for > {timeout:.0f} s; worker restarted"
                self.publisher.publish_result(error_result(stuck, self._identity(), seq, result_id, reason))
        self.stats.add("frames_dropped")  # the frame the stuck worker holds
        self.stats.add("worker_restarts")
        log.error("inference worker stuck for > %.0f s: abandoning it and starting a new one", timeout)
        self._event(EventKind.WORKER_RESTARTED, f"inference stuck for > {timeout:.0f} s; worker restarted")
        self.worker = _Worker(self._open_inspector())
        self._start_worker(self.worker)
        return True

    def stats_message(self) -> StatsMessage:
        p50, p99 = self.stats.latency_percentiles()
        return StatsMessage(
            line=self.settings.line_id,
            station=self.settings.station_id,
            timestamp=now(),
            uptime_s=self.stats.uptime_s,
            fps=self.stats.take_fps(),
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            queue_depths={"frames": len(self.queue) if self.queue is not None else 0},
            frames_skipped=self.queue.skipped if self.queue is not None else 0,
            frames_dropped=self.stats.frames_dropped,
            errors=self.stats.errors,
            uncertain_logged=self.stats.uncertain_logged,
        )

    def _idle(self) -> bool:
        return len(self.queue) == 0 and self.worker.busy_since is None

    def request_stop(self, *_: object) -> None:
        if not self.stop_event.is_set():
            log.info("stop requested: draining")
        self.stop_event.set()

    def supervise(self) -> None:
        """Main-thread loop: watchdog, stats, and the end condition (stop request or, with once, end of input)."""
        interval = self.settings.mqtt.stats_interval_s
        next_stats = time.monotonic() + interval
        while not self.stop_event.is_set():
            if self._source_failure is not None and not self._recover_source():
                self.exit_code = EXIT_FAILED
                break
            if self.once and self.source_done.is_set() and self._idle():
                break
            if not self._check_worker():
                self.exit_code = EXIT_FAILED
                break
            if time.monotonic() >= next_stats:
                self.publisher.publish_stats(self.stats_message())
                next_stats = time.monotonic() + interval
            time.sleep(0.05)

    def shutdown(self) -> int:
        """Drain, flush, publish ``stopped``; returns the exit code."""
        pipeline = self.settings.pipeline
        deadline = time.monotonic() + pipeline.drain_timeout_s
        if self.source is not None:
            self.source.close()
        if self.queue is not None:
            self.queue.close()
            while self.worker is not None and not self._idle() and time.monotonic() < deadline:
                time.sleep(0.02)
            left = self.queue.clear()
            if left:
                self.stats.add("frames_dropped", left)
                log.warning("%d queued frame(s) not inspected before the drain timeout", left)
        if self.worker is not None and self.worker.thread is not None:
            self.worker.thread.join(max(0.1, deadline - time.monotonic()))
        if self.commands is not None:  # a command in progress ends (and is acknowledged) before the publisher stops
            self.commands.stop()
        flushed = True
        if self.publisher is not None:
            self.publisher.publish_stats(self.stats_message())
            flushed = self.publisher.stop(timeout_s=max(1.0, deadline - time.monotonic()))
            if not flushed:
                log.warning("%s: messages stay in the outbox for the next start", self.publisher.outbox_path)
        if self.reloader is not None:
            self.reloader.close()
        if self.worker is not None:
            self.worker.inspector.close()
        if self.store is not None:
            self.store.close()
        if self.broker is not None:
            self.broker.close()
        refused = self.publisher.counters.rejected if self.publisher is not None else 0
        if self.exit_code == EXIT_OK and self.once and refused:
            log.error("%d message(s) refused by the broker, kept as dead letters: exit %d", refused, EXIT_REFUSED)
            return EXIT_REFUSED
        if self.exit_code == EXIT_OK and self.once and not flushed:
            return EXIT_OUTBOX_LEFT
        if self.exit_code == EXIT_OK and self.once and self.frames_not_inspected:
            log.warning("%d input(s) could not be inspected: exit %d", self.frames_not_inspected, EXIT_FRAMES_FAILED)
            return EXIT_FRAMES_FAILED
        return self.exit_code

    @property
    def frames_not_inspected(self) -> int:
        """Inputs that got no OK/NG verdict: bad files, ERROR results, frames dropped or skipped."""
        stats = self.stats
        skipped = self.queue.skipped if self.queue is not None else 0
        return stats.frame_errors + stats.frames_failed + stats.frames_dropped + skipped

    def run(self) -> int:
        """Start, supervise until stopped, shut down; installs SIGTERM/SIGINT handlers when in the main thread."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            self.supervise()
        finally:
            code = self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info(
            "stopped: %d frames (%d OK, %d NG), %d skipped, %d errors, exit %d",
            self.stats.frames_done,
            self.stats.frames_ok,
            self.stats.frames_ng,
            self.queue.skipped if self.queue is not None else 0,
            self.stats.errors,
            code,
        )
        return code
