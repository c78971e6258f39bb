"""FID/KID maths on synthetic Gaussians, where the answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics.generative import fid, frechet_distance, kid


def test_fid_of_a_set_with_itself_is_zero_and_a_mean_shift_gives_its_squared_norm():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 8))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)
    delta = np.array([1.0, -2.0, 0.5, 0, 0, 0, 0, 3.0])
    assert fid(x, x + delta) == pytest.approx(float(delta @ delta), rel=1e-6)  # same covariance: exactly ‖δ‖²
    y = rng.normal(size=(4000, 8)) + delta  # a fresh sample: ‖δ‖² plus sampling noise
    assert fid(x, y) == pytest.approx(float(delta @ delta), rel=0.05)


def test_frechet_distance_matches_the_closed_form_for_scaled_covariances():
    # N(0, I) vs N(0, s²I) in D dims: D (1 + s² - 2s) = D (1 - s)²
    dims, s = 5, 3.0
    value = frechet_distance(np.zeros(dims), np.eye(dims), np.zeros(dims), s**2 * np.eye(dims))
    assert value == pytest.approx(dims * (1 - s) ** 2)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    same = kid(x, y, subsets=20, subset_size=300)
    near = kid(x, y + 0.3, subsets=20, subset_size=300)
    far = kid(x, y + 1.0, subsets=20, subset_size=300)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert far.mean > near.mean > same.mean + 3 * same.std
    assert same.subset_size == 300 and same.subsets == 20


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="features"):
        fid(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        kid(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="differ"):
        kid(np.zeros((4, 2)), np.zeros((4, 3)))


def test_fid_with_fewer_samples_than_dimensions_matches_a_general_matrix_square_root():
    import scipy.linalg

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 64)), 1.3 * rng.normal(size=(50, 64)) + 0.1  # both covariances singular
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    reference = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert fid(x, y) == pytest.approx(reference, rel=1e-6)
