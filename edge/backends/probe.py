"""Model sanity: a fixed probe batch through a freshly loaded backend, before the first frame.

A bundle whose model outputs NaN/Inf (a broken export, an FP16 engine that overflows) would
otherwise load fine and fail on every frame. The probe runs the same few patterns every time
(black, white, mid-grey, a ramp, seeded noise, a bright spot on grey), so a refusal is
reproducible, and it checks that every output is finite and inside :data:`MAX_ABS_LOGIT`
(the outputs are logits: a sigmoid is saturated long before that, so anything beyond is garbage).
"""

from __future__ import annotations

import numpy as np

from edge.backends.base import BackendError, InferenceBackend

MAX_ABS_LOGIT = 1.0e4
PROBE_SEED = 20261202


def probe_batch(channels: int, height_px: int, width_px: int) -> np.ndarray:
    """Six fixed float32 patches in [0, 1], shape (6, C, H, W)."""
    shape = (channels, height_px, width_px)
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, width_px, dtype=np.float32), shape)
    noise = np.random.default_rng(PROBE_SEED).random(shape, dtype=np.float32)
    spot = np.full(shape, 0.4, dtype=np.float32)
    spot[:, height_px // 3 : height_px // 3 + max(1, height_px // 16), width_px // 2 : width_px // 2 + 2] = 1.0
    patches = [np.zeros(shape), np.ones(shape), np.full(shape, 0.5), ramp, noise, spot]
    return np.stack([np.asarray(p, dtype=np.float32) for p in patches])


def output_problem(outputs: np.ndarray, limit: float = MAX_ABS_LOGIT) -> str | None:
    """Why ``outputs`` are not usable logits (non-finite or beyond ``limit``), or None."""
    finite = np.isfinite(outputs)
    if not finite.all():
        bad = int((~finite).sum())
        return f"{bad} of {outputs.size} output values are NaN or infinite"
    peak = float(np.abs(outputs).max(initial=0.0))
    if peak > limit:
        return f"output magnitude {peak:.3g} exceeds {limit:.0g} (logits that large mean a broken model)"
    return None


def probe_backend(backend: InferenceBackend) -> None:
    """Refuse a backend whose model gives non-finite or absurd outputs on the probe batch (BackendError)."""
    manifest = backend.bundle.manifest
    batch = probe_batch(*backend.input_shape)
    try:
        outputs = backend.infer(batch)
    except BackendError as error:
        raise BackendError(f"bundle {manifest.name}@{manifest.version} ({manifest.task}) refused: {error}") from None
    problem = output_problem(outputs)
    if problem is not None:
        raise BackendError(
            f"bundle {manifest.name}@{manifest.version} ({manifest.task}) refused: the load-time probe "
            f"({len(batch)} fixed patches) gave unusable outputs: {problem}"
        )
