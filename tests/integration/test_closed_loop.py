"""One turn of the closed loop with the documented commands, tiny models, a real broker and a running station.

station on line frames -> ``pump-edge export-uncertain`` -> ``pump-train ingest`` -> ``pump-train label``
-> ``gan train --resume`` on the new patch set -> ``classifier train --init-from`` -> ``export --parent``
into the station's watched bundle folder -> the running station reloads it -> results carry 0.1.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app as edge_app
from edge.config import EdgeSettings
from edge.publish.broker import MosquittoBroker, find_mosquitto
from shared.bundle import load_bundle
from tests.integration.test_station import run_station
from training.cli import app as train_app
from training.closed_loop import planted_labels, reload_on_line
from training.config import TrainSettings
from training.data.dataset import load_dataset
from training.data.importers import get_importer, run_import
from training.data.patches import make_patches
from training.data.patchset import load_patchset
from training.pipeline import write_line_frames
from training.synth.writer import write_synth_set

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs the mosquitto broker binary (apt-get install mosquitto; scripts/bootstrap.sh does it as root)",
    ),
]

runner = CliRunner()
TINY_CLASSIFIER = ["--width", "0.125", "--internal-px", "32", "--pooling", "max"]
TINY_SCHEDULE = ["--iterations", "4", "--val-every", "2", "--batch-size", "8", "--precision", "fp32", "--quiet"]
TINY_GAN = """[gan]
grid_size = 2
tick_kimg = 0.008
snapshot_kimg = 0.008
threads = 1
[gan.stylegan2]
resolution = 16
z_dim = 16
w_dim = 16
channel_base = 256
channel_max = 32
batch_size = 4
r1_gamma = 1.0
"""


def invoke(app, args: list[str]) -> str:  # noqa: ANN001
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{args[:2]}: {result.output}\n{result.exception!r}"
    return result.output


def station_settings(broker: MosquittoBroker, root: Path, classifier: Path, source: dict, **extra) -> EdgeSettings:
    return EdgeSettings(
        line_id="loop",
        station_id="st1",
        data_dir=root / "edge-data",
        bundles={"classifier": classifier, **extra.pop("bundles", {})},
        source=source,
        backend={"kind": "onnxruntime", "ort_threads": 1},
        store={"band_low": 0.0, "band_high": 1.0},  # an untrained model: log every patch (per-frame cap)
        mqtt={"host": broker.host, "port": broker.port, "outbox_path": root / "edge-data" / "outbox.sqlite3"},
        **extra,
    )


def test_one_turn_of_the_loop_ends_with_the_retrained_model_judging_the_running_line(tmp_path: Path):
    settings = TrainSettings()
    synth = settings.synth.model_copy(update={"width_px": 640, "height_px": 480, "defects_per_frame": 4.0})
    write_synth_set(tmp_path / "synth", synth, 10, 0, progress=False)
    run_import(get_importer("synth"), tmp_path / "synth", tmp_path / "dataset", settings.import_, progress=False)
    make_patches(
        load_dataset(tmp_path / "dataset"),
        tmp_path / "patches",
        settings.geometry,
        settings.patches,
        seed=0,
        progress=False,
    )
    patches, line = tmp_path / "patches", write_line_frames(tmp_path / "line", synth, 0)
    invoke(train_app, ["classifier", "train", patches, tmp_path / "clf", *TINY_CLASSIFIER, *TINY_SCHEDULE])
    invoke(train_app, ["export", tmp_path / "clf", tmp_path / "bundles" / "classifier", "--patches", patches])
    gan_toml = tmp_path / "gan.toml"
    gan_toml.write_text(TINY_GAN)
    invoke(train_app, ["gan", "train", patches, tmp_path / "gan", "-c", gan_toml, "--kimg", "0.008", "-q"])

    with MosquittoBroker() as broker:
        # 1. the station inspects line frames and logs uncertain patches
        source = {"spec": f"folder:{line / 'images'}"}
        first = station_settings(broker, tmp_path, tmp_path / "bundles" / "classifier", source)
        _, code = run_station(first)
        assert code == 0
        # 2. export -> ingest -> label (the planted masks stand in for the person)
        export = tmp_path / "uncertain.tar.gz"
        assert "exported" in invoke(edge_app, ["export-uncertain", export, "--data-dir", tmp_path / "edge-data"])
        invoke(train_app, ["ingest", export, patches, "--out", tmp_path / "patches-2"])
        labels = planted_labels(tmp_path / "patches-2", line, tmp_path / "labels")
        labelled = invoke(train_app, ["label", tmp_path / "patches-2", "--csv", labels])
        records = load_patchset(tmp_path / "patches-2").records
        line_rows = [r for r in records if r.origin == "line"]
        assert line_rows and all(r.split == "train" for r in line_rows), labelled
        defects = sum(r.has_defect for r in line_rows)
        assert 0 < defects < len(line_rows), "the planted masks label some line patches defect, others good"
        # 3. the GAN continues with the new patch set; the classifier is fine-tuned from the deployed run
        gan_args = ["gan", "train", tmp_path / "patches-2", tmp_path / "gan", "-c", gan_toml]
        invoke(train_app, [*gan_args, "--kimg", "0.016", "--resume", "-q"])
        seen = json.loads((tmp_path / "gan" / "data.json").read_text())
        assert seen["counts"]["line_labelled_defective"] == defects, seen["counts"]
        clf2 = tmp_path / "clf-2"
        invoke(train_app, ["classifier", "train", tmp_path / "patches-2", clf2, "--init-from", tmp_path / "clf",
                           *TINY_SCHEDULE])  # fmt: skip
        config = json.loads((clf2 / "config.json").read_text())["config"]
        assert config["init_from"]["run"] == str((tmp_path / "clf").resolve())
        assert config["drawn"] is not None
        # 4. export v0.1.1 into the running station's watched folder; it reloads between two frames
        watch = tmp_path / "watch"
        watch.mkdir()
        feed = tmp_path / "feed"
        running = station_settings(
            broker,
            tmp_path / "second",
            tmp_path / "bundles" / "classifier",
            {"spec": f"folder:{feed}", "watch": True, "poll_s": 0.1, "settle_s": 0.0},
            bundles={"watch_dir": watch, "watch_interval_s": 0.2},
        )
        frames = sorted((line / "images").glob("*.png"))[:8]

        def export_new() -> Path:
            args = ["export", clf2, watch / "classifier-0.1.1", "--patches", tmp_path / "patches-2"]
            invoke(train_app, [*args, "--parent", tmp_path / "bundles" / "classifier"])
            return watch / "classifier-0.1.1"

        seen_on_line = reload_on_line(running, frames, new_bundle=export_new, before=3)
    manifest = load_bundle(watch / "classifier-0.1.1").manifest
    assert manifest.version == "0.1.1" and manifest.parent is not None and manifest.parent.version == "0.1.0"
    assert seen_on_line.exit_code == 0 and seen_on_line.reloaded_event is not None
    versions = [v.rsplit("@", 1)[1] for v in seen_on_line.versions]
    assert len(versions) == len(frames), "every frame fed has a result"
    assert versions[:3] == ["0.1.0"] * 3 and versions[-1] == "0.1.1" and seen_on_line.switches == 1, versions
