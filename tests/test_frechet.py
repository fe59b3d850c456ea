"""Tests for tripjax/metrics/frechet.py against scipy's sqrtm formula and closed forms."""

import numpy as np
import pytest
from scipy import linalg

from tripjax.metrics import frechet_distance
from tripjax.metrics import frechet_distance_from_features
from tripjax.metrics import gaussian_stats


def _random_spd(rng, dim, jitter=1e-1):
  a = rng.normal(size=(dim, 2 * dim))
  return a @ a.T / (2 * dim) + jitter * np.eye(dim)


def _scipy_reference(mean1, cov1, mean2, cov2):
  """The formula of the reference FID implementations (TTUR / pytorch-fid)."""
  diff = mean1 - mean2
  covmean = np.real(linalg.sqrtm(cov1.dot(cov2)))
  return diff.dot(diff) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean)


@pytest.mark.parametrize("dim", [1, 2, 5, 32, 128])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_scipy_sqrtm_formula(dim, seed):
  rng = np.random.default_rng(seed)
  mean1, mean2 = rng.normal(size=dim), rng.normal(size=dim)
  cov1, cov2 = _random_spd(rng, dim), _random_spd(rng, dim)
  expected = _scipy_reference(mean1, cov1, mean2, cov2)
  np.testing.assert_allclose(
      frechet_distance(mean1, cov1, mean2, cov2), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dim", [1, 3, 64])
def test_equal_gaussians_give_zero(dim):
  rng = np.random.default_rng(dim)
  mean, cov = rng.normal(size=dim), _random_spd(rng, dim)
  distance = frechet_distance(mean, cov, mean, cov)
  assert distance >= 0.0
  assert distance == pytest.approx(0.0, abs=1e-9)


def test_shifted_means_give_squared_shift():
  rng = np.random.default_rng(3)
  dim = 16
  cov = _random_spd(rng, dim)
  mean = rng.normal(size=dim)
  shift = rng.normal(size=dim)
  np.testing.assert_allclose(
      frechet_distance(mean, cov, mean + shift, cov), shift @ shift, rtol=1e-9)


def test_diagonal_covariances_closed_form():
  rng = np.random.default_rng(4)
  a = rng.uniform(0.1, 3.0, size=10)
  b = rng.uniform(0.1, 3.0, size=10)
  mean1, mean2 = rng.normal(size=10), rng.normal(size=10)
  expected = np.sum((mean1 - mean2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  np.testing.assert_allclose(
      frechet_distance(mean1, np.diag(a), mean2, np.diag(b)), expected, rtol=1e-10)


def test_diagonal_with_zero_variances():
  """Singular diagonal covariances: the closed form still holds exactly."""
  a = np.array([0.0, 1.0, 4.0, 0.0])
  b = np.array([9.0, 0.0, 1.0, 0.0])
  expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  np.testing.assert_allclose(
      frechet_distance(np.zeros(4), np.diag(a), np.zeros(4), np.diag(b)), expected,
      rtol=1e-12)


@pytest.mark.parametrize("num_samples,dim", [(10, 64), (50, 256), (3, 512)])
def test_near_singular_few_samples_is_finite_and_nonnegative(num_samples, dim):
  """n < f: both covariances are rank-deficient; sqrtm would leak complex/NaN."""
  rng = np.random.default_rng(num_samples)
  features1 = rng.normal(size=(num_samples, dim))
  features2 = rng.normal(size=(num_samples, dim)) + 0.1
  distance = frechet_distance_from_features(features1, features2)
  assert isinstance(distance, float)
  assert np.isfinite(distance) and distance >= 0.0
  # Same sample set against itself: exactly zero up to round-off.
  assert frechet_distance_from_features(features1, features1) == pytest.approx(0.0, abs=1e-8)


def test_rank_deficient_agrees_with_eigendecomposition_reference():
  """Low-rank covariances Σ = A Aᵀ: compare with a slow independent formula."""
  rng = np.random.default_rng(7)
  dim, rank = 20, 5
  a1 = rng.normal(size=(dim, rank))
  a2 = rng.normal(size=(dim, rank))
  cov1, cov2 = a1 @ a1.T, a2 @ a2.T
  # tr((Σ₁Σ₂)^{1/2}) = sum of singular values of A₁ᵀ A₂ (nuclear norm).
  expected = np.trace(cov1) + np.trace(cov2) - 2 * np.linalg.norm(a1.T @ a2, ord="nuc")
  np.testing.assert_allclose(
      frechet_distance(np.zeros(dim), cov1, np.zeros(dim), cov2), expected, rtol=1e-10)


def test_gaussian_stats_matches_numpy_cov():
  rng = np.random.default_rng(5)
  features = rng.normal(size=(40, 7)).astype(np.float32)
  mean, cov = gaussian_stats(features)
  assert mean.shape == (7,) and cov.shape == (7, 7)
  assert mean.dtype == np.float64 and cov.dtype == np.float64
  np.testing.assert_allclose(mean, features.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(cov, np.cov(features.astype(np.float64), rowvar=False),
                             rtol=1e-12)
  # Unbiased: divides by n - 1.
  centered = features.astype(np.float64) - mean
  np.testing.assert_allclose(cov, centered.T @ centered / 39, rtol=1e-12)


def test_gaussian_stats_single_feature():
  mean, cov = gaussian_stats(np.arange(5.0)[:, None])
  assert mean.shape == (1,) and cov.shape == (1, 1)
  np.testing.assert_allclose(cov, [[2.5]])


@pytest.mark.parametrize("features", [np.zeros(5), np.zeros((1, 3)), np.zeros((2, 3, 4))])
def test_gaussian_stats_bad_shapes_raise(features):
  with pytest.raises(ValueError):
    gaussian_stats(features)


def test_gaussian_stats_nonfinite_raises():
  features = np.ones((4, 2))
  features[1, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    gaussian_stats(features)


@pytest.mark.parametrize("mean1,cov1,mean2,cov2", [
    (np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)),    # dims differ
    (np.zeros(3), np.eye(4), np.zeros(3), np.eye(3)),    # cov vs mean
    (np.zeros(3), np.eye(3), np.zeros(3), np.ones((3, 2))),  # not square
    (np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3)),  # mean not 1-D
])
def test_frechet_bad_shapes_raise(mean1, cov1, mean2, cov2):
  with pytest.raises(ValueError):
    frechet_distance(mean1, cov1, mean2, cov2)


def test_frechet_nonfinite_raises():
  cov = np.eye(2)
  cov[0, 0] = np.inf
  with pytest.raises(ValueError, match="NaN or inf"):
    frechet_distance(np.zeros(2), cov, np.zeros(2), np.eye(2))


def test_symmetric_in_its_arguments():
  rng = np.random.default_rng(9)
  dim = 12
  args1 = (rng.normal(size=dim), _random_spd(rng, dim, jitter=0.0))
  args2 = (rng.normal(size=dim), _random_spd(rng, dim, jitter=0.0))
  np.testing.assert_allclose(frechet_distance(*args1, *args2),
                             frechet_distance(*args2, *args1), rtol=1e-9)
