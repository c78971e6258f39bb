"""The pieces a GAN loop shares with the classifier: the run log and the runtime."""

import json
import math

import numpy as np
import pytest
import torch

from training.train.curves import plot_curves
from training.train.runlog import RunLog, read_runlog
from training.train.runtime import start_runtime


def test_run_log_averages_reports_between_flushes_and_writes_one_jsonl_line_each(tmp_path):
    log = RunLog(tmp_path / "metrics.jsonl")
    for value in (1.0, 2.0, 3.0):
        log.report("Loss/G/main", value)
    log.report("Progress/kimg", 0.5)
    first = log.flush(iteration=3)
    log.report("val/auroc", float("nan"))
    log.flush(iteration=6)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0] == first and list(rows[0])[:2] == ["seconds", "iteration"]
    assert rows[0]["Loss/G/main"] == 2.0 and rows[0]["Progress/kimg"] == 0.5 and "Loss/G/main" not in rows[1]
    assert math.isnan(read_runlog(tmp_path / "metrics.jsonl")[1]["val/auroc"])
    with pytest.raises(ValueError, match="namespaced"):
        log.report("/loss", 1.0)


def test_a_run_log_without_a_path_writes_nothing(tmp_path):
    log = RunLog(None)
    log.report("train/loss", 1.0)
    assert log.flush(iteration=1)["train/loss"] == 1.0 and not list(tmp_path.iterdir())


def test_curves_plot_the_classifiers_run_log(tmp_path):
    log = RunLog(tmp_path / "metrics.jsonl")
    for iteration in (5, 10):
        log.report("train/loss", 1.0 / iteration)
        log.report("val/f1", iteration / 10)
        log.flush(iteration=iteration)
    assert plot_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png").stat().st_size > 0


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_start_runtime_seeds_torch_and_numpy_and_places_batches_channels_last(threads_restored):
    first = start_runtime(seed=3, threads=1)
    weights, draw = torch.rand(2), first.rng.random()
    second = start_runtime(seed=3, threads=1)
    assert torch.equal(weights, torch.rand(2)) and draw == second.rng.random()
    assert torch.get_num_threads() == 1 and second.device.type == "cpu"
    batch = second.tensor(np.full((2, 8, 8), 255, np.uint8))
    assert batch.shape == (2, 1, 8, 8) and batch.is_contiguous(memory_format=torch.channels_last)
    assert float(batch.max()) == 1.0
    module = second.place(torch.nn.Conv2d(1, 4, 3))
    assert module.weight.is_contiguous(memory_format=torch.channels_last)
    with second.autocast():
        assert module(batch).dtype == torch.float32, "fp32 autocast is a no-op"
    with pytest.raises(ValueError, match="precision"):
        start_runtime(seed=0, precision="fp16")
