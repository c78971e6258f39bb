"""``pump-edge doctor``: can this station start? One row per check: ``ok``, ``warn`` or ``fail``.

Meant for an installer at the device and for ``ExecStartPre=`` in the systemd unit, so it is
quick and changes nothing that matters: it never builds a TensorRT engine (it only says whether
a usable one is cached), and it connects to the broker with its own client id (``...-doctor``),
so a running station is never kicked off. Any ``fail`` means the station would not start (or
not work); ``warn`` means it would start, but something needs a look - an unreachable broker
is one: the station starts without it and keeps its results in the outbox, while refused
credentials are a ``fail``, and so is an ACL that refuses the station's test publish (a QoS 1,
not retained ``doctor-probe`` event on its own ``event`` topic; the retained status is never
touched). MQTT 3.1.1 cannot report a refused publish, so there the ACL stays unchecked (``warn``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from edge.backends import BackendConfig, BackendKind, available_backends, create_backend, resolve_kind
from edge.backends.device import cuda_device_count, cuda_python_importable, tensorrt_importable, tensorrt_usable
from edge.config import EdgeSettings
from edge.publish.broker import LOOPBACK, find_mosquitto
from edge.publish.config import MqttConfig
from shared.bundle import LoadedBundle, load_bundle

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_PYTHON = (3, 10)
MIN_FREE_BYTES = 1_000_000_000  # below this the disk row warns: store, outbox and engines need room
STYLES = {OK: "green", WARN: "yellow", FAIL: "red"}


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    check: str
    status: str  # ok | warn | fail
    detail: str


class _Rows(list):
    """The report being built; :meth:`guard` turns an unexpected exception into a ``fail`` row."""

    def add(self, check: str, status: str, detail: str) -> None:
        self.append(Check(check, status, detail))

    @contextmanager
    def guard(self, check: str) -> Iterator[None]:
        try:
            yield
        except Exception as error:  # noqa: BLE001 - a doctor reports every failure as a row
            self.add(check, FAIL, f"{type(error).__name__}: {error}")


def backend_config(settings: EdgeSettings) -> BackendConfig:
    """The station's backend settings with ``engine_cache_dir`` resolved against ``data_dir`` (as ``run`` does)."""
    from edge.runtime.station import resolve_data_path

    cache = resolve_data_path(settings.backend.engine_cache_dir, Path(settings.data_dir))
    return settings.backend.model_copy(update={"engine_cache_dir": cache})


def run_checks(load_settings: Callable[[], EdgeSettings], broker_timeout_s: float = 3.0) -> list[Check]:
    """All checks, in the order the station's start-up needs them."""
    rows = _Rows()
    python = ".".join(map(str, sys.version_info[:3]))
    rows.add(
        "python",
        OK if sys.version_info >= MIN_PYTHON else FAIL,
        f"{python} ({sys.executable})" + ("" if sys.version_info >= MIN_PYTHON else "; needs 3.10 or newer"),
    )
    try:
        settings = load_settings()
    except ValueError as error:  # ConfigError, a malformed --broker
        rows.add("settings", FAIL, str(error))
        return rows
    rows.add("settings", OK, f"line {settings.line_id}, station {settings.station_id}, source {settings.source.spec}")
    bundles = _check_bundles(settings, rows)
    _check_backends(settings, bundles, rows)
    with rows.guard("gpu / tensorrt"):
        _check_gpu(settings, rows)
    with rows.guard("broker"):
        _check_broker(settings, broker_timeout_s, rows)
    with rows.guard("data dir"):
        _check_data_dir(settings, rows)
    with rows.guard("store"):
        _check_store(settings, rows)
    return rows


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed, else 1."""
    return int(any(check.status == FAIL for check in checks))


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(check) for check in checks]


def render(checks: list[Check]) -> Table:
    counts = {status: sum(c.status == status for c in checks) for status in (OK, WARN, FAIL)}
    table = Table(title="pump-edge doctor", caption=f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(escape(check.check), f"[{STYLES[check.status]}]{check.status}[/]", escape(check.detail))
    return table


# --- bundles and backends ----------------------------------------------------------------------


def _check_bundles(settings: EdgeSettings, rows: _Rows) -> dict[str, tuple[Path, LoadedBundle]]:
    paths = {
        task: path
        for task, path in (("classifier", settings.bundles.classifier), ("segmenter", settings.bundles.segmenter))
        if path is not None
    }
    if not paths:
        rows.add("bundles", FAIL, "no model bundle configured: set bundles.classifier and/or bundles.segmenter")
        return {}
    follow = settings.bundles.follow_bundle_geometry
    loaded: dict[str, tuple[Path, LoadedBundle]] = {}
    for task, path in paths.items():
        name = f"bundle {task}"
        with rows.guard(name):
            bundle = load_bundle(path, None if follow else settings.geometry)
            manifest, geometry = bundle.manifest, bundle.manifest.geometry
            if manifest.task != task:
                rows.add(name, FAIL, f"{path}: bundle task is {manifest.task!r}, configured as bundles.{task}")
                continue
            rows.add(
                name,
                OK,
                f"{manifest.name} {manifest.version}: sha256 {manifest.model_sha256[:12]} verified; geometry crop "
                f"{geometry.crop_px}, tile {geometry.tile_px} -> patch {geometry.patch_px} "
                + ("(followed: bundles.follow_bundle_geometry)" if follow else "matches [geometry]"),
            )
            loaded[task] = (Path(path), bundle)
    if follow and len({bundle.manifest.geometry for _, bundle in loaded.values()}) > 1:
        rows.add("bundles", FAIL, "follow_bundle_geometry is set but the bundles disagree on geometry")
    return loaded


def engine_cache_problem(bundle: LoadedBundle, config: BackendConfig) -> str | None:
    """Why the station would have to build a TensorRT engine for ``bundle`` first (None: a usable one is cached)."""
    from edge.backends import Precision
    from edge.backends.tensorrt import cached_engine_problem
    from edge.backends.tensorrt.build import calibration_patches, engine_key, import_tensorrt
    from edge.backends.tensorrt.cuda import CudaDevice

    trt = import_tensorrt()
    device = CudaDevice(config.device_id)
    try:
        with device.active():
            calibration = ""
            if config.precision is Precision.INT8 and config.calibration_dir is not None:
                _, calibration = calibration_patches(bundle, config.calibration_dir, config.calibration_max_patches)
            key = engine_key(bundle, config, device, trt.__version__, calibration)
    finally:
        device.release()
    return cached_engine_problem(config.engine_cache_dir, key)


def _check_backends(settings: EdgeSettings, bundles: dict[str, tuple[Path, LoadedBundle]], rows: _Rows) -> None:
    with rows.guard("backend"):
        config = backend_config(settings)
        available = available_backends()
        kind = resolve_kind(config.kind)
        usable = kind in available
        rows.add(
            "backend",
            OK if usable else FAIL,
            f"backend.kind {config.kind.value} -> {kind}; available here: {', '.join(available)}"
            + ("" if usable else " (TensorRT needs the tensorrt package, cuda-python and an NVIDIA GPU)"),
        )
        if not usable:
            return
        for task, (path, bundle) in bundles.items():
            with rows.guard(f"run {task}"):
                _run_one_batch(task, path, bundle, config, kind, rows)


def _run_one_batch(task: str, path: Path, bundle: LoadedBundle, config: BackendConfig, kind: str, rows: _Rows) -> None:
    name = f"run {task}"
    if kind == "tensorrt":
        problem = engine_cache_problem(bundle, config)
        if problem is not None:
            rows.add(
                name,
                WARN,
                f"no usable TensorRT engine in {config.engine_cache_dir} ({problem}): `pump-edge run` builds one at "
                f"start (minutes on a Jetson, status building-engine); build it now with "
                f"`pump-edge build-engine {path}`",
            )
            return
    started = time.perf_counter()
    backend = create_backend(None, bundle, config)
    try:
        opened_ms = 1000 * (time.perf_counter() - started)
        size = min(config.opt_batch, backend.max_batch)
        started = time.perf_counter()
        out = backend.infer(np.zeros((size, *backend.input_shape), dtype=np.float32))
        infer_ms = 1000 * (time.perf_counter() - started)
        if not np.isfinite(out).all():
            rows.add(name, FAIL, f"{backend.name}: non-finite outputs for an all-zero batch")
            return
        fell_back = kind == "tensorrt" and backend.name != "tensorrt"
        rows.add(
            name,
            WARN if fell_back else OK,
            f"{backend.name}{' (TensorRT failed: fell back)' if fell_back else ''}: opened in {opened_ms:.0f} ms, "
            f"batch {size} -> {tuple(out.shape)} in {infer_ms:.0f} ms (first call, includes warm-up)",
        )
    finally:
        backend.close()


def _check_gpu(settings: EdgeSettings, rows: _Rows) -> None:
    parts = []
    smi = shutil.which("nvidia-smi")
    if smi is None:
        parts.append("no nvidia-smi")
    else:
        try:
            result = subprocess.run(
                [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            first = (result.stdout.strip().splitlines() or [result.stderr.strip() or "no output"])[0]
            parts.append(f"nvidia-smi: {first}" if result.returncode == 0 else f"nvidia-smi failed: {first}")
        except (OSError, subprocess.TimeoutExpired) as error:
            parts.append(f"nvidia-smi failed: {error}")
    parts.append(f"CUDA devices {cuda_device_count()}")
    if tensorrt_importable():
        try:
            import tensorrt

            parts.append(f"tensorrt {tensorrt.__version__}")
        except Exception as error:  # noqa: BLE001 - a broken install is what this row is for
            parts.append(f"tensorrt does not import ({error})")
    else:
        parts.append("no tensorrt package (Jetson: apt install python3-libnvinfer)")
    parts.append("cuda-python " + ("present" if cuda_python_importable() else "missing"))
    kind = settings.backend.kind
    status = OK if kind is BackendKind.ONNXRUNTIME or tensorrt_usable() else WARN
    suffix = (
        "; backend.kind auto: inference runs on ONNX Runtime" if status == WARN and kind is BackendKind.AUTO else ""
    )
    rows.add("gpu / tensorrt", status, "; ".join(parts) + suffix)


# --- broker, disk, store -----------------------------------------------------------------------


def _listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _check_broker(settings: EdgeSettings, timeout_s: float, rows: _Rows) -> None:
    mqtt = settings.mqtt
    if mqtt.host is None:
        binary = find_mosquitto()
        if binary is None:
            rows.add(
                "broker",
                FAIL,
                "no mqtt.host, so the station starts an embedded broker, but 'mosquitto' is not installed "
                "(apt-get install mosquitto) - or set mqtt.host",
            )
        elif mqtt.port and _listening(LOOPBACK, mqtt.port):
            rows.add(
                "broker",
                WARN,
                f"no mqtt.host: the station starts {binary} on {LOOPBACK}:{mqtt.port}, but something listens there "
                f"already (the system's mosquitto?): set mqtt.host = '{LOOPBACK}' to use it, or another mqtt.port",
            )
        else:
            rows.add("broker", OK, f"no mqtt.host: the station starts the embedded broker {binary} on port {mqtt.port}")
        return
    status, detail = probe_broker(mqtt, settings.line_id, settings.station_id, timeout_s)
    rows.add("broker", status, detail)


def _probe_event(line: str, station: str) -> bytes:
    from datetime import datetime, timezone

    from shared.messages import EVENT_SEVERITY, EventKind, EventMessage

    kind = EventKind.DOCTOR_PROBE
    return EventMessage(
        line=line,
        station=station,
        time=datetime.now(timezone.utc),
        kind=kind,
        severity=EVENT_SEVERITY[kind],
        source="doctor",
        reason="pump-edge doctor: checking that the broker lets this station publish (ignore this event)",
    ).model_dump_json().encode()


def probe_broker(mqtt: MqttConfig, line: str, station: str, timeout_s: float) -> tuple[str, str]:
    """Connect (TCP, then MQTT with the station's auth and TLS), publish a test event, disconnect; (status, detail).

    The test publish is what the station's results need from the broker's ACL: under MQTT 5 a
    refusal ("Not authorized") comes back in the PUBACK and is a ``fail``.
    """
    from edge.publish.connection import JSON_CONTENT_TYPE, client_id_for, make_client, publish_properties
    from shared.messages import station_topic

    where = f"{mqtt.host}:{mqtt.port}"
    try:
        with socket.create_connection((mqtt.host, mqtt.port), timeout=timeout_s):
            pass
    except OSError as error:
        return WARN, f"{where} not reachable ({error}); the station starts anyway and keeps results in its outbox"
    client = make_client(mqtt, client_id_for(mqtt.topic_prefix, line, station, "doctor"))
    connected, acked = threading.Event(), threading.Event()
    answer: dict[str, object] = {}

    def on_connect(client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001 - paho's signature
        answer["connack"] = reason_code
        connected.set()

    def on_publish(client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001 - paho's signature
        answer["puback"] = reason_code
        acked.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect_timeout = timeout_s
    client.connect_async(mqtt.host, mqtt.port, mqtt.keepalive_s)
    client.loop_start()
    topic = station_topic("event", line, station, mqtt.topic_prefix)
    try:
        if not connected.wait(timeout_s):
            return WARN, f"{where} accepts TCP but sent no MQTT CONNACK within {timeout_s:g} s (TLS or port mismatch?)"
        code = answer["connack"]
        if getattr(code, "is_failure", False):
            return FAIL, f"{where} refused the connection: {code}"
        properties = publish_properties(mqtt, JSON_CONTENT_TYPE)
        client.publish(topic, _probe_event(line, station), 1, False, properties=properties)
        if not acked.wait(timeout_s):
            return WARN, f"connected to {where}, but a test publish to {topic} got no PUBACK within {timeout_s:g} s"
        code = answer["puback"]
    finally:
        client.disconnect()
        client.loop_stop()
    user = f"user {mqtt.username}" if mqtt.username else "no user name"
    security = f"{'TLS' if mqtt.tls else 'no TLS'}, {user}"
    if getattr(code, "is_failure", False):
        return FAIL, (
            f"{where} accepted the login ({security}) but refused a test publish to {topic}: {code}. The broker's "
            "ACL does not let this account write the station's topics (deploy/mosquitto/acl): every result "
            "would become a dead letter"
        )
    if not mqtt.mqtt5:
        return WARN, (
            f"connected to {where} (MQTT 3.1.1, {security}); the ACL is not checked: under 3.1.1 a broker drops a "
            "refused publish silently (use protocol 5 to have refusals reported)"
        )
    return OK, f"connected to {where} (MQTT 5, {security}); a test publish to {topic} was accepted"


def _writable(folder: Path) -> str | None:
    """None when a file can be created in ``folder`` (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as error:
        return str(error)
    return None


def _check_data_dir(settings: EdgeSettings, rows: _Rows) -> None:
    data_dir = Path(settings.data_dir)
    problem = _writable(data_dir)
    if problem is not None:
        rows.add("data dir", FAIL, f"{data_dir}: not writable ({problem})")
        return
    rows.add("data dir", OK, f"{data_dir.resolve()} writable")
    usage = shutil.disk_usage(data_dir)
    low = usage.free < MIN_FREE_BYTES
    rows.add(
        "disk",
        WARN if low else OK,
        f"{usage.free / 1e9:.1f} GB free of {usage.total / 1e9:.1f} GB"
        + (" (below 1 GB: store, outbox and engines need room)" if low else ""),
    )
    config = backend_config(settings)
    if resolve_kind(config.kind) == "tensorrt":
        problem = _writable(config.engine_cache_dir)
        rows.add(
            "engine cache",
            FAIL if problem else OK,
            f"{config.engine_cache_dir}: "
            + (f"not writable ({problem}); engines would be rebuilt" if problem else "ok"),
        )


def _check_store(settings: EdgeSettings, rows: _Rows) -> None:
    from edge.store import UncertainStore

    if not (settings.store.enabled and settings.pipeline.log_uncertain):
        rows.add("store", OK, "uncertain-patch logging off (store.enabled / pipeline.log_uncertain)")
        return
    if settings.bundles.classifier is None:
        rows.add("store", OK, "uncertain-patch logging off (needs a classifier bundle)")
        return
    with UncertainStore.open(settings.store, Path(settings.data_dir), recover=False) as store:
        rows.add(
            "store",
            OK,
            f"{store.database}: {store.count()} patches ({store.count(exported=False)} not exported), "
            f"{store.disk_usage_bytes() / 1e6:.1f} MB of {settings.store.max_disk_mb:g} MB",
        )
