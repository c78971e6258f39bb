"""The whole edge runtime (``pump-edge run``) against a real Mosquitto broker.

Models are the hand-built threshold bundles of ``tests/edge/fixtures.py`` (a pixel brighter
than 0.8 is a defect), so geometry and delivery are tested exactly, independent of learning.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.backends import create_backend
from edge.config import EdgeSettings
from edge.publish.broker import MosquittoBroker, find_mosquitto, free_port
from edge.runtime.station import EXIT_FAILED, EXIT_FRAMES_FAILED, EXIT_OK, Station
from shared.config import GeometryConfig
from shared.messages import EventMessage, StationState, Verdict
from tests.edge.fixtures import make_threshold_bundles
from tests.integration.test_mqtt import broker, first_arrivals, has_state, mes, results, station_config  # noqa: F401

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs the mosquitto broker binary (apt-get install mosquitto; scripts/bootstrap.sh does it as root)",
    ),
]
REPO = Path(__file__).resolve().parents[2]
LINE, STATION = "line1", "station1"  # the collector in test_mqtt listens to these
GEOMETRY = GeometryConfig(crop_px=0, tile_px=128, patch_px=64)
FRAME_W, FRAME_H = 512, 384
SQUARE = (300, 170, 24, 18)  # x, y, w, h of the planted defect (frame px)


def clean_frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(100, 8, (FRAME_H, FRAME_W)), 0, 255).astype(np.uint8)


def defect_frame(seed: int) -> np.ndarray:
    image = clean_frame(seed)
    x, y, w, h = SQUARE
    image[y : y + h, x : x + w] = 255
    return image


def write_frames(folder: Path, frames: list[np.ndarray], start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(frames, start):
        path = folder / f"frame{index:03d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_threshold_bundles(tmp_path_factory.mktemp("bundles"), GEOMETRY)


def settings_for(broker, tmp_path: Path, bundles, spec: str, **sections) -> EdgeSettings:  # noqa: F811
    classifier, segmenter = bundles
    values = {
        "line_id": LINE,
        "station_id": STATION,
        "data_dir": tmp_path / "data",
        "geometry": GEOMETRY,
        "bundles": {"classifier": classifier, "segmenter": segmenter},
        "source": {"spec": spec},
        "backend": {"kind": "onnxruntime", "ort_threads": 1},
        "mqtt": station_config(broker, tmp_path, outbox_path=None, stats_interval_s=0.5, defect_map_policy="ng"),
        "pipeline": {"drain_timeout_s": 10},
    }
    for name, update in sections.items():
        values[name] = {**values.get(name, {}), **update} if isinstance(update, dict) else update
    return EdgeSettings(**values)


def run_station(settings: EdgeSettings, **kwargs) -> tuple[Station, int]:
    """Run in a worker thread (no signal handlers in the test process); returns the exit code."""
    station = Station(settings, once=True, **kwargs)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(station.run()))
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "station did not finish"
    return station, codes[0]


def overlap(box, square) -> bool:
    x, y, w, h = square
    return box.x < x + w and x < box.x + box.w and box.y < y + h and y < box.y + box.h


def test_results_and_alerts_arrive_with_correct_content(broker, tmp_path, bundles):  # noqa: F811
    collector = mes(broker, tmp_path)
    write_frames(tmp_path / "frames", [clean_frame(0), defect_frame(1), clean_frame(2)])
    settings = settings_for(broker, tmp_path, bundles, f"folder:{tmp_path / 'frames'}")
    station, code = run_station(settings)
    assert code == EXIT_OK
    assert collector.wait_for(lambda m: len(results(m)) >= 3 and has_state(StationState.STOPPED)(m), 10)
    got = results(collector.messages("result"))
    collector.stop()
    assert [r.seq for r in got] == [1, 2, 3]
    assert [r.frame_id.split("-")[0] for r in got] == ["frame000", "frame001", "frame002"]
    assert [r.verdict for r in got] == [Verdict.OK, Verdict.NG, Verdict.OK]
    ng = got[1]
    assert len(ng.defects) == 1 and overlap(ng.defects[0].box, SQUARE)
    box = ng.defects[0].box
    assert abs(box.x - SQUARE[0]) <= 2 and abs(box.w - SQUARE[2]) <= 4  # stitched back to frame px
    assert ng.patches.count == 12 and ng.patches.flagged >= 1
    assert (ng.frame_width_px, ng.frame_height_px) == (FRAME_W, FRAME_H)
    assert set(ng.models) == {"classifier", "segmenter"}
    alerts = collector.messages("alert")
    assert [a.message.result_id for a in alerts] == [ng.result_id]
    maps = collector.messages("defect_map")
    assert len(maps) == 1  # policy ng
    assert collector.messages("stats"), "stats were published"
    assert station.stats.frames_done == 3 and station.stats.frames_ng == 1


def test_bad_frames_become_events_and_the_run_continues(broker, tmp_path, bundles):  # noqa: F811
    collector = mes(broker, tmp_path)
    folder = tmp_path / "frames"
    write_frames(folder, [clean_frame(0), defect_frame(1)])
    good = (folder / "frame000.png").read_bytes()
    (folder / "a_truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "b_empty.png").write_bytes(b"")
    (folder / "c_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (folder / "d_text.png").write_bytes(b"this is not an image")
    cv2.imwrite(str(folder / "e_wrong_size.png"), np.zeros((100, 80), np.uint8))
    settings = settings_for(
        broker,
        tmp_path,
        bundles,
        f"folder:{folder}",
        source={"expected_width_px": FRAME_W, "expected_height_px": FRAME_H},
    )
    station, code = run_station(settings)
    assert code == EXIT_FRAMES_FAILED  # --once: the good frames were inspected, five inputs were not
    assert collector.wait_for(lambda m: len(results(m)) >= 2 and has_state(StationState.STOPPED)(m), 10)
    events = [m.message for m in collector.messages("event") if isinstance(m.message, EventMessage)]
    collector.stop()
    bad = sorted(e.ref.rsplit("/", 1)[-1] for e in events if e.kind.value == "frame-error")
    assert bad == ["a_truncated.png", "b_empty.png", "c_corrupt.png", "d_text.png", "e_wrong_size.png"]
    assert [r.verdict for r in results(collector.messages("result"))] == [Verdict.OK, Verdict.NG]
    assert station.stats.frame_errors == 5


class SlowBackend:
    """A real ONNX Runtime backend that takes ``delay_s`` longer per call (a slow device)."""

    def __init__(self, inner, delay_s: float, hang_on_call: int | None = None, hang_s: float = 0.0) -> None:
        self.inner, self.delay_s, self.calls = inner, delay_s, 0
        self.hang_on_call, self.hang_s = hang_on_call, hang_s

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        time.sleep(self.hang_s if self.calls == self.hang_on_call else self.delay_s)
        return self.inner.infer(batch)

    def probe(self) -> None:
        self.inner.probe()

    def warmup(self) -> None:
        self.inner.warmup()

    def close(self) -> None:
        self.inner.close()


def test_a_slow_backend_makes_skipped_rise_with_drop_oldest(broker, tmp_path, bundles):  # noqa: F811
    frames = [clean_frame(i) for i in range(12)]
    write_frames(tmp_path / "frames", frames)
    settings = settings_for(
        broker,
        tmp_path,
        bundles,
        f"folder:{tmp_path / 'frames'}",
        pipeline={"backpressure": "drop-oldest", "queue_size": 1, "drain_timeout_s": 10},
    )

    def slow(task, bundle, config):
        return SlowBackend(create_backend("onnxruntime", bundle, config), 0.15 if task == "classifier" else 0.0)

    station, code = run_station(settings, backend_factory=slow)
    assert code == EXIT_FRAMES_FAILED  # --once: skipped frames were not inspected
    skipped = station.queue.skipped
    assert skipped > 0
    assert station.stats.frames_done + skipped == len(frames)
    assert station.stats_message().frames_skipped == skipped


def test_the_watchdog_restarts_a_stuck_worker(broker, tmp_path, bundles):  # noqa: F811
    collector = mes(broker, tmp_path)
    write_frames(tmp_path / "frames", [clean_frame(i) for i in range(4)])
    settings = settings_for(
        broker,
        tmp_path,
        bundles,
        f"folder:{tmp_path / 'frames'}",
        pipeline={"watchdog_timeout_s": 0.5, "restart_window_s": 60, "max_restarts": 2, "warmup": False},
    )
    made: list[SlowBackend] = []

    def first_hangs(task, bundle, config):
        hang = 2 if task == "classifier" and not made else None  # the first worker hangs on its 2nd frame
        backend = SlowBackend(create_backend("onnxruntime", bundle, config), 0.0, hang_on_call=hang, hang_s=3.0)
        if task == "classifier":
            made.append(backend)
        return backend

    station, code = run_station(settings, backend_factory=first_hangs)
    assert code == EXIT_FRAMES_FAILED  # --once: the stuck worker's frame was not inspected
    assert station.stats.worker_restarts == 1 and len(made) == 2
    assert station.stats.frames_done == 3 and station.stats.frames_dropped == 1  # the stuck worker's frame
    assert collector.wait_for(lambda m: any(x.kind == "event" for x in m) and len(results(m)) >= 4, 5)
    kinds = [m.message.kind.value for m in collector.messages("event")]
    collector.stop()
    assert "worker-restarted" in kinds
    seqs = [r.seq for r in results(collector.messages("result"))]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    verdicts = [r.verdict for r in results(collector.messages("result"))]
    assert verdicts.count(Verdict.ERROR) == 1 and len(verdicts) == 4  # every frame got a result


def test_a_worker_stuck_past_the_restart_budget_exits_1(broker, tmp_path, bundles):  # noqa: F811
    write_frames(tmp_path / "frames", [clean_frame(i) for i in range(3)])
    settings = settings_for(
        broker,
        tmp_path,
        bundles,
        f"folder:{tmp_path / 'frames'}",
        pipeline={"watchdog_timeout_s": 0.3, "max_restarts": 0, "warmup": False, "drain_timeout_s": 2},
    )

    def hangs(task, bundle, config):
        return SlowBackend(create_backend("onnxruntime", bundle, config), 0.0, hang_on_call=1, hang_s=2.0)

    _, code = run_station(settings, backend_factory=hangs)
    assert code == EXIT_FAILED


def pump_edge(*args: str, env: dict | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "edge.cli", *args]
    return subprocess.Popen(
        command, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )


def cli_args(tmp_path: Path, bundles, broker_port: int, source: str) -> list[str]:
    classifier, segmenter = bundles
    return [
        "run",
        "--source",
        source,
        "--classifier",
        str(classifier),
        "--segmenter",
        str(segmenter),
        "--broker",
        f"127.0.0.1:{broker_port}",
        "--line",
        LINE,
        "--station",
        STATION,
        "--data-dir",
        str(tmp_path / "data"),
        "--backend",
        "onnxruntime",
    ]


GEOMETRY_ENV = {
    "PUMP_GEOMETRY__CROP_PX": "0",
    "PUMP_GEOMETRY__TILE_PX": "128",
    "PUMP_GEOMETRY__PATCH_PX": "64",
    "PUMP_MQTT__RECONNECT_MIN_S": "0.1",
    "PUMP_MQTT__RECONNECT_MAX_S": "0.5",
}


def test_sigterm_drains_publishes_stopped_and_exits_0(broker, tmp_path, bundles):  # noqa: F811
    collector = mes(broker, tmp_path)
    folder = tmp_path / "frames"
    write_frames(folder, [clean_frame(0), defect_frame(1)])
    process = pump_edge(
        *cli_args(tmp_path, bundles, broker.port, f"folder:{folder}"),
        env={**GEOMETRY_ENV, "PUMP_SOURCE__WATCH": "true", "PUMP_PIPELINE__BACKPRESSURE": "block"},
    )
    try:
        assert collector.wait_for(lambda m: len(results(m)) >= 2, 20), process.stderr.read() if process.poll() else ""
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert collector.wait_for(has_state(StationState.STOPPED), 5)
    collector.stop()


def test_a_bundle_with_a_bad_checksum_refuses_to_start(broker, tmp_path, bundles):  # noqa: F811
    classifier, _ = bundles
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("bundle.json", "model.onnx"):
        (broken / name).write_bytes((classifier / name).read_bytes())
    with open(broken / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    process = pump_edge(
        "run",
        "--classifier",
        str(broken),
        "--source",
        f"folder:{tmp_path}",
        "--once",
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--data-dir",
        str(tmp_path / "data"),
        env=GEOMETRY_ENV,
    )
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "sha256" in stderr and "does not match" in stderr and "Traceback" not in stderr


def outbox_results(path: Path) -> int:
    """Results waiting in a station's outbox (alerts and defect maps are rows of their own)."""
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'result'").fetchone()[0]
    except sqlite3.OperationalError:  # created but the table not yet
        return 0


def test_broker_down_mid_run_then_back_loses_nothing_and_keeps_order(broker, tmp_path, bundles):  # noqa: F811
    collector = mes(broker, tmp_path)
    frames = [defect_frame(i) if i % 4 == 1 else clean_frame(i) for i in range(16)]
    write_frames(tmp_path / "frames", frames)
    settings = settings_for(
        broker, tmp_path, bundles, f"folder:{tmp_path / 'frames'}", pipeline={"drain_timeout_s": 20}
    )

    def paced(task, bundle, config):  # ~0.1 s per frame, so the outage falls mid-run
        return SlowBackend(create_backend("onnxruntime", bundle, config), 0.1 if task == "classifier" else 0.0)

    # the broker is restarted from this (long-lived) thread: mosquitto children die with the
    # thread that started them (PR_SET_PDEATHSIG), so a short-lived helper thread would kill it
    station = Station(settings, once=True, backend_factory=paced)
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(station.run()))
    runner.start()
    time.sleep(0.5)
    broker.stop()
    time.sleep(2.0)
    broker.start()
    runner.join(60)
    code = codes[0]
    assert code == EXIT_OK, broker.log_tail(40)
    assert collector.wait_for(lambda m: len(first_arrivals(collector)) >= 16, 10)
    collector.stop()
    assert first_arrivals(collector) == list(range(1, 17))


def test_killed_while_the_broker_is_down_the_backlog_goes_out_after_restart(tmp_path, bundles):
    port = free_port()
    folder = tmp_path / "frames"
    write_frames(folder, [clean_frame(0), defect_frame(1), clean_frame(2)])
    outbox = tmp_path / "data" / "mqtt" / "outbox.sqlite3"
    # no broker at all: the station inspects, queues in the outbox, and is killed before any delivery
    process = pump_edge(
        *cli_args(tmp_path, bundles, port, f"folder:{folder}"),
        env={**GEOMETRY_ENV, "PUMP_SOURCE__WATCH": "true", "PUMP_PIPELINE__BACKPRESSURE": "block"},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if outbox.exists() and outbox_results(outbox) >= 3:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"outbox never filled: {process.stderr.read() if process.poll() else ''}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    with MosquittoBroker(port=port, persistence=True, workdir=tmp_path / "broker") as restarted:
        collector = mes(restarted, tmp_path)
        empty = tmp_path / "empty"
        empty.mkdir()
        again = pump_edge(*cli_args(tmp_path, bundles, port, f"folder:{empty}"), "--once", env=GEOMETRY_ENV)
        _, stderr = again.communicate(timeout=60)
        assert again.returncode == 0, stderr
        assert collector.wait_for(lambda m: len(first_arrivals(collector)) >= 3, 10)
        collector.stop()
        assert first_arrivals(collector) == [1, 2, 3]
        assert len(collector.messages("alert")) == 1


def test_a_missing_source_folder_is_a_configuration_error(broker, tmp_path, bundles):  # noqa: F811
    settings = settings_for(broker, tmp_path, bundles, f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match="folder not found"):
        Station(settings, once=True).run()
