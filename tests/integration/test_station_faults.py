"""A station facing broken models and a broken frame source, against a real Mosquitto.

Issue 8: a model that outputs NaN must be refused at load (exit 2), a frame the models cannot
judge still gets a result (verdict ERROR, the reason, its seq), and a source thread that dies is
reopened (endless sources) or the station exits 1 — never ``online`` at 0 frames/s.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.backends import BackendError, NonFiniteOutputError, create_backend
from edge.backends.config import BackendConfig
from edge.publish.broker import find_mosquitto
from edge.runtime.station import EXIT_FAILED, EXIT_FRAMES_FAILED, EXIT_OK, Station
from edge.sources.folder import FolderSource
from shared.bundle import load_bundle
from shared.messages import EventMessage, StationState, Verdict
from tests.edge.fixtures import make_threshold_bundle
from tests.integration.test_mqtt import broker, has_state, mes, results, station_config  # noqa: F401
from tests.integration.test_station import (
    GEOMETRY,
    GEOMETRY_ENV,
    clean_frame,
    cli_args,
    defect_frame,
    pump_edge,
    run_station,
    settings_for,
    write_frames,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs the mosquitto broker binary (apt-get install mosquitto; scripts/bootstrap.sh does it as root)",
    ),
]
NAN_BRIGHTNESS = 51  # a frame of this grey (0.2) falls into the band where the broken classifier says NaN


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_threshold_bundle(tmp_path_factory.mktemp("seg") / "segmenter", "segmenter", GEOMETRY)


@pytest.fixture(scope="module")
def always_nan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nan")
    return make_threshold_bundle(root / "classifier", "classifier", GEOMETRY, nan_band=(0.5, 2.0))


@pytest.fixture(scope="module")
def sometimes_nan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("band")
    return make_threshold_bundle(root / "classifier", "classifier", GEOMETRY, nan_band=(0.2, 0.05))


def test_the_probe_refuses_a_model_that_always_outputs_nan(always_nan):
    backend = create_backend("onnxruntime", load_bundle(always_nan), BackendConfig(kind="onnxruntime"))
    try:
        with pytest.raises(BackendError, match=r"refused.*NaN"):
            backend.probe()
    finally:
        backend.close()


def test_the_probe_passes_a_model_that_is_finite_on_the_probe_but_not_on_every_frame(sometimes_nan):
    backend = create_backend("onnxruntime", load_bundle(sometimes_nan), BackendConfig(kind="onnxruntime"))
    try:
        backend.probe()
        grey = np.full((2, 1, 64, 64), NAN_BRIGHTNESS / 255, np.float32)
        with pytest.raises(NonFiniteOutputError, match="2 NaN/infinite"):
            backend.infer(grey)
    finally:
        backend.close()


def test_pump_edge_run_refuses_a_nan_bundle_with_exit_2(broker, tmp_path, always_nan, segmenter):  # noqa: F811
    folder = tmp_path / "frames"
    write_frames(folder, [clean_frame(0)])
    process = pump_edge(*cli_args(tmp_path, (always_nan, segmenter), broker.port, f"folder:{folder}"), "--once",
                        env=GEOMETRY_ENV)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    assert "threshold-classifier@0.1.0" in stderr and "NaN" in stderr


def test_a_frame_the_model_cannot_judge_gets_an_error_result_with_its_seq(
    broker, tmp_path, sometimes_nan, segmenter  # noqa: F811
):
    collector = mes(broker, tmp_path)
    folder = tmp_path / "frames"
    poison = np.full_like(clean_frame(0), NAN_BRIGHTNESS)
    write_frames(folder, [clean_frame(0), poison, defect_frame(2)])
    settings = settings_for(broker, tmp_path, (sometimes_nan, segmenter), f"folder:{folder}")
    station, code = run_station(settings)
    assert code == EXIT_FRAMES_FAILED
    assert collector.wait_for(lambda m: len(results(m)) >= 3 and has_state(StationState.STOPPED)(m), 10)
    got = results(collector.messages("result"))
    alerts = [m.message for m in collector.messages("alert")]
    events = [m.message for m in collector.messages("event") if isinstance(m.message, EventMessage)]
    collector.stop()
    assert [r.verdict for r in got] == [Verdict.OK, Verdict.ERROR, Verdict.NG]
    assert [r.seq for r in got] == [got[0].seq, got[0].seq + 1, got[0].seq + 2]  # no gap in the numbers
    error = got[1]
    assert error.frame_id.startswith("frame001") and "NaN" in error.error and error.defects == []
    assert {a.verdict for a in alerts} == {Verdict.ERROR, Verdict.NG}  # the uninspected part raises an alert
    assert any(e.kind.value == "frame-failed" and e.severity.value == "error" for e in events)
    assert station.stats.frames_failed == 1 and station.stats.frames_done == 2


class _BrokenFolder(FolderSource):
    """A folder source with a bug: it raises after its first frame (the first time it is opened)."""

    opened = 0

    def _items(self):
        type(self).opened += 1
        for index, item in enumerate(super()._items()):
            if index == 1 and type(self).opened == 1:
                raise RuntimeError("source bug")
            yield item


@pytest.fixture
def broken_source(monkeypatch: pytest.MonkeyPatch):
    _BrokenFolder.opened = 0
    monkeypatch.setattr(
        "edge.runtime.station.create_source", lambda config, *args, **kwargs: _BrokenFolder(config.target, config)
    )
    return _BrokenFolder


def test_a_finite_source_that_dies_makes_the_station_exit_1(broker, tmp_path, segmenter, broken_source):  # noqa: F811
    collector = mes(broker, tmp_path)
    folder = tmp_path / "frames"
    write_frames(folder, [clean_frame(i) for i in range(3)])
    classifier = make_threshold_bundle(tmp_path / "classifier", "classifier", GEOMETRY)
    settings = settings_for(broker, tmp_path, (classifier, segmenter), f"folder:{folder}")
    station, code = run_station(settings)
    assert code == EXIT_FAILED
    assert collector.wait_for(lambda m: any(x.kind == "event" for x in m), 5)
    events = [m.message for m in collector.messages("event") if isinstance(m.message, EventMessage)]
    collector.stop()
    assert any(e.kind.value == "source-failed" and "source bug" in e.reason for e in events)
    assert broken_source.opened == 1  # a finite source is not reopened (it would start over)


def test_an_endless_source_that_dies_is_reopened_and_the_station_keeps_inspecting(
    broker, tmp_path, segmenter, broken_source  # noqa: F811
):
    collector = mes(broker, tmp_path)
    folder = tmp_path / "frames"
    write_frames(folder, [clean_frame(0), clean_frame(1)])
    classifier = make_threshold_bundle(tmp_path / "classifier", "classifier", GEOMETRY)
    settings = settings_for(
        broker, tmp_path, (classifier, segmenter), f"folder:{folder}", source={"watch": True, "settle_s": 0.0}
    )
    station = Station(settings, once=False)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(station.run()))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while broken_source.opened < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        write_frames(folder, [defect_frame(5)], start=5)  # a new file after the restart is inspected
        assert collector.wait_for(lambda m: any(r.verdict == Verdict.NG for r in results(m)), 20)
    finally:
        station.request_stop()
        thread.join(30)
    events = [m.message for m in collector.messages("event") if isinstance(m.message, EventMessage)]
    collector.stop()
    assert codes == [EXIT_OK]
    assert station.stats.source_restarts == 1
    kinds = [e.kind.value for e in events]
    assert "source-failed" in kinds and "source-restarted" in kinds
