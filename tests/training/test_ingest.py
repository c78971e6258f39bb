"""`pump-train ingest`: edge store -> export -> unlabelled origin=line rows of a patch set."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge.store import StoreConfig, UncertainStore
from shared.config import GeometryConfig
from shared.masks import MASK_IGNORE
from shared.tiling import TileBox
from tests.conftest import structured_image
from training.cli import app
from training.data.arrays import load_arrays
from training.data.dataset import Dataset
from training.data.ingest import LINE_LABEL, LINE_META_NAME, LINE_SPLIT, IngestError, ingest_export, line_records
from training.data.library import split_records
from training.data.patches import PatchMode, PatchOptions, make_patches
from training.data.patchset import PatchSet, load_patchset
from training.data.table import ManifestError

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
GEOMETRY_128 = GeometryConfig(crop_px=256, tile_px=256, patch_px=128)


@pytest.fixture
def patchset_128(small_dataset: Dataset, tmp_path: Path) -> PatchSet:
    """One 256 px tile per image -> 128 px patches, like the thesis geometry."""
    make_patches(
        small_dataset, tmp_path / "p128", GEOMETRY_128, PatchOptions(mode=PatchMode.GRID), seed=0, progress=False
    )
    return load_patchset(tmp_path / "p128")


def _crop(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return structured_image(256, 256, 0.9 + 0.01 * seed, rng)


def _store_with_frames(tmp_path: Path, frames: int, start: int = 0) -> UncertainStore:
    store = UncertainStore.open(StoreConfig(fsync=False), tmp_path / "edge-data")
    for i in range(start, start + frames):
        crops = [_crop(10 * i), _crop(10 * i + 1), _crop(10 * i + 2)]
        boxes = [TileBox(640 + 238 * k, 152, 256) for k in range(3)]
        store.log(
            frame_id=f"frame-{i}",
            captured_at=T0 + timedelta(seconds=i),
            station="st1",
            line="lineA",
            crops=crops,
            boxes=boxes,
            classifier_scores=[0.45, 0.9, 0.6],
            segmenter_max_scores=[0.5, 0.99, 0.3],
            segmenter_defect_pixels=[0, 300, 0],
            model_versions={"classifier": "cls@1.0.0"},
        )  # tiles 0 and 2 are uncertain
    return store


def test_round_trip_store_export_ingest(tmp_path, patchset_128):
    store = _store_with_frames(tmp_path, 2)
    export = tmp_path / "u.tar.gz"
    assert store.export(export) == 4
    before = len(patchset_128.records)

    report = ingest_export(export, patchset_128.root)
    assert report["added"] == 4 and report["duplicates"] == 0 and report["written"]
    patchset = load_patchset(patchset_128.root)  # existing readers still read it
    line = line_records(patchset)
    assert len(patchset.records) == before + 4 and len(line) == 4
    assert {r.label for r in line} == {LINE_LABEL} and {r.split for r in line} == {LINE_SPLIT}
    assert not any(r.has_defect for r in line) and {r.patch_px for r in line} == {128}
    assert {r.crop_px for r in line} == {256} and {r.group for r in line} == {"line:st1:frame-0", "line:st1:frame-1"}
    by_frame_tile = {(r.source_image, r.x): r for r in line}
    record = by_frame_tile[("line:st1:frame-0", 640)]
    image, mask = patchset.read_image(record), patchset.read_mask(record)
    assert image.shape == (128, 128) and np.all(mask == MASK_IGNORE)
    assert np.array_equal(image, cv2.resize(_crop(0), (128, 128), interpolation=cv2.INTER_AREA))

    with open(patchset.root / LINE_META_NAME, newline="") as handle:
        meta_rows = list(csv.DictReader(handle))
    assert {row["sha256"] for row in meta_rows} == {r.sha256 for r in store.patches()}
    assert {row["reason"] for row in meta_rows} == {"band", "band+disagreement"}
    meta = json.loads((patchset.root / "patchset.json").read_text())
    assert meta["line"]["patches"] == 4 and meta["line"]["ingests"][0]["added"] == 4
    assert meta["summary"] == patchset_128.meta["summary"]  # the real patches' summary is untouched

    # line rows never enter an experiment's train/val/test, however validation is drawn
    for val_seed in (None, 3):
        split = split_records(patchset, val_seed)
        assert not [r for r in split.train + split.val + split.test if r.origin == "line"]
    arrays = load_arrays(patchset, line)
    assert arrays.images.shape == (4, 128, 128)


def test_duplicates_are_skipped_and_reported_and_out_writes_a_new_patch_set(tmp_path, patchset_128):
    store = _store_with_frames(tmp_path, 1)
    first = tmp_path / "first.tar.gz"
    store.export(first)
    ingest_export(first, patchset_128.root)
    csv_before = (patchset_128.root / "patches.csv").read_text()

    again = ingest_export(first, patchset_128.root)
    assert again["added"] == 0 and again["duplicates"] == 2 and not again["written"]
    ingested = {r.id for r in line_records(load_patchset(patchset_128.root))}
    assert {d["as"] for d in again["duplicate_patches"]} == ingested
    assert (patchset_128.root / "patches.csv").read_text() == csv_before

    store.close()
    store = _store_with_frames(tmp_path, 1, start=1)
    both = tmp_path / "both.tar.gz"
    assert store.export(both) == 4  # the old frame again plus a new one
    out = tmp_path / "with-line"
    report = ingest_export(both, patchset_128.root, out=out)
    assert report["added"] == 2 and report["duplicates"] == 2
    assert len(line_records(load_patchset(out))) == 4
    assert (patchset_128.root / "patches.csv").read_text() == csv_before  # the source set is untouched
    assert len(json.loads((out / "patchset.json").read_text())["line"]["ingests"]) == 2
    with pytest.raises(FileExistsError, match="--overwrite"):
        ingest_export(both, patchset_128.root, out=out)


def _rewrite_tar(source: Path, target: Path, change) -> None:
    with tarfile.open(source, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    files = change(files)
    with tarfile.open(target, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bad_exports_fail_clearly_and_write_nothing(tmp_path, patchset_128):
    store = _store_with_frames(tmp_path, 1)
    good = tmp_path / "good.tar.gz"
    store.export(good)
    csv_before = (patchset_128.root / "patches.csv").read_text()
    listing_before = sorted(p.name for p in tmp_path.iterdir())

    not_tar = tmp_path / "not.tar.gz"
    not_tar.write_bytes(b"hello")
    with pytest.raises(IngestError, match=r"not\.tar\.gz: not a readable tar\.gz"):
        ingest_export(not_tar, patchset_128.root)

    no_manifest = tmp_path / "nomanifest.tar.gz"
    _rewrite_tar(good, no_manifest, lambda f: {k: v for k, v in f.items() if not k.startswith("manifest")})
    with pytest.raises(IngestError, match=r"nomanifest\.tar\.gz: no manifest\.json"):
        ingest_export(no_manifest, patchset_128.root)

    def corrupt(files):
        name = next(k for k in files if k.startswith("patches/"))
        files[name] = files[name][:-20] + bytes(20)
        return files

    bad_sum = tmp_path / "badsum.tar.gz"
    _rewrite_tar(good, bad_sum, corrupt)
    with pytest.raises(IngestError, match=r"badsum\.tar\.gz: patches/\d+\.png: sha256 .* does not match"):
        ingest_export(bad_sum, patchset_128.root)

    escape = tmp_path / "escape.tar.gz"
    _rewrite_tar(good, escape, lambda f: {**f, "../evil.png": b"x"})
    with pytest.raises(IngestError, match="unexpected member '../evil.png'"):
        ingest_export(escape, patchset_128.root)

    with pytest.raises(ManifestError, match="not a patch set"):
        ingest_export(good, tmp_path / "edge-data")
    with pytest.raises(FileNotFoundError, match="export not found"):
        ingest_export(tmp_path / "missing.tar.gz", patchset_128.root)

    assert (patchset_128.root / "patches.csv").read_text() == csv_before
    created = {"not.tar.gz", "nomanifest.tar.gz", "badsum.tar.gz", "escape.tar.gz"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*listing_before, *created})  # no temp folders
    assert not (tmp_path.parent / "evil.png").exists()


def test_cli_ingest_dry_run_then_for_real(tmp_path, patchset_128):
    store = _store_with_frames(tmp_path, 1)
    export = tmp_path / "u.tar.gz"
    store.export(export)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(export), str(patchset_128.root), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would add 2 line patches" in result.output and not line_records(load_patchset(patchset_128.root))
    result = runner.invoke(app, ["ingest", str(export), str(patchset_128.root)])
    assert result.exit_code == 0, result.output
    assert len(line_records(load_patchset(patchset_128.root))) == 2


def _tar_with_huge_header(source: Path, target: Path, name: str, declared_bytes: int) -> None:
    """``source``'s members, then a header declaring ``declared_bytes`` for ``name`` and hardly any data."""
    import gzip

    with tarfile.open(source, "r:gz") as tar:
        files = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as out:
        for member_name, data in files:
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    body = raw.getvalue()[: -2 * tarfile.BLOCKSIZE * 5]  # drop the end-of-archive blocks
    body = body.rstrip(b"\0")
    body += b"\0" * (-len(body) % tarfile.BLOCKSIZE)
    huge = tarfile.TarInfo(name)
    huge.size = declared_bytes
    target.write_bytes(gzip.compress(body + huge.tobuf() + b"\0" * 4096))


def test_ingest_refuses_oversized_and_unlisted_members_on_their_headers(tmp_path, patchset_128):
    store = _store_with_frames(tmp_path, 1)
    good = tmp_path / "good.tar.gz"
    store.export(good)
    before = (patchset_128.root / "patches.csv").read_text()

    bomb = tmp_path / "bomb.tar.gz"  # 3 GiB declared, a few kB on disk: refused before any byte is unpacked
    _tar_with_huge_header(good, bomb, "patches/99999999.png", 3 * 2**30)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(IngestError, match=r"patches/99999999\.png' is 3,221,225,472 bytes, over --max-member-mb"):
        ingest_export(bomb, patchset_128.root)

    unlisted = tmp_path / "unlisted.tar.gz"
    _rewrite_tar(good, unlisted, lambda f: {**f, "patches/77777777.png": b"\x89PNG" + bytes(100)})
    with pytest.raises(IngestError, match=r"'patches/77777777\.png' is not listed in manifest\.json"):
        ingest_export(unlisted, patchset_128.root)

    def grow(files):
        name = next(k for k in files if k.startswith("patches/"))
        files[name] = files[name] + b"extra"
        return files

    resized = tmp_path / "resized.tar.gz"
    _rewrite_tar(good, resized, grow)
    with pytest.raises(IngestError, match=r"bytes but manifest\.json lists"):
        ingest_export(resized, patchset_128.root)

    from training.data.ingest import IngestLimits

    with pytest.raises(IngestError, match="over --max-member-mb"):
        ingest_export(good, patchset_128.root, limits=IngestLimits(member_bytes=100))
    with pytest.raises(IngestError, match="more than --max-total-mb"):
        ingest_export(good, patchset_128.root, limits=IngestLimits(total_bytes=2000))
    assert (patchset_128.root / "patches.csv").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ingest-")]  # no temp folders left

    result = CliRunner().invoke(app, ["ingest", str(good), str(patchset_128.root), "--max-member-mb", "0.001"])
    assert result.exit_code != 0 and "over --max-member-mb" in str(result.exception or result.output)
