"""Eager PyTorch at batch 1: the naive reference the edge bench compares the station with.

Lives on the training side (it needs torch); ``benchmarks/edge_vs_eager.py`` hands it to the
edge bench (``BenchConfig.eager_measure``), so no edge module imports training. Modules are
rebuilt from the bundles' specs with random weights: the bundle carries no checkpoint, and speed
does not depend on the weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np


def eager_batch1_seconds(
    specs: dict[str, dict[str, Any]],
    batches: list[np.ndarray],
    seed: int,
    time_per_patch: Callable[[list[np.ndarray], Callable[[np.ndarray], None]], float],
) -> tuple[float | None, dict[str, Any]]:
    """Seconds for every patch of ``batches`` through all models at batch 1, or None and why not."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads starve a busy CPU
    import torch

    from training.models.classifier import ClassifierSpec, create_classifier
    from training.models.segmenter import SegmenterSpec, create_segmenter

    torch.manual_seed(seed)
    modules = []
    for task, spec in specs.items():
        try:
            if task == "classifier":
                modules.append(create_classifier(ClassifierSpec(**spec)).eval())
            else:
                modules.append(create_segmenter(SegmenterSpec(**spec)).eval())
        except (TypeError, ValueError) as error:
            return None, {"status": "skipped", "reason": f"{task} spec {spec} does not rebuild a model ({error})"}

    def run_one(patch: np.ndarray) -> None:
        with torch.inference_mode():
            tensor = torch.from_numpy(patch)
            for module in modules:
                module(tensor)

    seconds = time_per_patch(batches, run_one)
    return seconds, {
        "status": "measured",
        "weights": "random (the bundle has no training checkpoint; speed does not depend on them)",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
