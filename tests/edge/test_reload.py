"""The model reloader without a broker or a station: validation, the offered generation, thresholds bounds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.config import EdgeSettings
from edge.postprocess import Thresholds
from edge.runtime.reload import BundleWatcher, ModelReloader
from shared.bundle import MANIFEST_NAME, load_bundle
from shared.config import GeometryConfig
from shared.messages import ReloadCommand, ThresholdsCommand
from tests.edge.fixtures import make_threshold_bundles

GEOMETRY = GeometryConfig(crop_px=0, tile_px=128, patch_px=64)


class FakeInspector:
    def __init__(self, bundles, thresholds) -> None:  # noqa: ANN001
        self.bundles, self.thresholds, self.closed = bundles, thresholds, False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def setup(tmp_path: Path):  # noqa: ANN201
    classifier, segmenter = make_threshold_bundles(tmp_path / "bundles", GEOMETRY)
    watch = tmp_path / "watch"
    watch.mkdir()
    settings = EdgeSettings(
        geometry=GEOMETRY, bundles={"classifier": classifier, "segmenter": segmenter, "watch_dir": watch}
    )
    bundles = {"classifier": load_bundle(classifier, GEOMETRY), "segmenter": load_bundle(segmenter, GEOMETRY)}
    thresholds = Thresholds.from_bundles(bundles["classifier"].manifest, bundles["segmenter"].manifest)
    rejected: list[str] = []
    reloader = ModelReloader(settings, GEOMETRY, bundles, thresholds, FakeInspector, rejected.append)
    return reloader, classifier, watch, rejected


def copy_as(bundle: Path, target: Path, version: str) -> Path:
    shutil.copytree(bundle, target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    (target / MANIFEST_NAME).write_text(json.dumps({**manifest, "version": version}))
    return target


def test_a_version_in_the_watch_dir_is_found_prepared_and_offered_once(setup):
    reloader, classifier, watch, rejected = setup
    copy_as(classifier, watch / "cls-next", "0.2.0")
    result = reloader.reload_command(ReloadCommand(command_id="r1", bundle="0.2.0"))
    assert result.accepted and result.models["classifier"].startswith("threshold-classifier@0.2.0+"), result.reason
    generation = reloader.take()
    assert (
        isinstance(generation.inspector, FakeInspector) and generation.bundles["classifier"].manifest.version == "0.2.0"
    )
    assert reloader.take() is None and not rejected
    assert not reloader.reload_command(ReloadCommand(command_id="r2", bundle="9.9.9")).accepted
    assert "not found" in rejected[-1]


def test_a_version_two_bundles_share_is_refused_naming_them_and_a_folder_name_picks_one(setup):
    reloader, classifier, watch, rejected = setup
    segmenter = Path(str(reloader.settings.bundles.segmenter))
    copy_as(classifier, watch / "classifier-0.2.0", "0.2.0")
    copy_as(segmenter, watch / "segmenter-0.2.0", "0.2.0")
    result = reloader.reload_command(ReloadCommand(command_id="r1", bundle="0.2.0"))
    assert not result.accepted and "ambiguous" in result.reason
    assert "classifier-0.2.0" in rejected[-1] and "segmenter-0.2.0" in rejected[-1] and reloader.take() is None
    named = reloader.reload_command(ReloadCommand(command_id="r2", bundle="segmenter-0.2.0"))
    assert named.accepted and reloader.take().bundles["segmenter"].manifest.version == "0.2.0", named.reason


def test_a_thresholds_change_after_an_untaken_reload_keeps_its_backends_and_both_changes(setup):
    reloader, classifier, watch, _ = setup
    assert reloader.reload(copy_as(classifier, watch / "cls-next", "0.2.0")).accepted
    assert reloader.thresholds_command(ThresholdsCommand(command_id="t1", decision=0.8)).accepted
    generation = reloader.take()
    assert generation.inspector is not None and generation.bundles["classifier"].manifest.version == "0.2.0"
    assert generation.thresholds.decision == 0.8 and "0.2.0" in generation.reason and "0.8" in generation.reason


def test_a_second_reload_before_the_first_is_taken_closes_the_first_ones_backends(setup):
    reloader, classifier, watch, _ = setup
    reloader.reload(copy_as(classifier, watch / "a", "0.2.0"))
    first = reloader._pending.inspector
    reloader.reload(copy_as(classifier, watch / "b", "0.3.0"))
    assert first.closed and reloader.take().bundles["classifier"].manifest.version == "0.3.0"


def test_bad_bundles_and_thresholds_are_rejected_with_the_reason(setup):
    reloader, classifier, watch, rejected = setup
    bad = copy_as(classifier, watch / "bad", "0.2.0")
    (bad / "model.onnx").write_bytes(b"not a model")
    assert "sha256" in reloader.reload(bad).reason.lower()
    other_geometry = make_threshold_bundles(watch / "geo", GeometryConfig(crop_px=0, tile_px=128, patch_px=32))[0]
    assert not reloader.reload(other_geometry).accepted
    for command in (
        ThresholdsCommand(command_id="t1", decision=0.0),
        ThresholdsCommand(command_id="t2", cascade=1.0),
        ThresholdsCommand(command_id="t3"),
    ):
        assert not reloader.thresholds_command(command).accepted
    assert reloader.take() is None and len(rejected) == 5


def test_the_watcher_ignores_what_was_there_and_names_starting_with_a_dot(setup, tmp_path):
    reloader, classifier, watch, _ = setup
    copy_as(classifier, watch / "old", "0.1.5")
    seen: list[Path] = []
    watcher = BundleWatcher(watch, 0.1, seen.append, stop=None)  # type: ignore[arg-type] - not started
    copy_as(classifier, watch / ".incoming", "0.2.0")
    assert watcher._entries() - watcher._seen == set()
    (watch / ".incoming").rename(watch / "new")
    assert watcher._entries() - watcher._seen == {"new"}


def test_a_folder_copied_in_place_is_retried_once_its_files_settle(setup):
    """``cp -r`` into watch_dir: the watcher may see the manifest before the model is complete."""
    reloader, classifier, watch, rejected = setup
    watcher = BundleWatcher(watch, 0.1, lambda path: reloader.reload(path).accepted, stop=None)  # type: ignore[arg-type]
    half = copy_as(classifier, watch / "classifier-0.2.0", "0.2.0")
    model = (half / "model.onnx").read_bytes()
    (half / "model.onnx").write_bytes(model[: len(model) // 2])
    watcher.poll()
    assert len(rejected) == 1 and reloader.take() is None
    watcher.poll()  # nothing changed: not tried again
    assert len(rejected) == 1
    (half / "model.onnx").write_bytes(model)  # the copy completes
    watcher.poll()  # changed, not yet settled
    assert len(rejected) == 1 and reloader.take() is None
    watcher.poll()
    generation = reloader.take()
    assert generation is not None and generation.bundles["classifier"].manifest.version == "0.2.0"
    watcher.poll()
    assert reloader.take() is None and len(rejected) == 1  # taken once, never again
