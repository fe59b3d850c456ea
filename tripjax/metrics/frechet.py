"""Fréchet distance between Gaussians fitted to feature sets (the FID formula).

  d² = |μ₁ − μ₂|² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁ Σ₂)^{1/2})

(Heusel et al. 2017, eq. 6 / Dowson & Landau 1982). Everything here is float64
NumPy on the host: the statistics of a few thousand 2048-d features are cheap,
and the trace term is catastrophically ill-conditioned in float32.

The trace of the matrix square root is computed without `scipy.linalg.sqrtm`
(which the reference FID code uses and which leaks complex parts and NaNs for
singular covariances, e.g. fewer samples than features):

  tr((Σ₁ Σ₂)^{1/2}) = tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}) = Σᵢ √λᵢ,

where λᵢ are the eigenvalues of the symmetric positive semi-definite matrix
Σ₁^{1/2} Σ₂ Σ₁^{1/2} (Σ₁ Σ₂ is similar to it when Σ₁ is invertible, and the
identity extends to singular Σ₁ by continuity). Eigenvalues below round-off
level (negatives included) are set to zero, so the result is always a finite,
real number ≥ 0. Cost: two symmetric eigendecompositions of (f, f) matrices
(a few seconds for f = 2048 on a laptop CPU).
"""

from typing import Tuple

import numpy as np


def gaussian_stats(features) -> Tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance of a feature set, as the reference FID code.

  Args:
    features: array (n, f), one feature vector per row; n ≥ 2.

  Returns:
    mean: float64 array (f,).
    cov: float64 array (f, f), `np.cov(features, rowvar=False)` (divides by n − 1).

  Raises:
    ValueError: if `features` is not 2-D, has fewer than 2 rows, or is not
      finite.
  """
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2:
    raise ValueError(
        f"features must have shape (num_samples, num_features), got {features.shape}")
  if features.shape[0] < 2:
    raise ValueError(
        f"need at least 2 samples for a covariance, got {features.shape[0]}")
  if not np.all(np.isfinite(features)):
    raise ValueError("features contain NaN or inf")
  mean = features.mean(axis=0)
  cov = np.cov(features, rowvar=False)
  return mean, np.atleast_2d(cov)


def _check_stats(mean: np.ndarray, cov: np.ndarray, name: str) -> None:
  if mean.ndim != 1:
    raise ValueError(f"{name}: mean must be 1-D (f,), got shape {mean.shape}")
  dim = mean.shape[0]
  if cov.shape != (dim, dim):
    raise ValueError(
        f"{name}: cov must have shape ({dim}, {dim}) to match mean {mean.shape}, "
        f"got {cov.shape}")
  if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
    raise ValueError(f"{name}: mean/cov contain NaN or inf")


def _clip_roundoff(eigenvalues: np.ndarray) -> np.ndarray:
  """Zeroes eigenvalues (k,) of a PSD matrix that are below its round-off level.

  A symmetric eigensolver returns eigenvalues with absolute error about
  k·eps·λ_max; anything smaller (including negatives) is indistinguishable from
  an exact zero of a rank-deficient covariance, whose square root would
  otherwise add ~√(eps·λ_max) of noise per eigenvalue.
  """
  if eigenvalues.size == 0:
    return eigenvalues
  tolerance = eigenvalues.size * np.finfo(np.float64).eps * max(eigenvalues.max(), 0.0)
  return np.where(eigenvalues > tolerance, eigenvalues, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (f, f) via eigh."""
  eigenvalues, eigenvectors = np.linalg.eigh(matrix)
  root = np.sqrt(_clip_roundoff(eigenvalues))
  return (eigenvectors * root) @ eigenvectors.T


def trace_sqrt_product(cov1, cov2) -> float:
  """tr((Σ₁ Σ₂)^{1/2}) for symmetric PSD (f, f) matrices, float64, ≥ 0."""
  cov1 = np.asarray(cov1, dtype=np.float64)
  cov2 = np.asarray(cov2, dtype=np.float64)
  # Symmetrise: covariances from np.cov are symmetric only up to round-off.
  cov1 = 0.5 * (cov1 + cov1.T)
  cov2 = 0.5 * (cov2 + cov2.T)
  sqrt_cov1 = _psd_sqrt(cov1)
  middle = sqrt_cov1 @ cov2 @ sqrt_cov1
  middle = 0.5 * (middle + middle.T)
  eigenvalues = np.linalg.eigvalsh(middle)
  return float(np.sum(np.sqrt(_clip_roundoff(eigenvalues))))


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
  """Squared Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).

  Args:
    mean1: array (f,).
    cov1: array (f, f), symmetric positive semi-definite (may be singular).
    mean2: array (f,).
    cov2: array (f, f), symmetric positive semi-definite (may be singular).

  Returns:
    A Python float ≥ 0 (never NaN or complex for finite inputs): the FID when
    the statistics come from Inception pool3 features.

  Raises:
    ValueError: on shape mismatch or non-finite inputs.
  """
  mean1 = np.asarray(mean1, dtype=np.float64)
  mean2 = np.asarray(mean2, dtype=np.float64)
  cov1 = np.atleast_2d(np.asarray(cov1, dtype=np.float64))
  cov2 = np.atleast_2d(np.asarray(cov2, dtype=np.float64))
  _check_stats(mean1, cov1, "first Gaussian")
  _check_stats(mean2, cov2, "second Gaussian")
  if mean1.shape != mean2.shape:
    raise ValueError(
        f"feature dimensions differ: {mean1.shape[0]} vs {mean2.shape[0]}")
  diff = mean1 - mean2
  distance = (diff @ diff + np.trace(cov1) + np.trace(cov2)
              - 2.0 * trace_sqrt_product(cov1, cov2))
  # Exact answer is ≥ 0; only round-off can push it below.
  return max(float(distance), 0.0)


def frechet_distance_from_features(features1, features2) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets (n₁, f), (n₂, f)."""
  return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))
