"""Inference backends: one conformance battery every backend passes, plus selection and the engine cache.

The models are the hand-built threshold bundles of :mod:`tests.edge.fixtures`, so the numpy
reference is exact. TensorRT runs only where a GPU and TensorRT are present; elsewhere its
cases skip with that reason (the engine-cache logic is pure and tested everywhere).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge.backends import BackendConfig, BackendError, BackendKind, create_backend, resolve_kind
from edge.backends.device import tensorrt_importable, tensorrt_usable
from edge.backends.ort import CPU, CUDA, select_providers
from edge.backends.tensorrt.cache import EngineKey, cached_engine_problem, engine_paths, store_engine
from shared.bundle import LoadedBundle, load_bundle
from shared.config import GeometryConfig
from tests.edge.fixtures import make_threshold_bundles, reference_logits

onnx = pytest.importorskip("onnx", reason="building the test models needs onnx (the train extra)")

GEOMETRY = GeometryConfig()
TRT_REASON = "needs an NVIDIA GPU with TensorRT"


def _ort_cuda_usable() -> bool:
    import onnxruntime

    from edge.backends.device import cuda_device_count

    return CUDA in onnxruntime.get_available_providers() and cuda_device_count() > 0


BACKENDS = [
    pytest.param(("onnxruntime", {"ort_provider": "cpu"}), id="onnxruntime-cpu"),
    pytest.param(
        ("onnxruntime", {"ort_provider": "cuda"}),
        id="onnxruntime-cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _ort_cuda_usable(), reason="needs onnxruntime-gpu and a GPU")],
    ),
    pytest.param(
        ("tensorrt", {"precision": "fp32"}),
        id="tensorrt-fp32",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not tensorrt_usable(), reason=TRT_REASON)],
    ),
]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedBundle]:
    classifier, segmenter = make_threshold_bundles(tmp_path_factory.mktemp("bundles"), GEOMETRY)
    return {
        "classifier": load_bundle(classifier, expected_geometry=GEOMETRY),
        "segmenter": load_bundle(segmenter, expected_geometry=GEOMETRY),
    }


def patches(count: int, seed: int = 0) -> np.ndarray:
    """Gray patches in [0, 1] as uint8/255, every third with a bright spot above the threshold."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 180, (count, 1, 128, 128)).astype(np.uint8)
    pixels[::3, 0, 40:44, 70:75] = 240
    return pixels.astype(np.float32) / np.float32(255.0)


@pytest.fixture(params=BACKENDS)
def open_backend(request: pytest.FixtureRequest, bundles: dict[str, LoadedBundle], tmp_path_factory):
    name, options = request.param
    cache = tmp_path_factory.mktemp("engines")
    opened = []

    def factory(task: str, **overrides):
        config = BackendConfig(kind=name, engine_cache_dir=cache, **{**options, **overrides})
        backend = create_backend(name, bundles[task], config)
        opened.append(backend)
        return backend

    yield factory
    for backend in opened:
        backend.close()


class TestBackendConformance:
    """What the pipeline relies on from any backend."""

    @pytest.mark.parametrize("task", ["classifier", "segmenter"])
    def test_outputs_match_the_numpy_reference_with_the_declared_shape(self, open_backend, task: str):
        backend = open_backend(task)
        batch = patches(10)
        out = backend.infer(batch)
        assert out.dtype == np.float32
        assert out.shape == ((10, 1) if task == "classifier" else (10, 1, 128, 128))
        np.testing.assert_allclose(out, reference_logits(task, batch), rtol=1e-5, atol=1e-4)

    @pytest.mark.parametrize("task", ["classifier", "segmenter"])
    def test_batches_larger_than_max_batch_are_split_without_changing_results(self, open_backend, task: str):
        whole = open_backend(task)
        split = open_backend(task, max_batch=4, opt_batch=4)
        assert split.max_batch == 4
        batch = patches(11, seed=1)
        np.testing.assert_array_equal(split.infer(batch), whole.infer(batch))

    def test_batch_of_one_and_an_empty_batch(self, open_backend):
        backend = open_backend("classifier")
        one = patches(1)
        np.testing.assert_allclose(backend.infer(one), reference_logits("classifier", one), atol=1e-4)
        empty = backend.infer(np.zeros((0, 1, 128, 128), np.float32))
        assert empty.shape == (0, 1) and empty.dtype == np.float32

    def test_repeated_calls_are_deterministic_and_do_not_alias_buffers(self, open_backend):
        backend = open_backend("segmenter")
        first_batch, second_batch = patches(5, seed=2), patches(5, seed=3)
        first = backend.infer(first_batch)
        second = backend.infer(second_batch)
        np.testing.assert_array_equal(backend.infer(first_batch), first)
        assert not np.array_equal(first, second), "an earlier result must not change when the backend runs again"

    def test_a_batch_of_the_wrong_shape_or_type_is_refused(self, open_backend):
        backend = open_backend("classifier")
        with pytest.raises(BackendError, match="expected a batch"):
            backend.infer(np.zeros((2, 1, 64, 64), np.float32))
        with pytest.raises(BackendError, match="float32"):
            backend.infer(np.zeros((2, 1, 128, 128), np.uint8))

    def test_describe_warmup_and_close(self, open_backend):
        backend = open_backend("classifier")
        info = backend.describe()
        assert info["backend"] == backend.name and info["model"] == "threshold-classifier" and "device" in info
        backend.warmup()
        backend.close()
        backend.close()
        with pytest.raises(BackendError, match="after close"):
            backend.infer(patches(1))


def test_onnxruntime_providers_follow_preference_and_hardware():
    assert select_providers("cpu", [CUDA, CPU], gpus=1) == [CPU]
    assert select_providers("auto", [CPU], gpus=1) == [CPU]
    assert select_providers("auto", [CUDA, CPU], gpus=0) == [CPU]
    assert select_providers("auto", [CUDA, CPU], gpus=1)[0][0] == CUDA
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        select_providers("cuda", [CPU], gpus=1)


def test_auto_prefers_tensorrt_only_where_it_can_run():
    assert resolve_kind("auto", tensorrt_ok=True) == "tensorrt"
    assert resolve_kind("auto", tensorrt_ok=False) == "onnxruntime"
    assert resolve_kind(BackendKind.ONNXRUNTIME, tensorrt_ok=True) == "onnxruntime"


@pytest.mark.skipif(tensorrt_usable(), reason="checks the fallback on machines without TensorRT")
def test_auto_falls_back_to_onnxruntime_when_tensorrt_cannot_start(bundles, tmp_path, monkeypatch, caplog):
    import edge.backends.registry as registry

    monkeypatch.setattr(registry, "tensorrt_usable", lambda: True)  # as if a GPU were there: TensorRT fails to start
    with caplog.at_level(logging.WARNING), create_backend("auto", bundles["classifier"], BackendConfig()) as backend:
        assert backend.name == "onnxruntime"
    assert "TensorRT unavailable" in caplog.text
    with pytest.raises((ImportError, BackendError)):
        create_backend("auto", bundles["classifier"], BackendConfig(fallback_to_ort=False))


@pytest.mark.skipif(tensorrt_importable(), reason="checks the message on machines without TensorRT")
def test_asking_for_tensorrt_without_it_names_the_missing_package(bundles):
    with pytest.raises(ImportError, match="tensorrt"):
        create_backend("tensorrt", bundles["classifier"], BackendConfig())


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"opt_batch": 256, "max_batch": 128}, "opt_batch"),
        ({"kind": "tensorrt", "precision": "int8"}, "calibration_dir"),
        ({"kind": "x"}, "kind"),
    ],
)
def test_invalid_backend_settings_are_refused(fields: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        BackendConfig(**fields)


def _key(**changes) -> EngineKey:
    fields = dict(
        bundle_sha256="ab" * 32,
        model_name="Pump Classifier",
        input_shape=(1, 128, 128),
        gpu_name="Orin (nvgpu)",
        compute_capability="8.7",
        tensorrt_version="10.3.0",
        precision="fp16",
        min_batch=1,
        opt_batch=64,
        max_batch=128,
        workspace_mb=1024,
    )
    fields.update(changes)
    return EngineKey(**fields)


def test_engine_file_names_carry_bundle_gpu_tensorrt_and_precision():
    stem = _key().stem
    assert stem.startswith("pump-classifier-abababababab-orin-nvgpu-sm87-trt10.3.0-fp16-b64-128-")
    assert _key(workspace_mb=512).stem != stem, "every key field changes the name (via the digest)"


def test_a_cached_engine_is_used_only_when_its_metadata_matches(tmp_path: Path):
    key = _key()
    assert cached_engine_problem(tmp_path, key) == "no cached engine"
    store_engine(tmp_path, key, b"engine bytes", {"build_s": 1.0})
    assert cached_engine_problem(tmp_path, key) is None
    assert not list(tmp_path.glob(".*tmp*")), "atomic writes leave no temp files"

    engine, metadata = engine_paths(tmp_path, key)
    record = json.loads(metadata.read_text())
    record["key"]["tensorrt_version"] = "10.0.1"  # e.g. a cache copied from another JetPack
    metadata.write_text(json.dumps(record))
    assert "tensorrt_version: cached '10.0.1', needed '10.3.0'" in cached_engine_problem(tmp_path, key)

    store_engine(tmp_path, key, b"engine bytes", {})
    engine.write_bytes(b"engine bytes, half copied")
    assert "sha256" in cached_engine_problem(tmp_path, key)

    metadata.unlink()
    assert "missing" in cached_engine_problem(tmp_path, key)


@pytest.mark.gpu
@pytest.mark.skipif(not tensorrt_usable(), reason=TRT_REASON)
class TestTensorRTEngines:
    def test_the_second_start_uses_the_cached_engine_and_a_mismatch_rebuilds(self, bundles, tmp_path: Path):
        from edge.backends import build_engine

        config = BackendConfig(kind="tensorrt", engine_cache_dir=tmp_path, precision="fp16")
        stages: list[str] = []
        first = build_engine(bundles["classifier"], config, lambda progress: stages.append(progress.stage))
        assert first.built and "building" in stages and stages[-1] == "done"
        again = build_engine(bundles["classifier"], config)
        assert not again.built and again.path == first.path
        _, metadata = engine_paths(tmp_path, first.key)
        record = json.loads(metadata.read_text())
        record["key"]["gpu_name"] = "another GPU"
        metadata.write_text(json.dumps(record))
        assert build_engine(bundles["classifier"], config).built, "a mismatching cache entry is rebuilt"

    @pytest.mark.parametrize("task", ["classifier", "segmenter"])
    def test_fp16_engines_agree_with_the_reference_on_probabilities(self, bundles, tmp_path: Path, task: str):
        config = BackendConfig(kind="tensorrt", engine_cache_dir=tmp_path, precision="fp16")
        with create_backend("tensorrt", bundles[task], config) as backend:
            batch = patches(64)
            got = 1 / (1 + np.exp(-backend.infer(batch)))
            want = 1 / (1 + np.exp(-reference_logits(task, batch)))
            np.testing.assert_allclose(got, want, atol=0.02)
